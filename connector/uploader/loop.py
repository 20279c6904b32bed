"""The uploader's consumer loop: consume → decode → batch → upload threads → commit.

One thread (the role's) owns the consumer, the producer, the batcher and the offset tracker;
upload threads only talk to the API and hand a `BatchOutcome` back through a queue. A record's
offset is done when its item was created or its dead letter acknowledged, and only the highest
contiguous done offset of each partition is committed, with a plain consumer commit (offsets are
never sent through a producer transaction: the mock cluster drops those).

Back-pressure: while every upload slot is busy and as many closed batches wait, no records are
taken; when that lasts (a slow API), or a batch is waiting out an API outage, all assigned
partitions are paused and `consume()` keeps being called, so the member stays in its group.
Partitions whose dead letters the broker does not acknowledge are paused too once those exceed
CONNECTOR_DLQ_MAX_PENDING_BYTES, and the role stops (after committing what is done) when one
waits longer than CONNECTOR_DLQ_TIMEOUT_SECONDS. Any other fatal error commits what is done
too (synchronously, without draining) before it ends the role. Memory stays bounded however
long the outage:
twice `max_in_flight` batches, the open one, one `consume()` call's worth, the pending dead
letters, and librdkafka's `queued.max.messages.kbytes`.

Stop and revocation finish what was read: the open batch is closed and every batch of the
partitions concerned is uploaded until the drain deadline, dead letters are flushed and what is
done is committed, so a clean stop leaves nothing done behind the committed offsets (nothing is
uploaded or dead-lettered twice after a restart). What the deadline cuts off (an API outage) is
read again by the next owner: an upload abandoned in flight that still succeeds creates its
items twice, and dead letters behind an unsent record are written again.

With a `Reconciler` (exactly-once uploads, docs/exactly-once.md) every commit carries the upload
intent of its partition (`IntentLog`), the first request of an assignment that holds a record
of a partition waits until that partition's intent is committed, and an assignment reads the
intents committed before it: records a previous owner may have sent are looked up in the API
before they are sent (`Reconciler.taken_over`).
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from confluent_kafka import KafkaError, KafkaException, TopicPartition

from connector.clock import Clock
from connector.config import UploaderSettings
from connector.contract.upload_intents import decode_intent
from connector.errors import DeadLetterStuckError, KafkaOperationError
from connector.kafka.clients import CommittedOffsets, Consumer, Message, Producer
from connector.lifecycle import Heartbeat
from connector.metrics import Metrics
from connector.toloka.pacing import InFlightLimit
from connector.uploader.batcher import Batch, Batcher, PendingRecord
from connector.uploader.dead_letters import DeadLetterWriter
from connector.uploader.decode import ItemDecoder, Refusal, Validator, decode_item
from connector.uploader.intents import IntentLog
from connector.uploader.lag import LagReporter
from connector.uploader.offsets import OffsetTracker
from connector.uploader.reconcile import Reconciler
from connector.uploader.routing import HeaderRouter
from connector.uploader.spec import SpecRefresher
from connector.uploader.upload import BatchOutcome, BatchUploader
from connector.uploader.workers import RequestWorkers

log = logging.getLogger(__name__)

CONSUME_MAX_MESSAGES = 1000
IDLE_WAIT_SECONDS = 0.1
"""Longest single wait of the loop: bounds how late a stop, a finished upload or a due linger
is noticed."""
BACKLOG_PAUSE_SECONDS = 1.0
"""A backlog (all upload slots busy, as many batches waiting) that lasts this long pauses the
partitions, so that `consume()` can be called again without taking records. A shorter one only
skips `consume()`: pausing purges librdkafka's prefetched records, and a resumed partition waits
for the fetch in progress (up to `fetch.wait.max.ms`, 500 ms) before it is fetched again, which
at full speed halved the throughput."""
FULL_QUEUE_WAIT_SECONDS = 0.01
"""Longest wait for delivery reports while dead letters wait for room in the producer's queue."""
MIN_FLUSH_SECONDS = 1.0
"""At shutdown the dead letters get at least this long to be acknowledged, even when draining
the uploads used up the whole drain timeout."""
OFFSETS_TIMEOUT_SECONDS = 10.0
"""How long an assignment waits for the committed offsets and the ends of its partitions."""


