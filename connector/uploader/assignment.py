"""An input topic of the upload loop, and what an assignment of its partitions inherits.

Called from the consumer's `on_assign`, before the partitions are fetched:
- `continue_from_previous_groups` (a routed topic): each lane's floors and, on the first start
  after the upgrade, the one group's starting offsets, from the per-project groups earlier
  versions read the topic in (`migration`);
- `take_over` (exactly-once uploads, docs/exactly-once.md): the upload intents committed with
  the offsets say which records beyond them a previous owner may have sent; every lane that
  reads the topic and reconciles looks those up before it sends them (`Reconciler.taken_over`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Protocol, TypeVar

from confluent_kafka import KafkaException, TopicPartition

from connector.contract.upload_intents import decode_intent
from connector.errors import KafkaUnansweredError, MigrationError
from connector.kafka.bounded import BoundedConsumerCalls
from connector.kafka.clients import CommittedOffsets, Consumer
from connector.kafka.steps import UNANSWERED
from connector.kafka.transactions import kafka_error_of
from connector.stop_budget import MIN_COMMIT_SECONDS
from connector.uploader.intents import IntentLog
from connector.uploader.lane import Lane
from connector.uploader.migration import (
    SETTLED,
    PreviousGroups,
    previous_offsets,
    reset_position,
    starting_offset,
)
from connector.uploader.offsets import OffsetTracker
from connector.uploader.routing import Route

log = logging.getLogger(__name__)
T = TypeVar("T")

OFFSETS_TIMEOUT_SECONDS = 10.0
"""How long an assignment waits for the committed offsets and the ends of its partitions."""
MIN_READ_CALL_SECONDS = MIN_COMMIT_SECONDS
"""The shortest call of an assignment's read, however short the stop's drain."""
START_COMMIT_SECONDS = 10.0
"""How long the one group's first commit (where the old groups were) waits for an earlier commit
still unanswered; made inside the assignment's callback, it is then waited for without bound."""


class AssignedConsumer(Consumer, CommittedOffsets, Protocol):
    """The consumer a rebalance callback is handed: it commits and reads offsets and ends."""


class ReadingStoppedError(Exception):
    """An assignment's read not made: a stop came (the partitions are left to their next
    owner)."""


