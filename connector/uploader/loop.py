"""The process's upload loop: consume every input topic → route to a lane → upload → commit.

One consumer, in the one group CONNECTOR_GROUP_ID, reads the input topic of every pipeline; each
record goes to its pipeline's `Lane` (`routing`: by topic, on a shared topic by header), which
batches, uploads and dead-letters it. One thread (the first pipeline role's) owns the consumer,
the dead-letter producer, the lanes and the offset tracker of each topic; the lanes' request
threads only talk to the API and hand a `BatchOutcome` back through one queue. A record's
offset is done when its lane created its item or had its dead letter acknowledged (or at once
when its lane's pipeline uploaded it in the group it read in before: `migration`), and only the
highest contiguous done offset of each partition is committed (`commits`).

Back-pressure (`pausing`): a lane whose upload slots are busy and as many closed batches wait
takes no records; its topic's partitions are paused when that lasts, while another lane could go
on, while its API fails or while its records wait for the Schema Registry (`registry_wait`), and
partitions whose dead letters wait unacknowledged past CONNECTOR_DLQ_MAX_PENDING_BYTES too; the
role stops (after committing what is done) when one waits longer than
CONNECTOR_DLQ_TIMEOUT_SECONDS. Any other fatal error commits what is done too (synchronously,
without draining) before it ends the role. Memory stays bounded however long the outage: per
lane, twice `max_in_flight` batches, the open one and the pending dead letters; one `consume()`
call's worth (also of records waiting for the registry), and librdkafka's
`queued.max.messages.kbytes`.

Stop and revocation finish what was read: the open batches are closed and every batch of the
partitions concerned is uploaded until the drain deadline, dead letters are flushed and what is
done is committed, so a clean stop leaves nothing done behind the committed offsets (nothing is
uploaded or dead-lettered twice after a restart). What the deadline cuts off (an API outage) is
read again by the next owner: an upload abandoned in flight that still succeeds creates its
items twice, and dead letters behind an unsent record are written again. The stop's deadline
counts from its request (`StopRequest`), and whatever the loop waits for when it comes ends by
it (`stop_budget`).

Commits and upload intents (exactly-once uploads): `commits`. An assignment of a reconciled
topic reads the intents committed before it: records a previous owner may have sent are looked
up in the API before they are sent (`Reconciler.taken_over`, in every lane that reads the
partition's topic).
"""

from __future__ import annotations

import contextlib
import logging
import queue
import threading
from collections.abc import Callable, Sequence
from math import ceil
from typing import Any

from confluent_kafka import TopicPartition

from connector.clock import Clock
from connector.config import UploaderSettings
from connector.errors import (
    ConnectorError,
    DeadLetterStuckError,
    PipelineFailedError,
)
from connector.kafka.bounded import BoundedConsumerCalls
from connector.kafka.clients import Consumer, Message, Producer
from connector.lifecycle import STOP_CHECK_SECONDS, Heartbeat, stop_requested_at
from connector.stop_budget import MIN_COMMIT_SECONDS, MIN_FLUSH_SECONDS
from connector.uploader.assignment import (
    AssignmentReads,
    InputTopic,
    committed_offsets,
    continue_from_previous_groups,
    take_over,
)
from connector.uploader.commits import Committer
from connector.uploader.intake import hand_out, take_records
from connector.uploader.lane import Lane
from connector.uploader.migration import PreviousGroups
from connector.uploader.pausing import update_pauses
from connector.uploader.upload import BatchOutcome

log = logging.getLogger(__name__)

IDLE_WAIT_SECONDS = 0.1
"""Longest single wait of the loop: bounds how late a stop, a finished upload or a due linger
is noticed."""
FULL_QUEUE_WAIT_SECONDS = 0.01
"""Longest wait for delivery reports while dead letters wait for room in the producer's queue."""


Completed = queue.SimpleQueue[tuple[Lane, BatchOutcome | BaseException]]


