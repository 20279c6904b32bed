"""Before records that may already exist in Toloka are sent again, ask the API which exist.

Two moments call for it (docs/exactly-once.md):
- a lost answer: a bulk request whose outcome is unknown (a timeout or reset after it was sent,
  a gateway 5xx, a 2xx without the ids). `after_lost_answer` lists the items created from just
  before the attempt was sent to now (`GET …/items?sort=created&created_gte=…&created_lt=…`,
  paged), matches them with the records, and when some are missing lists once more after
  CONNECTOR_RECONCILE_RECHECK_SECONDS (the API may show new items late) before calling them
  missing;
- a hand-over: the new owner of a partition finds in its committed offset's metadata that
  records beyond it may have been sent since T (`connector.contract.upload_intents`).
  `taken_over` notes those records (up to the partition's end at the assignment: later ones
  were never read by the previous owner); the first batch that holds one lists the items
  created since T, once for the whole assignment and no earlier than the recheck delay after
  it, and every such record found is taken as created.

Matching is by `item_identity` (the key field, else the whole input), as a multiset: each listed
item is claimed by one record at most, so two identical inputs stay two. The window is widened
by CONNECTOR_RECONCILE_CLOCK_SKEW_SECONDS on each side. A listing request that fails (after the
client's own retries; any error, a redirect too) is asked again with a growing pause until
CONNECTOR_RECONCILE_TIMEOUT_SECONDS have passed since the reconciliation began; then the
reconciliation ends as `failed`, said in a metric and one log line, and the records are sent
again, at least once, rather than held. A page too large for CONNECTOR_API_MAX_RESPONSE_BYTES
(large inputs) is asked for again at once with half as many items, down to one
(`connector.toloka.page_size`); only an item too large alone is a failing request.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Protocol

import orjson

from connector.clock import Clock
from connector.config import ReconcileSettings
from connector.contract.upload_intents import item_identity
from connector.errors import TolokaApiError, UnreadablePageError
from connector.metrics import Metrics
from connector.toloka.models import ItemPage, format_api_datetime
from connector.toloka.page_size import PageSizer
from connector.uploader.batcher import PendingRecord

log = logging.getLogger(__name__)

PAGE_SIZE = 1000
"""Items per listing request: the endpoint's maximum, so a window costs the fewest requests
(fewer while they would not fit in CONNECTOR_API_MAX_RESPONSE_BYTES)."""
RETRY_PAUSE_SECONDS = 0.5
MAX_RETRY_PAUSE_SECONDS = 5.0
"""A failed listing request is asked again after 0.5 s, 1 s, … up to 5 s (on top of the client's
own retries, which end at CONNECTOR_API_MAX_ATTEMPTS and never follow a redirect)."""


class ItemLister(Protocol):
    def list_items(
        self,
        *,
        sort: str = ...,
        after_id: str | None = None,
        limit: int = ...,
        filters: Mapping[str, str] | None = None,
    ) -> ItemPage: ...


class CreatedItems:
    """The items of one listing by identity; each can be claimed once."""

    def __init__(self, listed: Iterable[tuple[str, str]], exclude: set[str]) -> None:
        self._ids: dict[str, deque[str]] = {}
        for identity, item_id in listed:
            if item_id not in exclude:
                self._ids.setdefault(identity, deque()).append(item_id)

    def claim(self, identity: str) -> str | None:
        """The id of an unclaimed item with this identity, now claimed; None when none is left."""
        ids = self._ids.get(identity)
        return ids.popleft() if ids else None


@dataclass
class _Handover:
    """One assignment's records that a previous owner may have sent."""

    since: float
    assigned_at: float
    lock: threading.Lock = field(default_factory=threading.Lock)
    items: CreatedItems | None = None
    failed: bool = False


@dataclass(frozen=True)
class _Suspect:
    generation: int
    end_offset: int | None
    """Records at this offset and beyond were produced after the assignment: never sent."""
    handover: _Handover


