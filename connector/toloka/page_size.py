"""How many items a listing asks for per page (the poller's, and the uploader's reconciliation).

Apps whose outputs are large (masks, transcripts) make pages of `CONNECTOR_PAGE_SIZE` items larger
than `CONNECTOR_API_MAX_RESPONSE_BYTES`, and one undecodable item spoils the page that holds it.
Such a page is asked for again with half as many items, down to one; a page of one that still
cannot be read is the item's own fault (the poller dead-letters it; a reconciliation that
cannot list it fails). After `GROW_AFTER` readable
pages in a row the size doubles again, up to the setting, as long as pages of the doubled size
would stay under half the response limit by the sizes of the results seen.
"""

from __future__ import annotations

GROW_AFTER = 3


class PageSizer:
    def __init__(self, configured: int, response_limit_bytes: int) -> None:
        self.configured = configured
        self.size = configured
        self._response_limit = response_limit_bytes
        self._readable_in_a_row = 0

    def shrink(self) -> bool:
        """A page of `size` could not be read: halve it. False when it was one item already."""
        self._readable_in_a_row = 0
        if self.size == 1:
            return False
        self.size = max(1, self.size // 2)
        return True

    def readable(self, items: int, result_bytes: int) -> None:
        """A page was read; `result_bytes` is the size of the `items` results taken from it."""
        self._readable_in_a_row += 1
        if self.size >= self.configured or self._readable_in_a_row < GROW_AFTER:
            return
        doubled = min(self.configured, self.size * 2)
        if items and result_bytes / items * doubled > self._response_limit / 2:
            return  # the larger page would come close to the limit again
        self.size = doubled
        self._readable_in_a_row = 0
