"""One batch → the Apps API, in an upload thread: rejected items out, the rest created.

Whatever happens, every record of the batch ends in exactly one list of its `BatchOutcome`:
uploaded, rejected (to be dead-lettered), or abandoned (shutdown gave up on it; it is read again
after a restart). The loops below always shrink or wait, so no batch loops forever on its data:
- a 400 VALIDATION_ERROR naming items by index (`input_data.<i>.<field>`) rejects exactly those
  and re-sends the rest at once;
- a 400 naming no index, or a 413, splits the request in halves until the culprits are alone;
- an outage (429, 5xx, timeouts, connection errors — after the client's own retries — and
  errors that only an operator can fix, like a revoked key or a redirect) is waited out with a
  capped backoff: the batch is never dropped, `Batch.retrying` tells the loop to pause and
  report not ready;
- only a 2xx listing one new id per item counts as created. Any other success (an unreadable,
  oversized, short or empty body) may or may not have created the items: it is waited out and
  sent again like an outage, and its items are counted as possible duplicates;
- with a `Reconciler` (exactly-once uploads), an attempt whose outcome is unknown is not sent
  again blindly: the API is asked which of its items exist, those count as created, and only
  the rest are sent after the usual backoff. Records a previous owner of their partition
  may have sent are looked up the same way before the first attempt. Only when the API does
  not answer that listing is the batch waited out and sent again, as above.
"""

from __future__ import annotations

import logging
import random
import re
import threading
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol

from connector.clock import Clock
from connector.contract.dead_letters import REJECTED, TOO_LARGE
from connector.errors import (
    AuthenticationError,
    ClientRequestError,
    FatalApiError,
    PayloadTooLargeError,
    RetryableApiError,
    TolokaApiError,
    ValidationFailedError,
)
from connector.metrics import Metrics
from connector.outstanding import OutstandingItems
from connector.toloka.availability import KeyAvailability
from connector.toloka.client import BulkCreateResult
from connector.toloka.retry import RetryPolicy
from connector.uploader.batcher import Batch, PendingRecord, request_body
from connector.uploader.decode import Refusal
from connector.uploader.reconcile import Reconciler

log = logging.getLogger(__name__)


_ITEM_FIELD = re.compile(r"input_data\.(\d+)(?:\.(.+))?")


class BulkCreator(Protocol):
    def bulk_create_raw(
        self, body: bytes, count: int, *, retry_ambiguous: bool = True
    ) -> BulkCreateResult: ...
    def stop_retrying(self) -> None: ...


@dataclass(frozen=True, slots=True)
class RejectedRecord:
    record: PendingRecord
    refusal: Refusal
    request_id: str | None


@dataclass
class BatchOutcome:
    batch: Batch
    uploaded: list[PendingRecord] = field(default_factory=list)
    rejected: list[RejectedRecord] = field(default_factory=list)
    abandoned: list[PendingRecord] = field(default_factory=list)


class _GaveUpError(Exception):
    """Shutdown ended the wait for the API before this request succeeded."""


def rejected_items(payload: dict[str, Any], count: int) -> dict[int, str]:
    """Index in the request → the API's messages for that item, from a VALIDATION_ERROR payload.
    Keys naming no item, or an index outside the request, are ignored."""
    messages: dict[int, list[str]] = {}
    for key, problem in payload.items():
        match = _ITEM_FIELD.fullmatch(key)
        if match is None or int(match[1]) >= count:
            continue
        name = match[2] or "item"
        if isinstance(problem, dict):
            text = f"{name}: {problem.get('code', '?')}: {problem.get('message', '')}"
        else:
            text = f"{name}: {problem}"
        messages.setdefault(int(match[1]), []).append(text)
    return {index: "; ".join(texts) for index, texts in messages.items()}


def _splits_in_halves(error: FatalApiError) -> bool:
    """A refusal caused by some item(s) of the request that the API did not point at."""
    if isinstance(error, ValidationFailedError | PayloadTooLargeError):
        return True
    return isinstance(error, ClientRequestError) and error.status == 400


