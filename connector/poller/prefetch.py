"""The next page, listed while the current one is published.

Listing and committing take turns in the poller's loop: a page is listed, then its results and
the cursor are committed, then the next page is listed. Against an API that takes its time to
answer, the loop waits for it once per page on top of the transaction. While a page commits,
its successor's request is already known: the scan moves on to the page's last item (the cursor
the transaction writes). `PagePrefetch` sends that request on a thread of its own as soon as the
page is planned; the loop then takes the answer if it asks for that very request next.

Exactly once is the loop's as before: a prefetched page is only a listing made earlier. It is
used only for the request it was made for (the same `after_id` and filters, which the cursor
committed by the transaction decides, and a limit no larger than the loop's now), so a
transaction that aborts, a leadership that ends, or a scan that starts over (a rewind, a
look-back scan) never sees it: the loop then asks for another request, and the prefetched page
is dropped unread. The thread touches nothing but
the API client (thread-safe); its errors are raised in the loop's thread when the page is taken,
as if the loop had listed it then.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import Future, wait
from dataclasses import dataclass
from typing import Generic, TypeVar

from connector.poller.scan import ListingRequest

Listed = TypeVar("Listed")


@dataclass(frozen=True)
class PrefetchKey:
    after_id: str | None
    filters: tuple[tuple[str, str], ...]
    limit: int

    @classmethod
    def of(cls, request: ListingRequest, limit: int) -> PrefetchKey:
        return cls(request.after_id, tuple(sorted(request.filters.items())), limit)

    def serves(self, wanted: PrefetchKey) -> bool:
        """A page listed for this request answers `wanted`: the same request, with a limit no
        larger (a page of fewer items is the first part of the larger one, and the loop lists on
        from its last item; the page size grows back after readable pages while one is listed
        ahead). A larger limit does not: the page size shrank because such pages were
        unreadable."""
        return (
            self.after_id == wanted.after_id
            and self.filters == wanted.filters
            and self.limit <= wanted.limit
        )


class PagePrefetch(Generic[Listed]):
    """At most one listing ahead; used from the loop's thread only. `Listed`: what `list_page`
    makes of the page (the loop's records are built on the same thread)."""

    def __init__(self) -> None:
        self._key: PrefetchKey | None = None
        self._page: Future[Listed] | None = None

    def start(self, key: PrefetchKey, list_page: Callable[[], Listed]) -> None:
        """List `list_page()` in the background for the request `key` (a prefetch not taken
        yet is dropped)."""
        page: Future[Listed] = Future()

        def fetch() -> None:
            try:
                page.set_result(list_page())
            except BaseException as failure:  # raised where the page is taken
                page.set_exception(failure)

        self._key, self._page = key, page
        # A daemon thread: a listing still stuck in the API when the process ends must not
        # hold the exit (the client's retries end at stop).
        threading.Thread(target=fetch, name="poller-prefetch", daemon=True).start()

    def take(self, key: PrefetchKey) -> Listed | None:
        """The page listed ahead for `key` (waiting for it; its listing's error is raised), or
        None when none was (another request's is dropped)."""
        page, self._page = self._page, None
        matches = self._key is not None and self._key.serves(key)
        self._key = None
        if page is None or not matches:
            return None
        return page.result()

    def take_ready(self, key: PrefetchKey, wait_seconds: float) -> Listed | None:
        """The page listed ahead for `key` once its listing succeeded, when that is within
        `wait_seconds`; else None, and the page stays for `take` (which raises its listing's
        error in the loop's thread, where the loop handles it)."""
        page = self._page
        if page is None or self._key is None or not self._key.serves(key):
            return None
        if not wait([page], timeout=wait_seconds).done or page.exception() is not None:
            return None
        self._key, self._page = None, None
        return page.result()

    def drop(self) -> None:
        """Forget the page listed ahead (the leadership ends)."""
        self._key, self._page = None, None
