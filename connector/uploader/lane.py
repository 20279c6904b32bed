"""One pipeline's share of the process's upload loop: what it does with the records routed to it.

A lane decodes and validates its records (its app's `input_spec`, refreshed; those the Schema
Registry does not answer for wait in `registry_wait` until it does), batches them, sends
its batches with its own request threads, as many at once as its in-flight limit allows (AIMD on
the API's 429s), dead-letters what is refused to its own dead-letter topic, and reconciles what
a previous owner or a lost answer may have created. Everything here is of one pipeline and one
input topic, in that topic's partition numbers; the loop (`connector.uploader.loop`) owns the
consumer, the offsets of each topic (`OffsetTracker`, shared by the lanes of a shared topic) and
the commits, and calls a lane from its own thread only. A record is done for its topic's
tracker when its lane uploaded it or had its dead letter acknowledged.
"""

from __future__ import annotations

import logging
from bisect import bisect_left
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import cast

from connector.clock import Clock
from connector.config import UploaderSettings
from connector.errors import RegistryCredentialsError, RegistryUnavailableError
from connector.kafka.clients import Message, Producer
from connector.metrics import Metrics
from connector.toloka.pacing import InFlightLimit
from connector.toloka.retry import RetryPolicy
from connector.uploader.batcher import Batch, Batcher, PendingRecord, partition_runs
from connector.uploader.dead_letters import DeadLetterWriter
from connector.uploader.decode import ItemDecoder, Refusal, Validator, decode_all, decode_item
from connector.uploader.lag import LagReporter
from connector.uploader.offsets import OffsetTracker
from connector.uploader.reconcile import Reconciler
from connector.uploader.registry_wait import RegistryWait, UndecodedRecord
from connector.uploader.spec import SpecRefresher
from connector.uploader.upload import BatchOutcome, BatchUploader
from connector.uploader.workers import RequestWorkers

log = logging.getLogger(__name__)

Delivered = Callable[["Lane", BatchOutcome | BaseException], None]
"""Where a lane's request threads hand each outcome (the loop's queue)."""


@dataclass(frozen=True)
class LaneParts:
    """What one pipeline brings to the loop, built by its role once its spec is read."""

    app_project: str
    settings: UploaderSettings
    uploader: BatchUploader
    validator: Validator
    decode: ItemDecoder
    metrics: Metrics
    lag: LagReporter
    stalled_after_seconds: float
    """One attempt takes at most this long: a request older than that is being retried."""
    outage_backoff: RetryPolicy
    """How long records wait for the Schema Registry before they are decoded again."""
    refresher: SpecRefresher | None = None
    reconciler: Reconciler | None = None
    in_flight_limit: InFlightLimit | None = None
    """Adapts the requests in flight to the API's 429s (None: always max_in_flight)."""