class UploadLoop:
    def __init__(
        self,
        settings: UploaderSettings,
        *,
        consumer: Consumer,
        producer: Producer,
        topics: Sequence[InputTopic],
        completed: Completed,
        clock: Clock,
        heartbeats: Sequence[Heartbeat],
        drain_seconds: float,
        previous_groups: PreviousGroups | None = None,
    ) -> None:
        """`drain_seconds`: how long a stop's drain may take (`stop_budget.drain_seconds`)."""
        self._settings = settings
        self._consumer = consumer
        self._producer = producer
        self._topics = {topic.name: topic for topic in topics}
        self._lanes = [lane for topic in topics for lane in topic.lanes]
        self._completed = completed
        self._clock = clock
        self._heartbeats = heartbeats
        """The heartbeat of every pipeline's role: this loop does their work."""
        self._previous_groups = previous_groups
        self._calls = BoundedConsumerCalls(consumer, clock)
        """The consumer's synchronous commits and close, each bounded, in order."""
        self._commits = Committer(
            consumer, self._calls, self._topics, clock, settings.commit_interval_ms / 1000
        )
        self._drain_seconds = drain_seconds
        self._drain_deadline: float | None = None
        """Once a stop was seen: when its drain ends (a revocation's drain too), counted from
        when the stop was requested (`StopRequest`), not from when the loop saw it."""
        self._commits.cutoff = self._stop_deadline
        self._reads = AssignmentReads(self._stopping, drain_seconds)
        """An assignment's reads: a call under way when a stop comes ends within its drain (1 s
        at least; with the default drain, 30 s, each read is one call of up to 10 s, as ever)."""
        self._stop = threading.Event()
        self._closing = False
        self._returned = False
        """Set once `run` is over: a close that outlasted its wait may still call back."""

    # --- the loop ------------------------------------------------------------------------

    def run(self, stop: threading.Event) -> None:
        """Consume and upload until `stop`, then drain, flush, commit and leave the group."""
        self._stop = stop
        self._consumer.subscribe(
            sorted(self._topics), on_assign=self._on_assign, on_revoke=self._on_revoke,
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
            for lane in self._lanes:  # no batch handed ahead starts while the role ends
                lane.close()
            if not self._closing:  # a shutdown that completed has committed already
                self._commit_done_before_failure()
            raise
        finally:
            self._closing = True  # close() revokes: what is done was committed just now
            self._calls.close("the uploader's consumer")
            self._returned = True
            for lane in self._lanes:
                lane.close()

    def _step(self) -> None:
        for heartbeat in self._heartbeats:
            heartbeat.beat()  # the health server turns it into the heartbeat gauge
        lanes = self._lanes
        # A lane taking no records whose partitions still flow: records wait in librdkafka.
        held = any(lane.backlogged() and not self._topic_of(lane).paused for lane in lanes)
        blocked = all(lane.backlogged() or self._topic_of(lane).paused for lane in lanes)
        messages: Sequence[Message] = []
        if not held:
            messages = take_records(self._consumer, 0 if blocked else self._consume_timeout())
        if messages:
            self._accept(messages)
        now = self._clock.monotonic()
        for lane in lanes:
            lane.decode_waiting(now)
            lane.batcher.close_lingering(now)
        self._dispatch()
        self._apply_completions(IDLE_WAIT_SECONDS if (held or blocked) and not messages else 0)
        self._dispatch()
        if any(lane.dead_letters.unacknowledged for lane in lanes):
            # Only then: each call gives up the GIL, and getting it back from busy upload
            # threads can take a whole switch interval (5 ms).
            for lane in lanes:
                lane.dead_letters.send_due()
            # A full queue: wait a moment for the reports that make room (the step did not
            # wait for records meanwhile).
            room = any(lane.dead_letters.waiting_for_room for lane in lanes)
            self._producer.poll(FULL_QUEUE_WAIT_SECONDS if room else 0)
            for lane in lanes:
                lane.dead_letters.check_deadline()
        if self._commits.due():
            self._commits.commit(self._commits.positions(only_moved=True), asynchronous=True)
        update_pauses(self._consumer, self._topics, lanes, self._clock.monotonic())
        for lane in lanes:
            lane.refresh_spec()

    def _topic_of(self, lane: Lane) -> InputTopic:
        return self._topics[lane.topic]

    def _consume_timeout(self) -> float:
        if any(lane.dead_letters.waiting_for_room for lane in self._lanes):
            return 0.0
        now = self._clock.monotonic()
        lingers = [left for lane in self._lanes
                   if (left := lane.batcher.linger_left(now)) is not None]  # fmt: skip
        return min([*lingers, IDLE_WAIT_SECONDS])

    def _accept(self, messages: Sequence[Message]) -> None:
        now = self._clock.monotonic()
        hand_out(messages, self._topics, now)
        for lane in self._lanes:
            lane.count_taken(now)

    def _dispatch(self) -> None:
        for lane in self._lanes:
            lane.dispatch(self._commits.may_send)

    def _apply_completions(self, wait: float) -> None:
        try:
            completed = self._completed.get(timeout=wait) if wait else self._completed.get_nowait()
        except queue.Empty:
            return
        while True:
            lane, outcome = completed
            if isinstance(outcome, BaseException):
                raise _named(lane, outcome) from outcome
            lane.apply(outcome)
            try:
                completed = self._completed.get_nowait()
            except queue.Empty:
                break

    # --- rebalancing and shutdown ------------------------------------------------------------

    def _on_assign(self, consumer: Any, partitions: list[TopicPartition]) -> None:
        """Take partitions on: read what an assignment needs (the committed offsets and upload
        intents, the old groups' offsets, the partitions' ends: up to 10 s a read when Kafka is
        slow). A stop that comes before or during those reads leaves the partitions to their
        next owner (said in one line): no further read is made for them, the read under way ends
        within the stop's drain (`AssignmentReads`), none of their records is taken and nothing
        is committed for them, so the reads do not eat the stop's budget."""
        keys = self._keys(partitions)
        left: set[tuple[str, int]] = set()
        for name in sorted({name for name, _ in keys}):
            topic, numbers = self._topics[name], _numbers(keys, name)
            if self._stopping():
                left |= {(name, partition) for partition in numbers}
                continue
            topic.offsets.assign(numbers)
            previous_groups = self._previous_groups if topic.routed else None
            if previous_groups is not None or topic.intents is not None:
                committed = committed_offsets(consumer, topic, numbers, self._reads)
                if previous_groups is not None:
                    with contextlib.ExitStack() as waiting:  # up to 10 s per old group
                        for heartbeat in self._heartbeats:
                            waiting.enter_context(
                                heartbeat.waiting_on(
                                    f"the offsets of the groups earlier versions read {name} in"
                                )
                            )
                        continue_from_previous_groups(
                            consumer, topic, committed, previous_groups,
                            self._settings.group_id, calls=self._calls, reads=self._reads,
                        )  # fmt: skip
                if topic.intents is not None:
                    topic.intents.assign(numbers)
                    take_over(consumer, topic, committed, reads=self._reads)
            if self._stopping():  # it came during the reads
                self._forget({(name, partition) for partition in numbers})
                left |= {(name, partition) for partition in numbers}
                continue
            topic.assigned |= numbers
            for lane in topic.lanes:
                lane.assigned(numbers)
            log.info("assigned input partitions %s of %s", sorted(numbers), name)
        if left:  # one line for the assignment, however many topics and reads it had
            log.info("input partitions %s assigned while stopping: left to their next owner",
                     _shown(left))  # fmt: skip

    def _on_revoke(self, _consumer: Any, partitions: list[TopicPartition]) -> None:
        if self._returned:  # a close that outlasted its wait: the lanes are gone
            return
        keys = self._keys(partitions)
        if not self._closing:
            self._commits.in_callback = True  # its commits are the group's hand-over
            try:
                self._finish_partitions(keys)
            finally:
                self._commits.in_callback = False
        self._forget(keys)
        log.info("revoked input partitions %s", _shown(keys))

    def _on_lost(self, _consumer: Any, partitions: list[TopicPartition]) -> None:
        # Another member may own them already: committing now could move its offsets.
        if self._returned:
            return
        keys = self._keys(partitions)
        for lane in self._lanes:
            lane.drop_unsent(_numbers(keys, lane.topic))
        self._forget(keys)
        log.warning("lost input partitions %s: their unfinished records will be read again",
                    _shown(keys))  # fmt: skip

    def _keys(self, partitions: list[TopicPartition]) -> set[tuple[str, int]]:
        return {(tp.topic, tp.partition) for tp in partitions if tp.topic in self._topics}

    def _finish_partitions(self, keys: set[tuple[str, int]]) -> None:
        """Upload what was read of the partitions `keys` (until the drain deadline), flush their
        dead letters and commit what is done. The commit is made inside the rebalance callback
        and waited for without a bound (`BoundedConsumerCalls.commit`); once a stop came, no
        batch whose upload intent is not committed yet is sent (`Committer.held_back`)."""
        deadline = self._drain_deadline
        if deadline is None:
            deadline = self._clock.monotonic() + self._settings.drain_timeout_seconds
        for lane in self._lanes:
            lane.batcher.close_open()
        self._commits.drain_deadline = deadline
        self._drain(lambda: any(batch.partitions() & _numbers(keys, lane.topic)
                                and not self._commits.held_back(lane, batch)
                                for lane in self._lanes for batch in lane.unfinished()),
                    deadline)  # fmt: skip
        self._commits.drain_deadline = self._drain_deadline  # None unless shutting down
        dropped = sum(lane.drop_unsent(_numbers(keys, lane.topic)) for lane in self._lanes)
        unflushed = self._flush_until(deadline)
        self._commits.commit(self._commits.positions(keys), asynchronous=False, final=True)
        abandoned = sum(1 for lane in self._lanes for batch in lane.in_flight
                        if batch.partitions() & _numbers(keys, lane.topic))  # fmt: skip
        if dropped or abandoned or unflushed:
            log.warning(
                "partitions %s handed over with %d unsent records, %d unfinished uploads and %d "
                "unacknowledged dead letters: the new owner reads them again (unfinished uploads "
                "that still succeed create their items twice)",
                _shown(keys), dropped, abandoned, unflushed,
            )  # fmt: skip

    def _forget(self, keys: set[tuple[str, int]]) -> None:
        for name, topic in self._topics.items():
            numbers = _numbers(keys, name)
            if not numbers:
                continue
            if topic.intents is not None:
                topic.intents.forget(numbers)
            for lane in topic.lanes:
                lane.forget(numbers)
            topic.offsets.forget(numbers)
            topic.assigned -= numbers
            topic.paused -= numbers

    def _drain(self, pending: Callable[[], bool], deadline: float) -> None:
        """Send the closed batches, apply upload outcomes and serve delivery reports until
        `pending()` turns false or the deadline passes; a stop that comes meanwhile (during a
        revocation's drain) brings the deadline forward to its own drain's end."""
        while pending():
            deadline = self._by_stop(deadline)
            left = deadline - self._clock.monotonic()
            if left <= 0:
                return
            self._dispatch()
            self._apply_completions(min(left, IDLE_WAIT_SECONDS))
            for lane in self._lanes:
                lane.dead_letters.send_due()
            self._producer.poll(0)

    def _flush_until(self, deadline: float) -> int:
        """Flush the dead letters until `deadline` (a revocation's), in short waits: a stop that
        comes meanwhile ends the flush by its own drain's deadline. How many are left."""
        waits = max(1, ceil((deadline - self._clock.monotonic()) / STOP_CHECK_SECONDS))
        for _ in range(waits):  # a bound however the clock moves
            deadline = self._by_stop(deadline)
            left = deadline - self._clock.monotonic()
            unflushed = self._producer.flush(max(min(left, STOP_CHECK_SECONDS), 0.0))
            if not unflushed or left <= STOP_CHECK_SECONDS:
                return unflushed
        return unflushed

    def _stopping(self) -> bool:
        """Whether a stop was seen (now or before)."""
        return self._stop_deadline() is not None

    def _stop_deadline(self) -> float | None:
        """The stop's drain deadline once a stop was requested (a wait under way ends by it)."""
        self._note_stop()
        return self._drain_deadline

    def _by_stop(self, deadline: float) -> float:
        """`deadline`, brought forward to the stop's drain deadline once a stop came."""
        stop_deadline = self._stop_deadline()
        return deadline if stop_deadline is None else min(deadline, stop_deadline)

    def _note_stop(self, *, stopping: bool = False) -> None:
        """The first time a stop is seen (`stopping`: the loop is stopping), its drain's
        deadline: `drain_seconds` from when the stop was requested (a stop that came while the
        loop was in a synchronous step has had part of its budget already), for every drain
        that follows or is running. Without a requested stop (`stopping` on a fatal error):
        from now."""
        if self._drain_deadline is None and (stopping or self._stop.is_set()):
            requested = (stop_requested_at(self._stop, self._clock) if self._stop.is_set()
                         else self._clock.monotonic())  # fmt: skip
            self._drain_deadline = requested + self._drain_seconds

    def _commit_done_before_failure(self) -> None:
        """A fatal error ends the loop: commit what is done so far, synchronously, so that a
        restart neither uploads those records again nor writes their dead letters twice.
        Nothing is drained (the error may be the API's or Kafka's): outcomes and delivery
        reports already back are applied, the rest is read again. Best effort: the fatal error
        is what the caller sees."""
        try:
            while True:
                try:
                    lane, outcome = self._completed.get_nowait()
                except queue.Empty:
                    break
                if not isinstance(outcome, BaseException):
                    lane.apply(outcome)
            self._producer.poll(0)
        except Exception as failure:  # the positions done so far still count
            log.warning("while applying what finished before the failure: %s", failure)
        self._commits.commit(self._commits.positions(), asynchronous=False)

    def _shut_down(self, *, dead_letters_stuck: bool = False) -> None:
        """Upload what was read (until the drain deadline), flush the dead letters, commit."""
        for lane in self._lanes:
            lane.batcher.close_open()
        self._note_stop(stopping=True)
        assert self._drain_deadline is not None
        self._commits.drain_deadline = self._drain_deadline
        self._drain(lambda: any(lane.unfinished() for lane in self._lanes), self._drain_deadline)
        dropped = sum(lane.drop_unsent() for lane in self._lanes)
        for lane in self._lanes:
            if lane.in_flight:
                log.warning("%d uploads of %s did not finish within "
                            "CONNECTOR_DRAIN_TIMEOUT_SECONDS: their records will be read again",
                            len(lane.in_flight), lane.app_project)  # fmt: skip
                lane.uploader.give_up()
        # Stuck dead letters will not be acknowledged now: serve reports, do not wait for them.
        flush_for = 0.0 if dead_letters_stuck else max(
            self._drain_deadline - self._clock.monotonic(), MIN_FLUSH_SECONDS
        )  # fmt: skip
        unflushed = self._producer.flush(flush_for)
        left = max(self._drain_deadline - self._clock.monotonic(), MIN_COMMIT_SECONDS)
        self._commits.commit(self._commits.positions(), asynchronous=False, final=True, wait=left)
        log.info("uploader stopped: %d unsent records and %d unacknowledged dead letters left "
                 "for the next start", dropped, unflushed)  # fmt: skip
        self._closing = True


def _named(lane: Lane, error: BaseException) -> BaseException:
    """`error`, raised in `lane`'s upload thread, saying whose it is: the first pipeline's role
    runs the loop, and the process's exit line names that role."""
    where = f"pipeline {lane.app_project} (input topic {lane.topic})"
    if isinstance(error, ConnectorError):
        return PipelineFailedError(f"{where}: {error}")
    if isinstance(error, Exception):  # a bug: the traceback shows `error` as the cause
        return RuntimeError(f"{where}: {error!r}")
    return error


def _numbers(keys: set[tuple[str, int]], topic: str) -> set[int]:
    return {partition for name, partition in keys if name == topic}


def _shown(keys: set[tuple[str, int]]) -> str:
    return ", ".join(f"{name}[{partition}]" for name, partition in sorted(keys)) or "none"