@dataclass(frozen=True)
class AssignmentReads:
    """How an assignment reads the committed offsets and the partitions' ends. Each read is a
    librdkafka call on the rebalance callback's thread (from another thread the group
    coordinator does not answer it before the callback returns), which nothing interrupts: it
    is made in calls of `slice_seconds` at most (OFFSETS_TIMEOUT_SECONDS in all: the last call
    gets what is left, unless that is under MIN_READ_CALL_SECONDS), and none is made once
    `stopping()`, so a stop that comes during a read waits for one call only. The loop makes a
    call no longer than its stop's drain: that call fits the stop's budget. A call is never
    shorter than MIN_READ_CALL_SECONDS: each is a new request, and calls shorter than the
    coordinator's answer would all miss it."""

    stopping: Callable[[], bool] = lambda: False
    slice_seconds: float = OFFSETS_TIMEOUT_SECONDS

    def made(self, call: Callable[[float], T]) -> T:
        """`call(timeout)` until it answers within a call; `ReadingStoppedError` once
        `stopping()`, also when the stop came during a call that failed. The last
        KafkaException when every call went unanswered, or the first other."""
        each = min(max(self.slice_seconds, MIN_READ_CALL_SECONDS), OFFSETS_TIMEOUT_SECONDS)
        timeouts = [each] * int(OFFSETS_TIMEOUT_SECONDS // each)
        left = OFFSETS_TIMEOUT_SECONDS - sum(timeouts)
        if left >= MIN_READ_CALL_SECONDS - 1e-9:  # a shorter call would miss the answer
            timeouts.append(left)
        calls = len(timeouts)
        for attempt, timeout in enumerate(timeouts):
            if self.stopping():
                raise ReadingStoppedError
            try:
                return call(timeout)
            except KafkaException as failure:
                if self.stopping():  # the partitions are left to their next owner
                    log.info("reading an assignment's offsets while stopping: %s", failure)
                    raise ReadingStoppedError from failure
                error = kafka_error_of(failure)
                if error is None or error.code() not in UNANSWERED or attempt == calls - 1:
                    raise
        raise AssertionError("unreachable: the last call returned or raised")


@dataclass
class InputTopic:
    """One input topic: its offsets and intents, and the lanes its records are routed to."""

    name: str
    lanes: list[Lane]
    route: Route[Lane]
    routed: bool
    """Read by pipelines with `route_by_header` (which read in groups of their own before)."""
    offsets: OffsetTracker = field(default_factory=OffsetTracker)
    intents: IntentLog | None = None
    assigned: set[int] = field(default_factory=set)
    paused: set[int] = field(default_factory=set)

    def partitions(self, numbers: Iterable[int]) -> list[TopicPartition]:
        return [TopicPartition(self.name, number) for number in sorted(numbers)]


def committed_offsets(
    consumer: CommittedOffsets,
    topic: InputTopic,
    numbers: set[int],
    reads: AssignmentReads = AssignmentReads(),
) -> list[TopicPartition]:
    """The one group's committed offsets of `numbers`. Unreadable ones (the read fails, or
    reports an error for the partition) are never taken for "not committed": on a routed topic
    that would start the migration over newer offsets (`MigrationError`); elsewhere they read
    as offset 0 without an intent (every record beyond is reconciled). Empty once stopping
    (whatever the read under way raised): the caller leaves the partitions to their next
    owner."""
    partitions = topic.partitions(numbers)
    try:
        committed = reads.made(lambda timeout: consumer.committed(partitions, timeout))
    except ReadingStoppedError:
        return []
    except KafkaException as failure:
        reason, committed = str(failure.args[0]), []
    else:
        reason = "; ".join(f"partition {tp.partition}: {tp.error}" for tp in committed
                           if tp.error is not None)  # fmt: skip
    if not reason:
        return committed
    if topic.routed:
        raise MigrationError(
            f"the committed offsets of input topic {topic.name} are unreadable ({reason}): "
            "whether the groups an earlier version read it in must be taken over is unknown"
        )
    log.warning("committed offsets of %s unreadable (%s)", topic.name, reason)
    return [TopicPartition(topic.name, p, 0) for p in sorted(numbers)]


def continue_from_previous_groups(
    consumer: AssignedConsumer,
    topic: InputTopic,
    committed: list[TopicPartition],
    previous: PreviousGroups,
    group_id: str,
    *,
    calls: BoundedConsumerCalls,
    reads: AssignmentReads = AssignmentReads(),
) -> None:
    """Set each lane's floors from what its pipeline did in the group it read the topic in
    before; where the one group has no offset yet (`committed`), commit it where those groups
    would have continued and update `committed` to say so. Raises `MigrationError` rather than
    guess when that needs offsets it cannot read or its commit fails. Once `reads.stopping()`,
    no further read or commit is made: the caller leaves the partitions to their next owner."""
    stopping = reads.stopping
    lanes = {lane.app_project: lane for lane in topic.lanes}
    numbers = {tp.partition for tp in committed}
    old = previous_offsets(previous.read, group_id, topic.name, lanes, numbers, stopping=stopping)
    if stopping():
        return
    for project, found in old.found.items():
        lanes[project].floors.update({p: tp.offset for p, tp in found.items()})
    # The first start after the upgrade: partitions an old group committed, the one group not.
    new = [tp.partition for tp in committed
           if tp.offset < 0 and any(tp.partition in f for f in old.found.values())]  # fmt: skip
    if old.unreadable:
        shown = "; ".join(f"{group}: {why}" for group, why in sorted(old.unreadable.items()))
        uncommitted = sorted(tp.partition for tp in committed if tp.offset < 0)
        if uncommitted:
            raise MigrationError(
                f"the offsets of the groups an earlier version read input topic {topic.name} "
                f"in are unreadable ({shown}): the one group has none yet on partitions "
                f"{uncommitted}, and starting them anywhere else than where those groups were "
                "could skip their pipelines' records"
            )
        log.warning("the offsets of the groups an earlier version read %s in are unreadable "
                    "(%s): their pipelines may upload again what they had uploaded",
                    topic.name, shown)  # fmt: skip
    if not new:
        return
    starts: dict[int, TopicPartition] = {}
    for partition in new:
        positions = []
        for project, lane in lanes.items():
            position = old.found[project].get(partition)
            if position is None:  # where auto.offset.reset started that pipeline's group
                try:
                    offset = reset_position(
                        consumer,
                        TopicPartition(topic.name, partition),
                        previous.earliest,
                        reads.made,
                    )
                except ReadingStoppedError:
                    return
                lane.floors[partition] = offset
                position = TopicPartition(topic.name, partition, offset, metadata=SETTLED)
            positions.append(position)
        start = starting_offset(positions)
        assert start is not None  # one position per lane
        starts[partition] = start
    if stopping():
        return
    try:
        calls.commit(list(starts.values()), START_COMMIT_SECONDS, in_callback=True)
    except (KafkaException, KafkaUnansweredError) as failure:
        raise MigrationError(
            f"the one group's start on input partitions {sorted(starts)} of {topic.name}, "
            f"where the groups an earlier version read it in were, could not be committed "
            f"({failure.args[0]})"
        ) from failure
    committed[:] = [starts.get(tp.partition, tp) for tp in committed]
    log.info("input partitions %s of %s start from the offsets of the groups an earlier version "
             "read them in: %s", sorted(starts), topic.name,
             {p: tp.offset for p, tp in sorted(starts.items())})  # fmt: skip


def take_over(
    consumer: CommittedOffsets,
    topic: InputTopic,
    committed: list[TopicPartition],
    *,
    reads: AssignmentReads,
) -> None:
    """Read the upload intents `committed` with the partitions just assigned: records beyond a
    committed offset that a previous owner may have sent are reconciled before they are, by
    every lane of the topic. Once `reads.stopping()`, no partition's end is read any more (the
    caller leaves the partitions to their next owner)."""
    intents = topic.intents
    assert intents is not None  # only with intents on
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
        end = _end_offset(consumer, tp, reads)
        if reads.stopping():
            return
        generation = topic.offsets.generation(tp.partition)
        if (end is not None and end <= tp.offset) or generation is None:
            continue
        suspects[tp.partition] = (generation, intent.since, end)
        intents.inherit(tp.partition, intent.since, end)
    for lane in topic.lanes:
        if lane.reconciler is None:
            continue
        lane.reconciler.taken_over(suspects)
        if unknown:
            lane.reconciler.no_intent(sorted(unknown), [unknown[p] for p in sorted(unknown)])


def _end_offset(
    consumer: CommittedOffsets, partition: TopicPartition, reads: AssignmentReads
) -> int | None:
    """The partition's end now (None when unknown, or once stopping): a previous owner read
    nothing beyond it."""
    try:
        marks = reads.made(
            lambda timeout: consumer.get_watermark_offsets(partition, timeout=timeout, cached=False)
        )
    except ReadingStoppedError:
        return None
    except KafkaException as failure:
        log.warning("the end of input partition %d is unknown (%s)", partition.partition,
                    failure.args[0])  # fmt: skip
        return None
    return None if marks is None else marks[1]