class BatchUploader:
    """Uploads batches; thread-safe (each call keeps its state on its own stack)."""

    def __init__(
        self,
        client: BulkCreator,
        metrics: Metrics,
        clock: Clock,
        *,
        outage_backoff: RetryPolicy,
        outstanding: OutstandingItems | None = None,
        rng: random.Random | None = None,
        reconciler: Reconciler | None = None,
    ) -> None:
        self._client = client
        self._reconciler = reconciler
        self._metrics = metrics
        self._clock = clock
        self._outage_backoff = outage_backoff
        self._give_up = threading.Event()
        self._outstanding = outstanding
        self._rng = rng or random.Random()  # noqa: S311 - jitter, not cryptography
        self.key = KeyAvailability(clock)
        """Down while the API refuses the key (revoked after start-up): waited out like an
        outage, logged once when it begins and once when it ends, shown by readiness."""

    def give_up(self) -> None:
        """Shutdown: requests still failing end now; their records go to `abandoned`."""
        self._give_up.set()
        self._client.stop_retrying()
        if self._reconciler is not None:
            self._reconciler.give_up()

    def upload(self, batch: Batch) -> BatchOutcome:
        outcome = BatchOutcome(batch)
        first = list(batch.records)  # a copy: `_create` takes out what it finds created
        if self._reconciler is not None:
            found = self._reconciler.found_after_handover(first)
            self._take_as_created(first, found, outcome)
        requests: deque[list[PendingRecord]] = deque([first] if first else [])
        while requests:
            records = requests.popleft()
            try:
                self._create(batch, records, outcome)
            except _GaveUpError:
                outcome.abandoned.extend(records)
                for rest in requests:
                    outcome.abandoned.extend(rest)
                break
            except FatalApiError as refusal:
                self._sort_out(refusal, records, requests, outcome)
            else:
                outcome.uploaded.extend(records)
        return outcome

    def _sort_out(
        self,
        refusal: FatalApiError,
        records: list[PendingRecord],
        requests: deque[list[PendingRecord]],
        outcome: BatchOutcome,
    ) -> None:
        """Reject what the API pointed at and queue the rest, or split the request in halves."""
        named = (
            rejected_items(refusal.payload, len(records))
            if isinstance(refusal, ValidationFailedError)
            else {}
        )
        if named:
            for index, message in sorted(named.items()):
                refused = Refusal(REJECTED, message)
                outcome.rejected.append(RejectedRecord(records[index], refused, refusal.request_id))
            rest = [record for index, record in enumerate(records) if index not in named]
            if rest:
                requests.appendleft(rest)
        elif len(records) > 1:
            middle = len(records) // 2
            requests.extendleft([records[middle:], records[:middle]])
        else:
            reason = TOO_LARGE if isinstance(refusal, PayloadTooLargeError) else REJECTED
            message = f"the API refused a request holding only this item: {refusal}"
            outcome.rejected.append(
                RejectedRecord(records[0], Refusal(reason, message), refusal.request_id)
            )

    def _create(self, batch: Batch, records: list[PendingRecord], outcome: BatchOutcome) -> None:
        """Create the items of `records`, waiting out outages; raise the API's refusal. Records
        whose items a lost answer turns out to have created move from `records` to
        `outcome.uploaded`."""
        body = request_body(records)
        self._metrics.upload_batch_size.observe(len(records))
        self._metrics.upload_batch_bytes.observe(len(body))
        batch.request_started = self._clock.monotonic()
        reconciler = self._reconciler
        failures = 0
        since: float | None = None  # when the first attempt that may have been applied left
        found_before: set[str] = set()
        while True:
            sent_at = self._clock.time()
            try:
                result = self._client.bulk_create_raw(
                    body, len(records), retry_ambiguous=reconciler is None
                )
            except FatalApiError as error:
                if _splits_in_halves(error):
                    raise
                if isinstance(error, AuthenticationError):
                    self.key.refused(error)
                failure: TolokaApiError = error
            except RetryableApiError as error:
                failure = error
            else:
                self.key.reached()
                self._record_success(records, result)
                break
            reconciled = False
            if reconciler is not None and failure.may_have_been_applied:
                since = sent_at if since is None else since
                found = reconciler.after_lost_answer(records, since, found_before)
                if found is not None:
                    self._take_as_created(records, found, outcome)
                    if not records:
                        break
                    body = request_body(records)  # only the missing ones
                    reconciled = True
            self._wait_out(
                batch, failure, failures := failures + 1, len(records), reconciled=reconciled
            )
        batch.retrying = False

    def _take_as_created(
        self, records: list[PendingRecord], found: dict[int, str], outcome: BatchOutcome
    ) -> None:
        """Move the records whose items exist (index → item id) from `records` to
        `outcome.uploaded`."""
        if not found:
            return
        pairs = [(records[index], item_id) for index, item_id in sorted(found.items())]
        self._track_outstanding(pairs)
        outcome.uploaded.extend(record for record, _ in pairs)
        records[:] = [record for index, record in enumerate(records) if index not in found]

    def _wait_out(
        self,
        batch: Batch,
        error: TolokaApiError,
        failures: int,
        items: int,
        *,
        reconciled: bool = False,
    ) -> None:
        """Wait before sending again; `reconciled`: the items of the failed attempt that exist
        were found, so the next attempt cannot duplicate them."""
        batch.retrying = True
        if error.may_have_been_applied and not reconciled:
            self._metrics.possible_duplicate_uploads.inc(items)
        retry_after = error.retry_after if isinstance(error, RetryableApiError) else None
        delay = self._outage_backoff.delay_before_retry(failures, retry_after, self._rng)
        # A refused key is logged once, by `self.key`, however many requests see it; an outage
        # once by the API's availability tracker. Per batch, the first failure is said.
        first = failures == 1 and not isinstance(error, AuthenticationError)
        level = logging.ERROR if first else logging.DEBUG
        log.log(
            level, "bulk create of %d items failed %d time(s) in a row, next try in %.1fs: %s",
            items, failures, delay, error,
        )  # fmt: skip
        if self._give_up.is_set() or self._clock.wait(self._give_up, delay):
            raise _GaveUpError

    def _record_success(self, records: list[PendingRecord], result: BulkCreateResult) -> None:
        self._metrics.items_uploaded.inc(len(result.ids))
        if result.possibly_duplicated_attempts:
            self._metrics.possible_duplicate_uploads.inc(
                result.possibly_duplicated_attempts * len(result.ids)
            )
        self._track_outstanding(zip(records, result.ids, strict=True))

    def _track_outstanding(self, created: Iterable[tuple[PendingRecord, str]]) -> None:
        if self._outstanding is not None:
            now = self._clock.time()
            self._outstanding.add((item_id, _timestamp(record, now)) for record, item_id in created)


def _timestamp(record: PendingRecord, default: float) -> float:
    """The input record's timestamp in seconds (`default` when the record has none)."""
    milliseconds: int = record.message.timestamp()[1]
    return milliseconds / 1000 if milliseconds >= 0 else default