class Reconciler:
    """Thread-safe: upload threads reconcile their batches, the loop notes hand-overs."""

    def __init__(
        self,
        client: ItemLister,
        metrics: Metrics,
        clock: Clock,
        settings: ReconcileSettings,
        *,
        response_limit_bytes: int,
    ) -> None:
        self._client = client
        self._response_limit = response_limit_bytes
        self._metrics = metrics
        self._clock = clock
        self._key_field = settings.key_field
        self._skew = settings.reconcile_clock_skew_seconds
        self._recheck = settings.reconcile_recheck_seconds
        self._timeout = settings.reconcile_timeout_seconds
        self._stop = threading.Event()
        self._suspects: dict[int, _Suspect] = {}
        self._lock = threading.Lock()

    def give_up(self) -> None:
        """Shutdown: waits end at once (a batch waiting for a listing is abandoned)."""
        self._stop.set()

    # --- a lost answer -------------------------------------------------------------------

    def after_lost_answer(
        self, records: Sequence[PendingRecord], since: float, exclude: set[str]
    ) -> dict[int, str] | None:
        """Index in `records` → id of its item, for the records whose items exist (created by
        an attempt sent at or after `since`); None when the API did not answer the listing.
        Items whose ids are in `exclude` (found before) are not claimed again; the ids found are
        added to it."""
        identities = [self._identity(record) for record in records]
        requests = 0
        deadline = self._clock.monotonic() + self._timeout
        try:
            listed, requests = self._list(since, requests, deadline)
            found = _match(identities, CreatedItems(listed, exclude))
            if len(found) < len(records) and not self._clock.wait(self._stop, self._recheck):
                # The API may list new items late: look again before calling any missing.
                listed, requests = self._list(since, requests, deadline)
                found = _match(identities, CreatedItems(listed, exclude))
        except TolokaApiError as error:
            self._failed("lost_answer", len(records), requests, error)
            return None
        exclude.update(found.values())
        self._completed("lost_answer", len(found), len(records) - len(found), requests)
        log.info(
            "reconciled a lost answer: %d of %d items exist (taken as created), %d to send; "
            "%d listing request(s)",
            len(found), len(records), len(records) - len(found), requests,
        )  # fmt: skip
        return found

    # --- a hand-over ---------------------------------------------------------------------

    def taken_over(self, suspects: Mapping[int, tuple[int, float, int | None]]) -> None:
        """Partitions just assigned whose committed offset says records beyond it may have been
        sent: partition → (assignment generation, since, end offset at the assignment)."""
        if not suspects:
            return
        since = min(entry[1] for entry in suspects.values())
        handover = _Handover(since=since, assigned_at=self._clock.time())
        with self._lock:
            for partition, (generation, _since, end_offset) in suspects.items():
                self._suspects[partition] = _Suspect(generation, end_offset, handover)

    def forget(self, partitions: Iterable[int]) -> None:
        with self._lock:
            for partition in partitions:
                self._suspects.pop(partition, None)

    def no_intent(self, partitions: Sequence[int], offsets: Sequence[int]) -> None:
        """Partitions handed over without a recorded intent (an older connector committed
        them): their records are sent at least once."""
        for _ in partitions:
            self._metrics.reconciliations.labels("takeover", "no_intent").inc()
        log.warning(
            "input partitions %s were committed without an upload intent (at offsets %s, by an "
            "older connector or another tool): records beyond them are uploaded at least once",
            list(partitions), list(offsets),
        )  # fmt: skip

    def found_after_handover(self, records: Sequence[PendingRecord]) -> dict[int, str]:
        """Index in `records` → id of its item, for the records a previous owner of their
        partition created already. Waits for the hand-over's listing (made once)."""
        by_handover: dict[int, tuple[_Handover, list[int]]] = {}
        with self._lock:
            if not self._suspects:
                return {}
            for index, record in enumerate(records):
                suspect = self._suspects.get(record.partition)
                if (
                    suspect is None
                    or suspect.generation != record.generation
                    or (suspect.end_offset is not None and record.offset >= suspect.end_offset)
                ):
                    continue
                key = id(suspect.handover)
                by_handover.setdefault(key, (suspect.handover, []))[1].append(index)
        found: dict[int, str] = {}
        for handover, indexes in by_handover.values():
            with handover.lock:
                items = self._handover_items(handover, len(indexes))
                if items is None:
                    continue
                for index in indexes:
                    item_id = items.claim(self._identity(records[index]))
                    if item_id is not None:
                        found[index] = item_id
        suspects = sum(len(indexes) for _, indexes in by_handover.values())
        if suspects:
            self._metrics.reconciled_items.labels("found").inc(len(found))
            self._metrics.reconciled_items.labels("sent").inc(suspects - len(found))
        return found

    def _handover_items(self, handover: _Handover, count: int) -> CreatedItems | None:
        """The hand-over's listing (called under its lock); None when it failed."""
        if handover.items is not None or handover.failed:
            return handover.items
        wait = handover.assigned_at + self._recheck - self._clock.time()
        if wait > 0 and self._clock.wait(self._stop, wait):
            return None  # stopping: the batch is abandoned anyway
        requests = 0
        try:
            deadline = self._clock.monotonic() + self._timeout
            listed, requests = self._list(handover.since, requests, deadline)
        except TolokaApiError as error:
            handover.failed = True
            self._failed("takeover", count, requests, error)
            return None
        handover.items = CreatedItems(listed, set())
        self._completed("takeover", 0, 0, requests)
        log.info(
            "reconciling a hand-over: %d items created since %s listed in %d request(s); "
            "records found among them are not sent again",
            len(listed), format_api_datetime(_utc(handover.since)), requests,
        )  # fmt: skip
        return handover.items

    # --- the listing -----------------------------------------------------------------------

    def _list(
        self, since: float, requests: int, deadline: float
    ) -> tuple[list[tuple[str, str]], int]:
        """(identity, id) of every item created in [since - skew, now + skew), in creation
        order; and the listing requests made so far (`requests` plus this listing's). A failed
        request is made again until `deadline` (monotonic), then its error is raised."""
        filters = {
            "created_gte": format_api_datetime(_utc(since - self._skew)),
            "created_lt": format_api_datetime(_utc(self._clock.time() + self._skew)),
        }
        pairs: list[tuple[str, str]] = []
        after_id: str | None = None
        pages = PageSizer(PAGE_SIZE, self._response_limit)
        while True:
            failures = 0
            while True:
                requests += 1
                try:
                    page = self._client.list_items(
                        sort="created", after_id=after_id, limit=pages.size, filters=filters
                    )
                    break
                except TolokaApiError as error:
                    if isinstance(error, UnreadablePageError) and pages.shrink():
                        # Too large (or undecodable): a page of fewer items may be read at once.
                        log.warning("listing of created items unreadable (%s): asking for %d "
                                    "items", error, pages.size)  # fmt: skip
                        continue
                    failures += 1
                    pause = min(RETRY_PAUSE_SECONDS * failures, MAX_RETRY_PAUSE_SECONDS)
                    if self._clock.monotonic() + pause > deadline or self._clock.wait(
                        self._stop, pause
                    ):
                        raise
            pages.readable(len(page.content), sum(len(orjson.dumps(i.raw)) for i in page.content))
            key_field = self._key_field
            pairs.extend(
                (item_identity(item.input_data, key_field), item.id) for item in page.content
            )
            if not page.has_more or not page.content:
                return pairs, requests
            after_id = page.content[-1].id

    def _identity(self, record: PendingRecord) -> str:
        return item_identity(orjson.loads(record.item), self._key_field)

    def _completed(self, cause: str, found: int, sent: int, requests: int) -> None:
        self._metrics.reconciliations.labels(cause, "complete").inc()
        self._metrics.reconcile_listing_requests.observe(requests)
        if found or sent:
            self._metrics.reconciled_items.labels("found").inc(found)
            self._metrics.reconciled_items.labels("sent").inc(sent)

    def _failed(self, cause: str, count: int, requests: int, error: TolokaApiError) -> None:
        self._metrics.reconciliations.labels(cause, "failed").inc()
        self._metrics.reconcile_listing_requests.observe(requests)
        log.error(
            "reconciliation failed (%s): the API did not answer the listing of created items "
            "(%s); %d records are sent again, at least once (they may exist twice)",
            cause.replace("_", " "), error, count,
        )  # fmt: skip


def _match(identities: Sequence[str], items: CreatedItems) -> dict[int, str]:
    found: dict[int, str] = {}
    for index, identity in enumerate(identities):
        item_id = items.claim(identity)
        if item_id is not None:
            found[index] = item_id
    return found


def _utc(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)