class Lane:
    def __init__(
        self,
        parts: LaneParts,
        *,
        offsets: OffsetTracker,
        producer: Producer,
        clock: Clock,
        deliver: Delivered,
    ) -> None:
        settings = parts.settings
        self.topic = settings.input_topic
        self.app_project = parts.app_project
        self.settings = settings
        self.uploader = parts.uploader
        self.reconciler = parts.reconciler
        self.lag = parts.lag
        self.metrics = parts.metrics
        self._parts = parts
        self._validator = parts.validator
        self._offsets = offsets
        self._clock = clock
        self.dead_letters = DeadLetterWriter(
            producer, settings.dlq_topic, parts.metrics, clock,
            max_pending_bytes=settings.dlq_max_pending_bytes,
            timeout_seconds=settings.dlq_timeout_seconds, source=settings.input_topic,
            pipeline=parts.app_project,
        )  # fmt: skip
        self.batcher = Batcher(
            settings.batch_max_items, settings.batch_max_bytes, settings.linger_ms / 1000
        )
        self.in_flight: list[Batch] = []
        """Batches handed to the request threads, started or waiting for a free one."""
        self.registry_wait = RegistryWait(parts.outage_backoff, clock)
        """Records read while the Schema Registry did not answer (a registry format)."""

        def delivered(outcome: BatchOutcome | BaseException) -> None:
            # Counted by the request threads (they start batches handed ahead without the
            # loop), down only once the outcome is in the loop's queue.
            try:
                deliver(self, outcome)
            finally:
                self.metrics.uploads_in_flight.dec()

        self._workers = RequestWorkers(self._upload, delivered, "uploader-request", self.slots)
        self.partitions: set[int] = set()
        """The partitions of its topic assigned now (read by readiness from other threads)."""
        self.floors: dict[int, int] = {}
        """Partition → offset below which this pipeline's records are done already (uploaded
        in the group it read in before, `connector.uploader.migration`)."""
        self._taken = 0
        self.took_at: float | None = None
        """When it last took records (`count_taken`): while they flow, another topic's backlog
        does not hold them up (the loop pauses that topic at once)."""
        self.backlogged_since: float | None = None
        self.api_failing = False
        """True while a batch waits out an API outage (read by readiness from other threads)."""
        self.last_progress_at = clock.monotonic()
        """When a record was last uploaded or dead-lettered (read by readiness)."""

    # --- records in ----------------------------------------------------------------------

    def take(
        self, messages: Sequence[Message], offsets: Sequence[int], partition: int,
        generation: int, *, refusal: Refusal | None, now: float,
    ) -> None:  # fmt: skip
        """Batch or dead-letter records of one partition routed to this lane, in ascending
        `offsets` (those of one consume() call; `refusal`: dead-letter them so)."""
        floor = self.floors.get(partition)
        if floor is not None and offsets[0] < floor:
            below = bisect_left(offsets, floor)
            self._offsets.done_offsets(partition, offsets[:below], generation)
            messages, offsets = messages[below:], offsets[below:]
        self._taken += len(messages)
        waiting = self.registry_wait
        if refusal is None and waiting.records:  # behind records the registry did not read
            waiting.records.extend(
                UndecodedRecord(message, partition, offset, generation)
                for message, offset in zip(messages, offsets, strict=True)
            )
            return
        if refusal is not None:
            decoded: list[bytes | Refusal] = [refusal] * len(messages)
        else:
            decoded, unanswered = self._decoded(messages)
            if unanswered is not None:  # it and the records after it wait for the registry
                waiting.failed(unanswered)
                waiting.records.extend(
                    UndecodedRecord(message, partition, offset, generation)
                    for message, offset in zip(
                        messages[len(decoded) :], offsets[len(decoded) :], strict=True
                    )
                )
                messages, offsets = messages[: len(decoded)], offsets[: len(decoded)]
        if set(map(type, decoded)) != {bytes}:  # some refused: dead-letter them, batch the rest
            for message, offset, item in zip(messages, offsets, decoded, strict=True):
                if isinstance(item, Refusal):
                    self.dead_letter(message, item, partition=partition, offset=offset,
                                     generation=generation)  # fmt: skip
            kept = [index for index, item in enumerate(decoded) if not isinstance(item, Refusal)]
            messages, offsets = [messages[i] for i in kept], [offsets[i] for i in kept]
            decoded = [decoded[i] for i in kept]
        items = cast("list[bytes]", decoded)
        self.batcher.add_all(
            [PendingRecord(message, partition, offset, generation, item)
             for message, offset, item in zip(messages, offsets, items, strict=True)],
            now,
        )  # fmt: skip

    def _decoded(
        self, messages: Sequence[Message]
    ) -> tuple[list[bytes | Refusal], RegistryUnavailableError | None]:
        """The decodings of `messages` up to the first the Schema Registry did not answer for,
        and why it did not (None: all decoded). Refused registry credentials raise."""
        values = [message.value() for message in messages]
        limit = self.settings.max_record_bytes
        if self._parts.decode is decode_item:  # JSON: no registry, decoded in one pass
            return decode_all(decode_item, values, limit, self._validator), None
        decoded: list[bytes | Refusal] = []
        for value in values:
            try:
                decoded.append(self._parts.decode(value, limit, self._validator))
            except RegistryCredentialsError:
                raise
            except RegistryUnavailableError as error:
                return decoded, error
        return decoded, None

    def _settle(
        self, message: Message, partition: int, offset: int, generation: int, *, now: float
    ) -> bool:
        """Batch or dead-letter a record; False when the registry did not answer its decoding
        (refused credentials raise: waiting will not bring them back)."""
        try:
            decoded = self._parts.decode(
                message.value(), self.settings.max_record_bytes, self._validator
            )
        except RegistryCredentialsError:
            raise
        except RegistryUnavailableError as error:
            self.registry_wait.failed(error)
            return False
        if isinstance(decoded, Refusal):
            self.dead_letter(message, decoded, partition=partition, offset=offset,
                             generation=generation)  # fmt: skip
        else:
            self.batcher.add_all([PendingRecord(message, partition, offset, generation, decoded)],
                                 now)  # fmt: skip
        return True

    def decode_waiting(self, now: float) -> None:
        """Once their back-off is over, decode the records waiting for the registry, in the
        order read, until it fails again."""
        waiting = self.registry_wait
        if not waiting.due(now):
            return
        while waiting.records:
            record = waiting.records[0]
            if not self._settle(record.message, record.partition, record.offset,
                                record.generation, now=now):  # fmt: skip
                return
            waiting.records.popleft()
            waiting.answered()

    def count_taken(self, now: float) -> None:
        """Add the records taken since the last call to `records_consumed` (once per poll)."""
        if self._taken:
            self.metrics.records_consumed.inc(self._taken)
            self._taken = 0
            self.took_at = now

    def refresh_spec(self) -> None:
        refresher = self._parts.refresher
        if refresher is not None:
            self._validator = refresher.take() or self._validator

    # --- requests --------------------------------------------------------------------------

    def slots(self) -> int:
        """How many bulk requests may be in flight now."""
        limit = self._parts.in_flight_limit
        return self.settings.max_in_flight if limit is None else limit.current

    def dispatch(self, may_send: Callable[[Lane, Batch], bool]) -> None:
        """Hand the request threads the closed batches there are slots for, and as many again
        to start as soon as a slot frees (`RequestWorkers`), each once `may_send` allows it."""
        while len(self.in_flight) < 2 * self.slots():
            batch = self.batcher.peek_ready()
            if batch is None or not may_send(self, batch):
                break
            self.batcher.next_ready()
            self.in_flight.append(batch)
            self._workers.submit(batch)

    def _upload(self, batch: Batch) -> BatchOutcome | BaseException:
        self.metrics.uploads_in_flight.inc()  # down in `delivered`
        try:
            return self.uploader.upload(batch)
        except BaseException as failure:  # a bug: end the role rather than hang on the batch
            return failure

    def apply(self, outcome: BatchOutcome) -> None:
        self.in_flight.remove(outcome.batch)
        if outcome.uploaded:
            self.last_progress_at = self._clock.monotonic()
        for partition, generation, offsets in partition_runs(outcome.uploaded):
            self._offsets.done_offsets(partition, offsets, generation)
        for rejected in outcome.rejected:
            record = rejected.record
            if self._offsets.is_current(record.partition, record.generation):
                self.dead_letter(
                    record.message, rejected.refusal, request_id=rejected.request_id,
                    partition=record.partition, offset=record.offset,
                    generation=record.generation,
                )  # fmt: skip
        if outcome.abandoned:
            log.warning("%d records were not uploaded before shutdown: they will be read again",
                        len(outcome.abandoned))  # fmt: skip

    def dead_letter(
        self,
        message: Message,
        refusal: Refusal,
        *,
        request_id: str | None = None,
        partition: int,
        offset: int,
        generation: int,
    ) -> None:
        def written() -> None:
            self._offsets.done(partition, offset, generation)
            self.last_progress_at = self._clock.monotonic()

        self.dead_letters.write(message, refusal, request_id, partition, written)

    # --- back-pressure -----------------------------------------------------------------------

    def backlogged(self) -> bool:
        """Every upload slot is busy and the batches handed to the request threads and the
        closed ones not handed yet reach twice `max_in_flight` (whatever the in-flight limit is
        now, so that memory stays bounded by the maximum)."""
        in_flight = len(self.in_flight)
        return (
            in_flight >= self.slots()
            and in_flight + self.batcher.ready_count >= 2 * self.settings.max_in_flight
        )

    def note_failing(self) -> bool:
        """Whether a batch is waiting out an outage, or in one request for longer than one
        attempt can take (the client is retrying it); kept in `api_failing`."""
        now = self._clock.monotonic()
        stalled_after = self._parts.stalled_after_seconds

        def failing(batch: Batch) -> bool:
            started = batch.request_started
            return batch.retrying or (started is not None and now - started > stalled_after)

        self.api_failing = any(failing(batch) for batch in self.in_flight)
        return self.api_failing

    # --- partitions coming and going ---------------------------------------------------------

    def unfinished(self) -> list[Batch]:
        return [*self.in_flight, *self.batcher.ready()]

    def assigned(self, partitions: set[int]) -> None:
        self.partitions |= partitions
        self.lag.assigned(partitions)

    def drop_unsent(self, partitions: set[int] | None = None) -> int:
        """Forget the records of `partitions` (all: None) not sent yet, batched (handed to a
        request thread that has not started them included) or waiting for the registry (their
        next reader reads them again); how many were dropped."""
        waiting = self._workers.withdraw()
        if waiting:
            withdrawn = {id(batch) for batch in waiting}
            self.in_flight = [batch for batch in self.in_flight if id(batch) not in withdrawn]
            self.batcher.put_back(waiting)
        batched = self.batcher.drop_all() if partitions is None else (
            self.batcher.drop_partitions(partitions))  # fmt: skip
        return batched + self.registry_wait.drop(partitions)

    def forget(self, partitions: set[int]) -> None:
        if self.reconciler is not None:
            self.reconciler.forget(partitions)
        self.dead_letters.forget_partitions(partitions)
        self.partitions -= partitions
        for partition in partitions:
            self.floors.pop(partition, None)
        self.lag.revoked(partitions)

    def close(self) -> None:
        self._workers.close()
