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
from collections.abc import Iterable
from dataclasses import dataclass, field

from confluent_kafka import KafkaException, TopicPartition

from connector.contract.upload_intents import decode_intent
from connector.kafka.clients import CommittedOffsets, Consumer
from connector.uploader.intents import IntentLog
from connector.uploader.lane import Lane
from connector.uploader.migration import ReadCommitted, previous_offsets, starting_offset
from connector.uploader.offsets import OffsetTracker
from connector.uploader.routing import Route

log = logging.getLogger(__name__)

OFFSETS_TIMEOUT_SECONDS = 10.0
"""How long an assignment waits for the committed offsets and the ends of its partitions."""


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
    consumer: CommittedOffsets, topic: InputTopic, numbers: set[int]
) -> list[TopicPartition]:
    """The one group's committed offsets of `numbers` (offset 0 each when unreadable)."""
    try:
        return consumer.committed(topic.partitions(numbers), OFFSETS_TIMEOUT_SECONDS)
    except KafkaException as failure:
        log.warning("committed offsets of %s unreadable (%s)", topic.name, failure.args[0])
        return [TopicPartition(topic.name, p, 0) for p in sorted(numbers)]


def continue_from_previous_groups(
    consumer: Consumer,
    topic: InputTopic,
    committed: list[TopicPartition],
    read: ReadCommitted,
    group_id: str,
) -> None:
    """Set each lane's floors from what its pipeline did in the group it read the topic in
    before; where the one group has no offset yet (`committed`), commit it where those groups
    were and update `committed` to say so."""
    lanes = {lane.app_project: lane for lane in topic.lanes}
    numbers = {tp.partition for tp in committed}
    old = previous_offsets(read, group_id, topic.name, lanes, numbers)
    for project, found in old.items():
        lanes[project].floors.update({p: tp.offset for p, tp in found.items()})
    starts = {
        tp.partition: start
        for tp in committed
        if tp.offset < 0
        and (start := starting_offset(f[tp.partition] for f in old.values()
                                      if tp.partition in f)) is not None
    }  # fmt: skip
    if not starts:
        return
    try:
        consumer.commit(offsets=list(starts.values()), asynchronous=False)
    except KafkaException as failure:
        log.warning("the offsets of the groups an earlier version read %s in could not be taken "
                    "over (%s): it is read from where auto.offset.reset says, and each pipeline "
                    "passes over what it had done", topic.name, failure.args[0])  # fmt: skip
        return
    committed[:] = [starts.get(tp.partition, tp) for tp in committed]
    log.info("input partitions %s of %s start from the offsets of the groups an earlier version "
             "read them in: %s", sorted(starts), topic.name,
             {p: tp.offset for p, tp in sorted(starts.items())})  # fmt: skip


def take_over(
    consumer: CommittedOffsets, topic: InputTopic, committed: list[TopicPartition]
) -> None:
    """Read the upload intents `committed` with the partitions just assigned: records beyond a
    committed offset that a previous owner may have sent are reconciled before they are, by
    every lane of the topic."""
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
        end = _end_offset(consumer, tp)
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
