"""Upgrading from per-project groups: where the one group starts on a routed topic.

Before the process read every input topic in the one group CONNECTOR_GROUP_ID, a pipeline with
`route_by_header` read its topic in a group of its own, `<group>.<app project>`
(`routing.routed_group_id`), with offsets and upload intents of its own. At every assignment of
a routed topic's partitions the loop reads those groups' committed offsets (`previous_offsets`):
- each pipeline's records below its old group's offset are done at once, never uploaded again
  (`Lane.floors`): the old group's pipeline uploaded or dead-lettered them;
- a partition the one group has no committed offset for yet (the first start after the upgrade)
  that any old group committed is committed there, before it is fetched, at the lowest of the
  positions each old group would have continued from (`starting_offset`): its committed offset,
  or, for a group that never committed the partition (or whose offsets expired), where
  `auto.offset.reset` would have started it (`reset_position`: the partition's first retained
  record for `earliest`, its end otherwise), which is then that pipeline's floor too; with an
  upload intent that covers what any of them may have sent beyond it.
Nothing is guessed: when that first start needs an old group's offsets (or the one group's) and
they cannot be read, or the one group's start cannot be committed, nothing is committed and the
assignment fails with `MigrationError` (the role ends; the restart tries again). Later, an old
group that cannot be read only loses its pipeline's floors: its records between the one group's
offset and its old one are uploaded again (said in a warning).
The old groups are only read, never changed: once the one group's offsets are past theirs, they
can be deleted (`kafka-consumer-groups --delete --group <group>.<app project>`).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from functools import partial
from typing import Any

from confluent_kafka import Consumer as KafkaConsumer
from confluent_kafka import KafkaException, TopicPartition

from connector.contract.upload_intents import UploadIntent, decode_intent, encode_intent
from connector.errors import MigrationError
from connector.kafka.bounded import ended, reported_late, started
from connector.kafka.clients import CommittedOffsets
from connector.uploader.routing import routed_group_id

log = logging.getLogger(__name__)

ReadCommitted = Callable[[str, list[TopicPartition]], list[TopicPartition]]
"""The offsets (with their metadata) group `str` has committed for the partitions."""

READ_TIMEOUT_SECONDS = 10.0
EARLIEST = frozenset({"earliest", "smallest", "beginning"})
"""librdkafka's names of `auto.offset.reset=earliest`."""
SETTLED = encode_intent(UploadIntent(None))
"""The intent of a group that never committed: nothing sent beyond its start."""


@dataclass(frozen=True)
class PreviousGroups:
    """How to read the groups routed pipelines read in before, and where `auto.offset.reset`
    started a partition they had not committed (`earliest`: its first retained record)."""

    read: ReadCommitted
    earliest: bool = True


def previous_groups(kafka_config: Mapping[str, Any], auto_offset_reset: str) -> PreviousGroups:
    """Reads another group's committed offsets with a consumer that joins no group."""

    def read(group: str, partitions: list[TopicPartition]) -> list[TopicPartition]:
        consumer = KafkaConsumer({**kafka_config, "group.id": group, "enable.auto.commit": False})
        try:
            return consumer.committed(partitions, timeout=READ_TIMEOUT_SECONDS)
        finally:
            consumer.close()

    return PreviousGroups(read, auto_offset_reset.lower() in EARLIEST)


@dataclass
class OldOffsets:
    """What the old groups committed on a topic: app project → partition → offset and intent
    (partitions never committed left out), and the groups that could not be read → why."""

    found: dict[str, dict[int, TopicPartition]]
    unreadable: dict[str, str]


def previous_offsets(
    read: ReadCommitted,
    group_id: str,
    topic: str,
    projects: Iterable[str],
    numbers: set[int],
    *,
    stopping: Callable[[], bool] = lambda: False,
) -> OldOffsets:
    """Each project's old group's committed offsets of `numbers`; a group whose read raises or
    reports an error for any partition is unreadable (never taken for "not committed"). Once
    `stopping()`, no group is read any more and a read under way is not waited for (each may
    take 10 s): what was read so far is returned, for a caller that checks `stopping()` too."""
    old = OldOffsets({}, {})
    partitions = [TopicPartition(topic, p) for p in sorted(numbers)]
    for project in projects:
        if stopping():
            return old
        group = routed_group_id(group_id, project)
        # On a thread of its own (a consumer of its own, not the one in the rebalance
        # callback): a stop that comes during the read does not wait for it.
        reading = started(partial(read, group, partitions), "old group offsets")
        if not ended(reading, math.inf, lambda: -math.inf if stopping() else None):
            reported_late(reading, f"the read of group {group}'s offsets")
            return old
        try:
            committed = reading.result()
        except KafkaException as failure:
            old.unreadable[group] = str(failure.args[0])
            continue
        errors = [tp for tp in committed if tp.error is not None]
        if errors:
            old.unreadable[group] = f"partition {errors[0].partition}: {errors[0].error}"
            continue
        old.found[project] = {tp.partition: tp for tp in committed if tp.offset >= 0}
    return old


Marks = tuple[int, int] | None
ReadMade = Callable[[Callable[[float], Marks]], Marks]
"""How a read of the consumer is made: `call(timeout)`, retried (`AssignmentReads.made`)."""


def reset_position(
    consumer: CommittedOffsets,
    partition: TopicPartition,
    earliest: bool,
    made: ReadMade = lambda call: call(READ_TIMEOUT_SECONDS),
) -> int:
    """Where `auto.offset.reset` starts a group without an offset on the partition."""
    try:
        marks = made(
            lambda timeout: consumer.get_watermark_offsets(partition, timeout=timeout, cached=False)
        )
    except KafkaException as failure:
        marks, reason = None, str(failure.args[0])
    else:
        reason = "no answer"
    if marks is None:
        raise MigrationError(
            f"the bounds of input partition {partition.partition} of {partition.topic} are "
            f"unknown ({reason}): where an old group without an offset there would start is "
            "unknown, so the one group is not started on it"
        )
    return int(marks[0] if earliest else marks[1])


def starting_offset(old: Iterable[TopicPartition]) -> TopicPartition | None:
    """Where the one group starts a partition the old groups would continue from `old` (one
    position per old group): the lowest offset, with the intent that says what any of them may
    have sent beyond it (none when one of them says nothing readable: then its records are
    uploaded at least once)."""
    committed = list(old)
    if not committed:
        return None
    lowest = min(committed, key=lambda tp: tp.offset)
    intents = [decode_intent(tp.metadata) for tp in committed]
    if any(intent is None for intent in intents):
        metadata = ""
    else:
        sent = [i.since for i in intents if i is not None and i.since is not None]
        metadata = encode_intent(UploadIntent(min(sent) if sent else None))
    return TopicPartition(lowest.topic, lowest.partition, lowest.offset, metadata=metadata)
