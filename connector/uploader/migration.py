"""Upgrading from per-project groups: where the one group starts on a routed topic.

Before the process read every input topic in the one group CONNECTOR_GROUP_ID, a pipeline with
`route_by_header` read its topic in a group of its own, `<group>.<app project>`
(`routing.routed_group_id`), with offsets and upload intents of its own. At every assignment of
a routed topic's partitions the loop reads those groups' committed offsets (`previous_offsets`):
- each pipeline's records below its old group's offset are done at once, never uploaded again
  (`Lane.floors`): the old group's pipeline uploaded or dead-lettered them;
- a partition the one group has no committed offset for yet (the first start after the upgrade)
  is committed there, before it is fetched, at the lowest of the old groups' offsets
  (`starting_offset`), with an upload intent that covers what any of them may have sent beyond
  it; without it, it would start where `auto.offset.reset` says (`earliest`: the whole topic
  read again).
The old groups are only read, never changed: once the one group's offsets are past theirs, they
can be deleted (`kafka-consumer-groups --delete --group <group>.<app project>`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from confluent_kafka import Consumer as KafkaConsumer
from confluent_kafka import KafkaException, TopicPartition

from connector.contract.upload_intents import UploadIntent, decode_intent, encode_intent
from connector.uploader.routing import routed_group_id

log = logging.getLogger(__name__)

ReadCommitted = Callable[[str, list[TopicPartition]], list[TopicPartition]]
"""The offsets (with their metadata) group `str` has committed for the partitions."""

READ_TIMEOUT_SECONDS = 10.0


def committed_reader(kafka_config: Mapping[str, Any]) -> ReadCommitted:
    """Reads another group's committed offsets with a consumer that joins no group."""

    def read(group: str, partitions: list[TopicPartition]) -> list[TopicPartition]:
        consumer = KafkaConsumer({**kafka_config, "group.id": group, "enable.auto.commit": False})
        try:
            return consumer.committed(partitions, timeout=READ_TIMEOUT_SECONDS)
        finally:
            consumer.close()

    return read


def previous_offsets(
    read: ReadCommitted, group_id: str, topic: str, projects: Iterable[str], numbers: set[int]
) -> dict[str, dict[int, TopicPartition]]:
    """App project → partition → what its old group committed there (partitions it never
    committed are left out; so are the groups that cannot be read, said in a warning)."""
    found: dict[str, dict[int, TopicPartition]] = {}
    partitions = [TopicPartition(topic, p) for p in sorted(numbers)]
    for project in projects:
        group = routed_group_id(group_id, project)
        try:
            committed = read(group, partitions)
        except KafkaException as failure:
            log.warning("the offsets of group %s, which an earlier version read %s in, are "
                        "unreadable (%s): its pipeline may upload again what it had uploaded",
                        group, topic, failure.args[0])  # fmt: skip
            continue
        found[project] = {tp.partition: tp for tp in committed if tp.offset >= 0}
    return found


def starting_offset(old: Iterable[TopicPartition]) -> TopicPartition | None:
    """Where the one group starts a partition the old groups committed `old` for: the lowest
    offset, with the intent that says what any of them may have sent beyond it (none when one
    of them says nothing readable: then its records are uploaded at least once)."""
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
