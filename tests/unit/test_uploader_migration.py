"""Upgrading from a group per routed pipeline: where the one group starts a partition and with
which upload intent, from what the old groups committed."""

from __future__ import annotations

import pytest
from confluent_kafka import KafkaError, KafkaException, TopicPartition

from connector.contract.upload_intents import UploadIntent, decode_intent, encode_intent
from connector.uploader.migration import previous_offsets, starting_offset

SETTLED = encode_intent(UploadIntent(None))


def committed(offset: int, metadata: str) -> TopicPartition:
    return TopicPartition("shared", 0, offset, metadata=metadata)


def test_nothing_committed_in_the_old_groups_leaves_the_start_to_auto_offset_reset() -> None:
    assert starting_offset([]) is None


@pytest.mark.parametrize(
    ("intents", "since"),
    [
        ([SETTLED, SETTLED], None),  # both stopped cleanly: nothing sent beyond
        ([SETTLED, encode_intent(UploadIntent(50.0))], 50.0),  # the other's beyond its offset
        ([encode_intent(UploadIntent(70.0)), encode_intent(UploadIntent(40.0))], 40.0),
    ],
)
def test_the_start_is_the_lowest_offset_with_the_earliest_intent_of_any_old_group(
    intents: list[str], since: float | None
) -> None:
    start = starting_offset([committed(10, intents[0]), committed(4, intents[1])])
    assert start is not None
    assert (start.topic, start.partition, start.offset) == ("shared", 0, 4)
    assert decode_intent(start.metadata) == UploadIntent(since)


def test_an_old_group_without_a_readable_intent_leaves_the_start_without_one() -> None:
    """Nothing can be known of what it sent: its records are uploaded at least once."""
    start = starting_offset([committed(10, SETTLED), committed(4, "")])
    assert start is not None
    assert decode_intent(start.metadata) is None


def test_the_old_groups_are_read_per_project_and_an_unreadable_one_is_left_out() -> None:
    asked: list[str] = []

    def read(group: str, partitions: list[TopicPartition]) -> list[TopicPartition]:
        asked.append(group)
        if group.endswith("captions"):
            raise KafkaException(KafkaError(KafkaError._TIMED_OUT))
        return [TopicPartition(tp.topic, tp.partition, 7 if tp.partition else -1001)
                for tp in partitions]  # fmt: skip

    found = previous_offsets(read, "connector", "shared", ["texts", "captions"], {0, 1})
    assert asked == ["connector.texts", "connector.captions"]
    assert {project: {p: tp.offset for p, tp in by.items()} for project, by in found.items()} == {
        "texts": {1: 7}  # partition 0 was never committed there
    }