class UploadLoop:
    def __init__(
        self,
        settings: UploaderSettings,
        *,
        consumer: Consumer,
        producer: Producer,
        uploader: BatchUploader,
        validator: Validator,
        metrics: Metrics,
        clock: Clock,
        heartbeat: Heartbeat,
        lag: LagReporter,
        stalled_after_seconds: float,
        refresher: SpecRefresher | None = None,
        decode: ItemDecoder = decode_item,
        reconciler: Reconciler | None = None,
        router: HeaderRouter | None = None,
        in_flight_limit: InFlightLimit | None = None,
    ) -> None:
        self._settings = settings
        self._router = router
        self._in_flight_limit = in_flight_limit
        """Adapts the requests in flight to the API's 429s (None: always max_in_flight)."""
        self._decode = decode
        self._reconciler = reconciler
        self._intents = IntentLog(clock)
        self._intent_failing = False
        self._topic = settings.input_topic
        self._consumer = consumer
        self._producer = producer
        self._uploader = uploader
        self._validator = validator
        self._metrics = metrics
        self._clock = clock
        self._heartbeat = heartbeat
        self._lag = lag
        self._refresher = refresher
        self._stalled_after = stalled_after_seconds
        self._dead_letters = DeadLetterWriter(
            producer, settings.dlq_topic, metrics, clock,
            max_pending_bytes=settings.dlq_max_pending_bytes,
            timeout_seconds=settings.dlq_timeout_seconds,
        )  # fmt: skip
        self._batcher = Batcher(
            settings.batch_max_items, settings.batch_max_bytes, settings.linger_ms / 1000
        )
        self._offsets = OffsetTracker()
        self._assigned: set[int] = set()
        self._paused: set[int] = set()
        self._in_flight: list[Batch] = []
        self._completed: queue.SimpleQueue[BatchOutcome | BaseException] = queue.SimpleQueue()
        self._workers = RequestWorkers(self._upload, self._completed.put, "uploader-request")
        self._commit_interval = settings.commit_interval_ms / 1000
        self._next_commit = clock.monotonic() + self._commit_interval
        self._drain_deadline: float | None = None
        self._backlogged_since: float | None = None
        self._closing = False
        self.api_failing = False
        """True while a batch waits out an API outage (read by readiness from other threads)."""
        self.last_progress_at = clock.monotonic()
        """When a record was last uploaded or dead-lettered (read by readiness)."""

    def assignment(self) -> frozenset[int]:
        """The input partitions assigned now (safe to call from other threads)."""
        return frozenset(self._assigned)

    @property
    def dead_letters_failing(self) -> str | None:
        """Why dead letters are not acknowledged, while they are not (for readiness)."""
        return self._dead_letters.failing

    @property
    def lag(self) -> LagReporter:
        return self._lag

    @property
    def uploads_in_flight(self) -> int:
        """Bulk requests awaiting their outcome (safe to read from other threads)."""
        return len(self._in_flight)

    # --- the loop ------------------------------------------------------------------------

    def run(self, stop: threading.Event) -> None:
        """Consume and upload until `stop`, then drain, flush, commit and leave the group."""
        self._consumer.subscribe(
            [self._topic], on_assign=self._on_assign, on_revoke=self._on_revoke,
            on_lost=self._on_lost,
        )  # fmt: skip
        try:
            try:
                while not stop.is_set():
                    self._step()
            except DeadLetterStuckError:
                # Commit what is done first: the stuck dead letter's record is read again.
                self._shut_down(dead_letters_stuck=True)
                raise
            self._shut_down()
        except BaseException:
            if not self._closing:  # a shutdown that completed has committed already
                self._commit_done_before_failure()
            raise
        finally:
            self._closing = True  # close() revokes: what is done was committed just now
            self._consumer.close()
            self._workers.close()

    def _step(self) -> None:
        self._heartbeat.beat()  # the health server turns it into the heartbeat gauge
        backlogged = self._backlogged()
        if backlogged and not self._paused:
            messages: Sequence[Message] = []  # a short backlog: records wait in librdkafka
        else:
            blocked = backlogged or bool(self._paused)
            messages = self._take_records(0 if blocked else self._consume_timeout())
        if messages:
            self._accept(messages)
        self._batcher.close_lingering(self._clock.monotonic())
        self._dispatch()
        waiting = (backlogged or bool(self._paused)) and not messages
        self._apply_completions(IDLE_WAIT_SECONDS if waiting else 0.0)
        self._dispatch()
        dead_letters = self._dead_letters
        if dead_letters.unacknowledged:
            # Only then: each call gives up the GIL, and getting it back from busy upload
            # threads can take a whole switch interval (5 ms).
            dead_letters.send_due()
            # A full queue: wait a moment for the reports that make room (the step did not
            # wait for records meanwhile).
            self._producer.poll(FULL_QUEUE_WAIT_SECONDS if dead_letters.waiting_for_room else 0)
            dead_letters.check_deadline()
        if self._clock.monotonic() >= self._next_commit:
            self._commit(self._offsets.positions(only_moved=True), asynchronous=True)
        self._update_pause()
        if self._refresher is not None:
            self._validator = self._refresher.take() or self._validator

    def _take_records(self, timeout: float) -> Sequence[Message]:
        """Whatever is queued, waiting at most `timeout` for the first record only: a batch
        `consume()` would wait the whole timeout for a full batch, and the linger of the next
        batch would only start after it (seen: 100 ms added to the p50 upload latency)."""
        if timeout <= 0:
            return self._consumer.consume(CONSUME_MAX_MESSAGES, 0)
        first = self._consumer.consume(1, timeout)
        if not first:
            return first
        return [*first, *self._consumer.consume(CONSUME_MAX_MESSAGES - 1, 0)]

    def _consume_timeout(self) -> float:
        if self._dead_letters.waiting_for_room:
            return 0.0
        linger_left = self._batcher.linger_left(self._clock.monotonic())
        return IDLE_WAIT_SECONDS if linger_left is None else min(linger_left, IDLE_WAIT_SECONDS)

    def _accept(self, messages: Sequence[Message]) -> None:
        elsewhere = self._accept_own(messages)
        # Another pipeline's records are not this one's: the dead-letter share divides by these.
        self._metrics.records_consumed.inc(len(messages) - elsewhere)
        if elsewhere:
            self._metrics.records_routed_elsewhere.inc(elsewhere)

    def _accept_own(self, messages: Sequence[Message]) -> int:
        """Batch or dead-letter the records of this pipeline among `messages`; how many were
        another pipeline's (routed by header), each done at once."""
        # The hot loop: names bound once, one tracker call and one decode per record.
        now = self._clock.monotonic()
        max_bytes = self._settings.max_record_bytes
        validator = self._validator
        decode = self._decode
        consumed = self._offsets.consumed
        add = self._batcher.add
        route = None if self._router is None else self._router.route
        elsewhere = 0
        for message in messages:
            error = message.error()
            if error is not None:
                self._consumer_error(error)
                continue
            partition = message.partition()
            offset = message.offset()
            if partition is None or offset is None:
                continue
            generation = consumed(partition, offset)
            if generation is None:
                continue  # fetched before its partition was revoked: the new owner reads it
            routed = True if route is None else route(message)
            if routed is False:  # another pipeline's record on a shared input topic
                self._offsets.done(partition, offset, generation)
                elsewhere += 1
                continue
            decoded = decode(message.value(), max_bytes, validator) if routed is True else routed
            if isinstance(decoded, Refusal):
                self._dead_letter(
                    message, decoded, partition=partition, offset=offset, generation=generation
                )
            else:
                add(PendingRecord(message, partition, offset, generation, decoded), now)
        return elsewhere

    def _consumer_error(self, error: KafkaError) -> None:
        if error.fatal():
            raise KafkaOperationError(f"the input consumer failed: {error.str()}")
        if error.code() != KafkaError._PARTITION_EOF:
            log.warning("input consumer: %s", error.str())

    def _slots(self) -> int:
        """How many bulk requests may be in flight now."""
        limit = self._in_flight_limit
        return self._settings.max_in_flight if limit is None else limit.current

    def _dispatch(self) -> None:
        while len(self._in_flight) < self._slots():
            batch = self._batcher.peek_ready()
            if batch is None or not self._intent_recorded(batch):
                break
            self._batcher.next_ready()
            if self._reconciler is not None:
                self._intents.sent(_highest_offsets(batch), self._clock.time())
            self._in_flight.append(batch)
            self._workers.submit(batch)
        self._metrics.uploads_in_flight.set(len(self._in_flight))

    def _intent_recorded(self, batch: Batch) -> bool:
        """Whether the batch may be sent: the intent of each of its partitions is committed in
        this assignment (committed now, synchronously, where it is not)."""
        if self._reconciler is None:
            return True
        missing = self._intents.unrecorded(batch.partitions())
        if not missing:
            return True
        metadata = self._intents.metadata
        offsets = [
            TopicPartition(self._topic, p, offset, metadata=metadata(p, offset, final=False))
            for p in sorted(missing)
            if (offset := self._offsets.commit_point(p)) is not None
        ]
        try:
            self._consumer.commit(offsets=offsets, asynchronous=False)
        except KafkaException as failure:
            if not self._intent_failing:
                log.warning(
                    "the upload intent of input partitions %s could not be committed (%s): "
                    "their batches wait", sorted(missing), failure.args[0],
                )  # fmt: skip
            self._intent_failing = True
            return False
        self._intent_failing = False
        self._intents.recorded(missing)
        return True

    def _upload(self, batch: Batch) -> BatchOutcome | BaseException:
        try:
            return self._uploader.upload(batch)
        except BaseException as failure:  # a bug: end the role rather than hang on the batch
            return failure

    def _apply_completions(self, wait: float) -> None:
        try:
            completed = self._completed.get(timeout=wait) if wait else self._completed.get_nowait()
        except queue.Empty:
            return
        while True:
            if isinstance(completed, BaseException):
                raise completed
            self._apply(completed)
            try:
                completed = self._completed.get_nowait()
            except queue.Empty:
                break
        self._metrics.uploads_in_flight.set(len(self._in_flight))

    def _apply(self, outcome: BatchOutcome) -> None:
        self._in_flight.remove(outcome.batch)
        if outcome.uploaded:
            self.last_progress_at = self._clock.monotonic()
        done = self._offsets.done
        for record in outcome.uploaded:
            done(record.partition, record.offset, record.generation)
        for rejected in outcome.rejected:
            record = rejected.record
            if self._offsets.is_current(record.partition, record.generation):
                self._dead_letter(
                    record.message, rejected.refusal, request_id=rejected.request_id,
                    partition=record.partition, offset=record.offset,
                    generation=record.generation,
                )  # fmt: skip
        if outcome.abandoned:
            log.warning("%d records were not uploaded before shutdown: they will be read again",
                        len(outcome.abandoned))  # fmt: skip

    def _dead_letter(
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

        self._dead_letters.write(message, refusal, request_id, partition, written)

    def _commit(
        self, positions: dict[int, int], *, asynchronous: bool, final: bool = False
    ) -> None:
        """Commit `positions`; in the background while running, waiting for the broker when
        partitions are handed over or the uploader stops (`final`: nothing more is sent for
        them). A background commit that fails is superseded by the next one: the hand-over and
        final commits send every position."""
        self._next_commit = self._clock.monotonic() + self._commit_interval
        if not positions:
            return
        if self._reconciler is None:
            offsets = [TopicPartition(self._topic, p, offset) for p, offset in positions.items()]
        else:
            metadata = self._intents.metadata
            offsets = [
                TopicPartition(self._topic, p, offset, metadata=metadata(p, offset, final=final))
                for p, offset in positions.items()
            ]
        try:
            if asynchronous:  # two calls: the stubs type each mode by a Literal overload
                self._consumer.commit(offsets=offsets, asynchronous=True)
            else:
                self._consumer.commit(offsets=offsets, asynchronous=False)
        except KafkaException as failure:
            # The positions stay uncommitted and are sent again with the next commit.
            log.warning("offset commit failed: %s", failure.args[0])
            return
        if not asynchronous:
            # Only a synchronous commit is known to have landed. A background one can still
            # fail (a rebalance in between), so its positions are sent again every interval
            # until a synchronous commit confirms them (seen: a partition left 61k records
            # behind for ten minutes when background commits were taken as done).
            self._offsets.committed(positions)
        self._metrics.offsets_committed.inc()

    # --- back-pressure -----------------------------------------------------------------------

    def _backlogged(self) -> bool:
        """Every upload slot is busy and `max_in_flight` closed batches wait for one (whatever
        the in-flight limit is now, so that memory stays bounded by the maximum)."""
        return (
            len(self._in_flight) >= self._slots()
            and self._batcher.ready_count >= self._settings.max_in_flight
        )

    def _update_pause(self) -> None:
        self.api_failing = any(self._failing(batch) for batch in self._in_flight)
        now = self._clock.monotonic()
        if not self._backlogged():
            self._backlogged_since = None
        elif self._backlogged_since is None:
            self._backlogged_since = now
        long_backlog = (
            self._backlogged_since is not None
            and now - self._backlogged_since >= BACKLOG_PAUSE_SECONDS
        )
        wanted = set(self._assigned) if self.api_failing or long_backlog else set()
        wanted |= self._dead_letters.pending_partitions() & self._assigned
        if wanted - self._paused:
            self._consumer.pause(self._partitions(wanted - self._paused))
        if self._paused - wanted:
            self._consumer.resume(self._partitions(self._paused - wanted))
        self._paused = wanted
        self._metrics.paused_partitions.set(len(self._paused))

    def _failing(self, batch: Batch) -> bool:
        """Waiting out an outage, or in one request for longer than one attempt can take (the
        client is retrying it)."""
        started = batch.request_started
        return batch.retrying or (
            started is not None and self._clock.monotonic() - started > self._stalled_after
        )

    def _partitions(self, numbers: Iterable[int]) -> list[TopicPartition]:
        return [TopicPartition(self._topic, number) for number in sorted(numbers)]

    # --- rebalancing and shutdown ------------------------------------------------------------

    def _on_assign(self, consumer: Any, partitions: list[TopicPartition]) -> None:
        numbers = {tp.partition for tp in partitions if tp.topic == self._topic}
        self._offsets.assign(numbers)
        if self._reconciler is not None and numbers:
            self._intents.assign(numbers)
            self._take_over(consumer, numbers, self._reconciler)
        self._assigned |= numbers
        self._lag.assigned(numbers)
        log.info("assigned input partitions %s", sorted(numbers))

    def _take_over(
        self, consumer: CommittedOffsets, numbers: set[int], reconciler: Reconciler
    ) -> None:
        """Read the upload intents committed for the partitions just assigned: records beyond a
        committed offset that a previous owner may have sent are reconciled before they are."""
        try:
            committed = consumer.committed(self._partitions(numbers), OFFSETS_TIMEOUT_SECONDS)
        except KafkaException as failure:
            log.warning("committed offsets unreadable (%s)", failure.args[0])
            committed = [TopicPartition(self._topic, p, 0) for p in sorted(numbers)]
        suspects: dict[int, tuple[int, float, int | None]] = {}
        unknown: dict[int, int] = {}
        for tp in committed:
            if tp.offset < 0:
                continue  # never committed: the intent precedes every request, nothing was sent
            intent = decode_intent(tp.metadata)
            if intent is None:
                unknown[tp.partition] = tp.offset
                continue
            if intent.since is None:
                continue
            end = _end_offset(consumer, tp)
            generation = self._offsets.generation(tp.partition)
            if (end is not None and end <= tp.offset) or generation is None:
                continue
            suspects[tp.partition] = (generation, intent.since, end)
            self._intents.inherit(tp.partition, intent.since, end)
        reconciler.taken_over(suspects)
        if unknown:
            reconciler.no_intent(sorted(unknown), [unknown[p] for p in sorted(unknown)])

    def _on_revoke(self, _consumer: Any, partitions: list[TopicPartition]) -> None:
        numbers = {tp.partition for tp in partitions if tp.topic == self._topic}
        if not self._closing:
            self._finish_partitions(numbers)
        self._forget(numbers)
        log.info("revoked input partitions %s", sorted(numbers))

    def _on_lost(self, _consumer: Any, partitions: list[TopicPartition]) -> None:
        # Another member may own them already: committing now could move its offsets.
        numbers = {tp.partition for tp in partitions if tp.topic == self._topic}
        self._batcher.drop_partitions(numbers)
        self._forget(numbers)
        log.warning("lost input partitions %s: their unfinished records will be read again",
                    sorted(numbers))  # fmt: skip

    def _finish_partitions(self, numbers: set[int]) -> None:
        """Upload what was read of `numbers` (until the drain deadline), flush their dead
        letters and commit what is done."""
        deadline = self._drain_deadline
        if deadline is None:
            deadline = self._clock.monotonic() + self._settings.drain_timeout_seconds
        self._batcher.close_open()
        self._drain(lambda: any(batch.partitions() & numbers for batch in self._unfinished()),
                    deadline)  # fmt: skip
        dropped = self._batcher.drop_partitions(numbers)
        unflushed = self._producer.flush(max(deadline - self._clock.monotonic(), 0.0))
        self._commit(self._offsets.positions(numbers), asynchronous=False, final=True)
        abandoned = [batch for batch in self._in_flight if batch.partitions() & numbers]
        if dropped or abandoned or unflushed:
            log.warning(
                "partitions %s handed over with %d unsent records, %d unfinished uploads and %d "
                "unacknowledged dead letters: the new owner reads them again (unfinished uploads "
                "that still succeed create their items twice)",
                sorted(numbers), dropped, len(abandoned), unflushed,
            )  # fmt: skip

    def _unfinished(self) -> list[Batch]:
        return [*self._in_flight, *self._batcher.ready()]

    def _forget(self, numbers: set[int]) -> None:
        self._intents.forget(numbers)
        if self._reconciler is not None:
            self._reconciler.forget(numbers)
        self._dead_letters.forget_partitions(numbers)
        self._offsets.forget(numbers)
        self._assigned -= numbers
        self._paused -= numbers
        self._lag.revoked(numbers)

    def _drain(self, pending: Callable[[], bool], deadline: float) -> None:
        """Send the closed batches, apply upload outcomes and serve delivery reports until
        `pending()` turns false or the deadline passes."""
        while pending():
            left = deadline - self._clock.monotonic()
            if left <= 0:
                return
            self._dispatch()
            self._apply_completions(min(left, IDLE_WAIT_SECONDS))
            self._dead_letters.send_due()
            self._producer.poll(0)

    def _commit_done_before_failure(self) -> None:
        """A fatal error ends the loop: commit what is done so far, synchronously, so that a
        restart neither uploads those records again nor writes their dead letters twice.
        Nothing is drained (the error may be the API's or Kafka's): outcomes and delivery
        reports already back are applied, the rest is read again. Best effort: the fatal error
        is what the caller sees."""
        try:
            while True:
                try:
                    completed = self._completed.get_nowait()
                except queue.Empty:
                    break
                if not isinstance(completed, BaseException):
                    self._apply(completed)
            self._producer.poll(0)
        except Exception as failure:  # the positions done so far still count
            log.warning("while applying what finished before the failure: %s", failure)
        self._commit(self._offsets.positions(), asynchronous=False)

    def _shut_down(self, *, dead_letters_stuck: bool = False) -> None:
        """Upload what was read (until the drain deadline), flush the dead letters, commit."""
        self._batcher.close_open()
        self._drain_deadline = self._clock.monotonic() + self._settings.drain_timeout_seconds
        self._drain(lambda: bool(self._unfinished()), self._drain_deadline)
        dropped = self._batcher.drop_all()
        if self._in_flight:
            log.warning("%d uploads did not finish within CONNECTOR_DRAIN_TIMEOUT_SECONDS: "
                        "their records will be read again", len(self._in_flight))  # fmt: skip
            self._uploader.give_up()
        # Stuck dead letters will not be acknowledged now: serve reports, do not wait for them.
        flush_for = 0.0 if dead_letters_stuck else max(
            self._drain_deadline - self._clock.monotonic(), MIN_FLUSH_SECONDS
        )  # fmt: skip
        unflushed = self._producer.flush(flush_for)
        self._commit(self._offsets.positions(), asynchronous=False, final=True)
        log.info("uploader stopped: %d unsent records and %d unacknowledged dead letters left "
                 "for the next start", dropped, unflushed)  # fmt: skip
        self._closing = True


def _highest_offsets(batch: Batch) -> dict[int, int]:
    highest: dict[int, int] = {}
    for record in batch.records:
        if record.offset > highest.get(record.partition, -1):
            highest[record.partition] = record.offset
    return highest


def _end_offset(consumer: CommittedOffsets, partition: TopicPartition) -> int | None:
    """The partition's end now (None when unknown): a previous owner read nothing beyond it."""
    try:
        marks = consumer.get_watermark_offsets(
            partition, timeout=OFFSETS_TIMEOUT_SECONDS, cached=False
        )
    except KafkaException as failure:
        log.warning("the end of input partition %d is unknown (%s)", partition.partition,
                    failure.args[0])  # fmt: skip
        return None
    return None if marks is None else marks[1]
