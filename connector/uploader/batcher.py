"""Decoded records → bulk request batches, bounded by items, request bytes and linger time.

A batch may mix partitions: the offset tracker, not the batch, decides what may be committed.
The request body is the items' canonical bytes joined into `{"items":[...]}` once, when the
batch is sent, so no item is encoded twice.
"""

from __future__ import annotations

from bisect import bisect_right
from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from itertools import accumulate, groupby
from typing import Any

_BODY_PREFIX = b'{"items":['
_BODY_SUFFIX = b"]}"
_EMPTY_BODY_BYTES = len(_BODY_PREFIX) + len(_BODY_SUFFIX)


@dataclass(slots=True)
class PendingRecord:
    """A decoded input record waiting for its upload."""

    message: Any
    """The consumed message (confluent_kafka.Message or a test double): its key, value and
    headers go into a dead letter if the API rejects the item."""
    partition: int
    offset: int
    generation: int
    """The partition's assignment generation when the record was read (see OffsetTracker)."""
    item: bytes
    """Canonical JSON bytes of the item."""


def partition_runs(records: Sequence[PendingRecord]) -> Iterator[tuple[int, int, list[int]]]:
    """(partition, generation, ascending offsets) of each run of consecutive `records` of one
    partition and generation: records travel in runs as consume() calls handed them out, so
    per-partition work (offsets done, upload intents) is a call per run, not per record."""
    keys = [(record.partition, record.generation) for record in records]
    start = 0
    for (partition, generation), run in groupby(keys):
        stop = start + len(list(run))
        yield partition, generation, sorted([record.offset for record in records[start:stop]])
        start = stop


def request_body(records: Sequence[PendingRecord]) -> bytes:
    return _BODY_PREFIX + b",".join(record.item for record in records) + _BODY_SUFFIX


def body_size(records: Iterable[PendingRecord]) -> int:
    items = [len(record.item) for record in records]
    return _EMPTY_BODY_BYTES + sum(items) + max(len(items) - 1, 0)


@dataclass
class Batch:
    records: list[PendingRecord] = field(default_factory=list)
    body_bytes: int = _EMPTY_BODY_BYTES
    opened_at: float = 0.0
    retrying: bool = False
    """Set by the upload thread while this batch waits out an API outage."""
    request_started: float | None = None
    """When the upload thread started the current bulk request (clock.monotonic())."""

    def partitions(self) -> set[int]:
        return {record.partition for record in self.records}


class Batcher:
    """Collects records into the open batch; full or lingering batches move to `ready`."""

    def __init__(self, max_items: int, max_bytes: int, linger_seconds: float) -> None:
        self._max_items = max_items
        self._max_bytes = max_bytes
        self._linger = linger_seconds
        self._open = Batch()
        self._ready: deque[Batch] = deque()

    def add_all(self, records: Sequence[PendingRecord], now: float) -> None:
        """Add `records` in turn (those of one consume() call). A record that would push the body
        past `max_bytes` starts a new batch (a single record larger than that still travels,
        alone). A batch's worth of records at a time: the open batch takes the longest prefix
        that keeps it within `max_items` and `max_bytes` (at least one record), found from the
        running sum of the item sizes."""
        start, count = 0, len(records)
        while start < count:
            batch = self._open
            taken = len(batch.records)
            if not taken:
                batch.opened_at = now
            stop = min(count, start + self._max_items - taken)
            # Body bytes once records[start:end] joined it: a comma before each but a first one.
            sizes = list(accumulate([len(record.item) + 1 for record in records[start:stop]]))
            base = batch.body_bytes - (0 if taken else 1)
            fitting = bisect_right(sizes, self._max_bytes - base)
            if fitting == 0 and taken:
                self._close()  # the next record starts the next batch
                continue
            fitting = max(fitting, 1)  # a record larger than max_bytes travels alone
            batch.records.extend(records[start : start + fitting])
            batch.body_bytes = base + sizes[fitting - 1]
            start += fitting
            if len(batch.records) >= self._max_items or start < stop:
                self._close()

    def close_lingering(self, now: float) -> None:
        """Close the open batch when its first record has waited `linger_seconds`."""
        if self._open.records and now - self._open.opened_at >= self._linger:
            self._close()

    def close_open(self) -> None:
        """Close the open batch now, whatever its linger (shutdown, revocation)."""
        if self._open.records:
            self._close()

    def linger_left(self, now: float) -> float | None:
        """Seconds until the open batch is due; None when it is empty."""
        if not self._open.records:
            return None
        return max(0.0, self._open.opened_at + self._linger - now)

    def peek_ready(self) -> Batch | None:
        """The batch `next_ready` would return, left in place."""
        return self._ready[0] if self._ready else None

    def next_ready(self) -> Batch | None:
        return self._ready.popleft() if self._ready else None

    def put_back(self, batches: Sequence[Batch]) -> None:
        """Closed batches taken back before they were sent: first in line again, in order."""
        self._ready.extendleft(reversed(batches))

    def ready(self) -> list[Batch]:
        """The closed batches waiting for an upload slot, oldest first."""
        return list(self._ready)

    def unsent_partitions(self) -> set[int]:
        """The partitions of the records batched and not sent yet (the open batch's too)."""
        return {record.partition for batch in (self._open, *self._ready)
                for record in batch.records}  # fmt: skip

    @property
    def ready_count(self) -> int:
        return len(self._ready)

    def drop_partitions(self, partitions: set[int]) -> int:
        """Forget the unsent records of `partitions` (revoked: the new owner reads them again).
        Returns how many were dropped."""
        before = self._record_count()
        kept_open = [r for r in self._open.records if r.partition not in partitions]
        kept_ready = [
            [r for r in batch.records if r.partition not in partitions] for batch in self._ready
        ]
        self._open = _rebuilt(kept_open, self._open.opened_at)
        self._ready = deque(_rebuilt(records, 0.0) for records in kept_ready if records)
        return before - self._record_count()

    def drop_all(self) -> int:
        """Forget every unsent record (shutdown). Returns how many were dropped."""
        dropped = self._record_count()
        self._open = Batch()
        self._ready.clear()
        return dropped

    def _record_count(self) -> int:
        return len(self._open.records) + sum(len(batch.records) for batch in self._ready)

    def _close(self) -> None:
        self._ready.append(self._open)
        self._open = Batch()


def _rebuilt(records: list[PendingRecord], opened_at: float) -> Batch:
    return Batch(records=records, body_bytes=body_size(records), opened_at=opened_at)
