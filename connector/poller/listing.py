"""How the leader gets its pages: the scan's next page (the one listed ahead while the last page
committed, when it is that request, with its records built: `prefetch`), the listing ahead, a
look-back scan's listings beside the main scan (`lookback`), and how many items a page asks for
(`page_size`).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Protocol

from connector.errors import UnreadablePageError
from connector.lifecycle import Heartbeat
from connector.poller.keepalive import KeepalivesWhileListing
from connector.poller.late_window import PollerState
from connector.poller.lookback import BackgroundLookBack
from connector.poller.page_records import PageRecords, PreparedRecords
from connector.poller.prefetch import PagePrefetch, PrefetchKey
from connector.poller.scan import ListingRequest, Scan
from connector.poller.unreadable import readable_item
from connector.toloka.models import ItemPage
from connector.toloka.page_size import PageSizer

log = logging.getLogger(__name__)

Listed = tuple[ItemPage, PreparedRecords | None]
"""A page, and the output records built for its finished items where it was listed ahead."""


class ItemSource(Protocol):
    """The listing call of the Apps API client (TolokaClient implements it)."""

    def list_items(
        self,
        *,
        sort: str = "finished",
        after_id: str | None = None,
        limit: int = 100,
        filters: Mapping[str, str] | None = None,
    ) -> ItemPage: ...


class PageListing:
    """The leader's listings; used from the loop's thread (the threads it starts list only)."""

    def __init__(
        self,
        source: ItemSource,
        records: PageRecords,
        sizes: PageSizer,
        heartbeat: Heartbeat,
    ) -> None:
        self._source = source
        self._records = records
        self.sizes = sizes
        self._heartbeat = heartbeat
        self._prefetch: PagePrefetch[Listed] = PagePrefetch()

    def page(self, request: ListingRequest, keepalives: KeepalivesWhileListing) -> Listed:
        """The page `request` asks for (listed ahead, when it was this request); keepalives go
        on meanwhile, however long it takes. At a page size of one, the item of a page that
        cannot be read but whose item can is taken alone."""
        limit = self.sizes.size
        try:
            with (
                self._heartbeat.waiting_on("the Toloka API (listing)"),
                keepalives.listing(),
            ):
                listed = self._prefetch.take(PrefetchKey.of(request, limit))
                if listed is not None:
                    return listed
                return self._list(request, limit), None
        except UnreadablePageError as exc:
            item = readable_item(exc) if limit == 1 else None
            if item is None:
                raise
            log.warning("the page around item %s is unreadable, the item is not: taking it (%s)",
                        item.id, exc)  # fmt: skip
            return ItemPage(content=[item], has_more=True), None

    def listed_ahead(self, request: ListingRequest, wait_seconds: float) -> Listed | None:
        """The page listed ahead for `request` once it is listed, when that is within
        `wait_seconds` and its listing did not fail; else None (and `page` takes it)."""
        with self._heartbeat.waiting_on("the Toloka API (listing)"):
            return self._prefetch.take_ready(PrefetchKey.of(request, self.sizes.size), wait_seconds)

    def list_ahead(self, request: ListingRequest) -> None:
        """Start listing `request` (the page after the one being committed) on a thread of its
        own, and its records built there too, while the loop's thread waits for Kafka."""
        limit = self.sizes.size

        def list_page() -> Listed:
            page = self._list(request, limit)
            finished = [item for item in page.content if item.finished_at is not None]
            return page, self._records.prepare(finished)

        self._prefetch.start(PrefetchKey.of(request, limit), list_page)

    def beside(self, state: PollerState, scan: Scan) -> BackgroundLookBack:
        """A look-back scan listing beside the main scan from `scan` on."""
        return BackgroundLookBack(state, scan, lambda request: self._list(request, self.sizes.size))

    def drop(self) -> None:
        """Forget the page listed ahead (the leadership ends)."""
        self._prefetch.drop()

    def _list(self, request: ListingRequest, limit: int) -> ItemPage:
        return self._source.list_items(
            sort="finished", after_id=request.after_id, limit=limit, filters=request.filters
        )
