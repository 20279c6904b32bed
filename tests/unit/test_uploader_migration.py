"""Upgrading from a group per routed pipeline: where the one group starts a partition and with
which upload intent, from what the old groups committed."""

from __future__ import annotations

import logging
import threading
from types import SimpleNamespace
from typing import Any, cast

import pytest
from confluent_kafka import KafkaError, KafkaException, TopicPartition

from connector.contract.upload_intents import UploadIntent, decode_intent, encode_intent
from connector.errors import MigrationError
from connector.kafka.bounded import BoundedConsumerCalls
from connector.uploader.assignment import (
    MIN_READ_CALL_SECONDS,
    OFFSETS_TIMEOUT_SECONDS,
    AssignmentReads,
    InputTopic,
    ReadingStoppedError,
    committed_offsets,
    continue_from_previous_groups,
)
from connector.uploader.lane import Lane
from connector.uploader.migration import (
    PreviousGroups,
    previous_offsets,
    starting_offset,
)
from testkit.waiting import wait_for

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


def test_the_old_groups_are_read_per_project_and_an_unreadable_one_is_told_apart() -> None:
    """A group whose read fails, or reports an error for a partition, is unreadable, never
    taken for one that committed nothing there."""
    asked: list[str] = []

    def read(group: str, partitions: list[TopicPartition]) -> list[TopicPartition]:
        asked.append(group)
        if group.endswith("captions"):
            raise KafkaException(KafkaError(KafkaError._TIMED_OUT))
        if group.endswith("labels"):
            return [TopicPartition(tp.topic, tp.partition, -1001) for tp in partitions[:-1]] + [
                failed(partitions[-1])
            ]
        return [TopicPartition(tp.topic, tp.partition, 7 if tp.partition else -1001)
                for tp in partitions]  # fmt: skip

    old = previous_offsets(read, "connector", "shared", ["texts", "captions", "labels"], {0, 1})
    assert asked == ["connector.texts", "connector.captions", "connector.labels"]
    assert {
        project: {p: tp.offset for p, tp in by.items()} for project, by in old.found.items()
    } == {
        "texts": {1: 7}  # partition 0 was never committed there
    }
    assert sorted(old.unreadable) == ["connector.captions", "connector.labels"]


class FailedPartition(TopicPartition):
    """What `committed()` reports for a partition whose offset it could not fetch."""

    @property
    def error(self) -> KafkaError:  # type: ignore[override]
        return KafkaError(KafkaError.COORDINATOR_NOT_AVAILABLE)


def failed(partition: TopicPartition) -> TopicPartition:
    return FailedPartition(partition.topic, partition.partition, -1001)


class Lanes:
    """The lanes of projects `texts` and `captions` on topic `shared`, partition 0, and the
    consumer of the one group (which committed `own`, -1001 for nothing); the old groups
    `connector.<project>` committed `old` (a `KafkaException` or a failed partition where they
    cannot be read)."""

    def __init__(
        self, old: dict[str, int | BaseException], own: int = -1001, *, earliest: bool = True
    ) -> None:
        self.old, self.own, self.earliest = old, own, earliest
        self.commit_fails = False
        self.commits: list[list[TopicPartition]] = []
        self.lanes = {p: cast(Lane, SimpleNamespace(app_project=p, floors={}))
                      for p in ("texts", "captions")}  # fmt: skip
        self.topic = InputTopic("shared", list(self.lanes.values()), cast(Any, None), routed=True)

    def read(self, group: str, partitions: list[TopicPartition]) -> list[TopicPartition]:
        offset = self.old[group.removeprefix("connector.")]
        if isinstance(offset, KafkaException):
            raise offset
        if isinstance(offset, BaseException):
            return [failed(tp) for tp in partitions]
        return [TopicPartition(tp.topic, tp.partition, offset, metadata=SETTLED)
                for tp in partitions]  # fmt: skip

    def committed(self, partitions: list[TopicPartition], timeout: float) -> list[TopicPartition]:
        if self.own == -2:
            return [failed(tp) for tp in partitions]
        return [TopicPartition(tp.topic, tp.partition, self.own) for tp in partitions]

    def get_watermark_offsets(
        self, partition: TopicPartition, timeout: float, cached: bool
    ) -> tuple[int, int]:
        return (20, 600)

    def commit(self, *, offsets: list[TopicPartition], asynchronous: bool) -> None:
        if self.commit_fails:
            raise KafkaException(KafkaError(KafkaError.REQUEST_TIMED_OUT))
        self.commits.append(offsets)

    def assign(self) -> list[TopicPartition]:
        """What the assignment of partition 0 does: the one group's start after it."""
        consumer = cast(Any, self)
        committed = committed_offsets(consumer, self.topic, {0})
        continue_from_previous_groups(
            consumer, self.topic, committed, PreviousGroups(self.read, self.earliest), "connector",
            calls=BoundedConsumerCalls(consumer),
        )  # fmt: skip
        return committed

    def floors(self) -> dict[str, int | None]:
        return {p: lane.floors.get(0) for p, lane in self.lanes.items()}


TIMED_OUT = KafkaException(KafkaError(KafkaError._TIMED_OUT))


@pytest.mark.parametrize("unreadable", [TIMED_OUT, ValueError("a partition failed")])
def test_an_old_group_that_cannot_be_read_on_the_first_start_fails_it_and_commits_nothing(
    unreadable: BaseException,
) -> None:
    """texts at 100, captions at 500: without texts' offset the one group would start at 500
    and texts' records 100-499 would never be uploaded."""
    lanes = Lanes({"texts": unreadable, "captions": 500})
    with pytest.raises(
        MigrationError, match=r"connector\.texts.*input topic shared|shared.*connector\.texts"
    ):
        lanes.assign()
    assert lanes.commits == []


def test_an_old_group_that_cannot_be_read_later_only_loses_its_floors() -> None:
    """The one group has its offset: nothing is skipped, texts may upload again."""
    lanes = Lanes({"texts": TIMED_OUT, "captions": 500}, own=300)
    assert [tp.offset for tp in lanes.assign()] == [300]
    assert lanes.commits == []
    assert lanes.floors() == {"texts": None, "captions": 500}


@pytest.mark.parametrize(("earliest", "start", "floor"), [(True, 20, 20), (False, 100, 600)])
def test_an_old_group_without_an_offset_counts_where_auto_offset_reset_started_it(
    earliest: bool, start: int, floor: int
) -> None:
    """captions never committed (or its offsets expired): it would have started at the first
    retained record (`earliest`) or at the end (`latest`); the one group starts at the lowest
    of that and texts' offset, and captions passes over what it would have."""
    lanes = Lanes({"texts": 100, "captions": -1001}, earliest=earliest)
    assert [tp.offset for tp in lanes.assign()] == [start]
    assert [[tp.offset for tp in c] for c in lanes.commits] == [[start]]
    assert lanes.floors() == {"texts": 100, "captions": floor}


def test_no_old_group_with_an_offset_leaves_the_start_to_auto_offset_reset() -> None:
    lanes = Lanes({"texts": -1001, "captions": -1001})
    assert [tp.offset for tp in lanes.assign()] == [-1001]
    assert lanes.commits == []


def test_a_failed_commit_of_the_start_fails_the_assignment() -> None:
    """Otherwise the partition starts where auto.offset.reset says (`latest` skips)."""
    lanes = Lanes({"texts": 100, "captions": 500})
    lanes.commit_fails = True
    with pytest.raises(MigrationError, match="could not be committed"):
        lanes.assign()


def test_an_unreadable_offset_of_the_one_group_is_not_taken_for_none() -> None:
    """Taken for none, the migration would overwrite the one group's newer offset."""
    lanes = Lanes({"texts": 100, "captions": 500}, own=-2)
    with pytest.raises(MigrationError, match="committed offsets of input topic shared"):
        lanes.assign()
    assert lanes.commits == []


def test_a_stop_during_an_old_groups_read_does_not_wait_for_it(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Each old group's read may take 10 s with Kafka slow: a stop that comes during one leaves
    it (the partitions go to their next owner) instead of holding the stop's budget; what it
    answers later is logged, not dropped."""
    caplog.set_level(logging.INFO)
    released, stop = threading.Event(), threading.Event()
    read_groups: list[str] = []

    def read(group: str, _partitions: list[TopicPartition]) -> list[TopicPartition]:
        read_groups.append(group)
        stop.set()  # the stop comes during the read
        released.wait(10)  # stands for an old group's coordinator slow to answer
        return []

    try:
        old = previous_offsets(read, "connector", "shared", ["texts", "captions"], {0},
                               stopping=stop.is_set)  # fmt: skip
    finally:
        released.set()
    assert old.found == {}, "the read under way was waited for"
    assert old.unreadable == {}
    assert read_groups == ["connector.texts"]
    late = "the read of group connector.texts's offsets given up on was answered later"
    wait_for(lambda: late in caplog.messages, "the late answer logged", 5)


def timed_out() -> KafkaException:
    return KafkaException(KafkaError(KafkaError._TIMED_OUT))


def test_an_assignment_read_is_made_in_short_calls_until_one_answers() -> None:
    """A call cannot be interrupted by a stop, so a read is made in short calls: a broker
    slower than one call is asked again (10 s in all), and one that answers is taken."""
    timeouts: list[float] = []

    def answers_the_third_time(timeout: float) -> str:
        timeouts.append(timeout)
        if len(timeouts) < 3:
            raise timed_out()
        return "answer"

    assert AssignmentReads(slice_seconds=2).made(answers_the_third_time) == "answer"
    assert timeouts == [2, 2, 2]
    timeouts.clear()

    def never_answers(timeout: float) -> str:
        timeouts.append(timeout)
        raise timed_out()

    with pytest.raises(KafkaException):
        AssignmentReads(slice_seconds=2).made(never_answers)
    assert timeouts == [2] * 5, "10 s in all"

    def refuses(_timeout: float) -> str:
        raise KafkaException(KafkaError(KafkaError.GROUP_AUTHORIZATION_FAILED))

    with pytest.raises(KafkaException):
        AssignmentReads(slice_seconds=2).made(refuses)


def test_no_assignment_read_is_made_once_stopping() -> None:
    stop = threading.Event()
    calls: list[float] = []

    def stopped_during_the_call(timeout: float) -> str:
        calls.append(timeout)
        stop.set()
        raise timed_out()

    with pytest.raises(ReadingStoppedError):
        AssignmentReads(stop.is_set, slice_seconds=1).made(stopped_during_the_call)
    assert calls == [1], "no call after the stop"


@pytest.mark.parametrize("code", [KafkaError._TIMED_OUT, KafkaError._TRANSPORT,
                                  KafkaError.GROUP_AUTHORIZATION_FAILED])  # fmt: skip
def test_a_stop_during_the_last_call_is_a_stop_not_a_failed_read(code: int) -> None:
    """Seen: with one call (the default drain), a stop during it that timed out re-raised the
    timeout, and on a routed topic the assignment failed (MigrationError, exit 1) instead of
    leaving the partitions to their next owner. Whatever the call raised, a stop wins."""
    stop = threading.Event()

    def stopped_during_the_call(_timeout: float) -> str:
        stop.set()
        raise KafkaException(KafkaError(code))

    with pytest.raises(ReadingStoppedError):
        AssignmentReads(stop.is_set).made(stopped_during_the_call)


@pytest.mark.parametrize(("slice_seconds", "expected"), [
    (9, [9, 1]), (3, [3, 3, 3, 1]), (7, [7, 3]), (4, [4, 4, 2]), (10, [10]), (2, [2] * 5),
    (9.5, [9.5]), (3.3, [3.3, 3.3, 3.3]), (1.1, [1.1] * 9),
])  # fmt: skip
def test_an_assignment_reads_calls_take_ten_seconds_in_all(
    slice_seconds: float, expected: list[float]
) -> None:
    """Seen: every call took the whole slice, so slice 9 made two calls of 9 s (18 s for a
    read promised 10 s at most); the last call takes what is left, unless that is shorter than
    a call may be (a call that short would miss the coordinator's answer: not made)."""
    timeouts: list[float] = []

    def never_answers(timeout: float) -> str:
        timeouts.append(timeout)
        raise timed_out()

    with pytest.raises(KafkaException):
        AssignmentReads(slice_seconds=slice_seconds).made(never_answers)
    assert timeouts == pytest.approx(expected)
    assert all(MIN_READ_CALL_SECONDS <= t <= max(slice_seconds, MIN_READ_CALL_SECONDS)
               for t in timeouts)  # fmt: skip
    assert sum(timeouts) > OFFSETS_TIMEOUT_SECONDS - MIN_READ_CALL_SECONDS
    assert sum(timeouts) <= OFFSETS_TIMEOUT_SECONDS + 1e-9


def test_an_assignment_reads_call_is_never_shorter_than_a_coordinators_round_trip() -> None:
    """A call is a new request each time: calls shorter than the coordinator takes to answer
    would all miss (and a routed topic's assignment fail), however slow the drain makes them."""
    timeouts: list[float] = []

    def answers_after_half_a_second(timeout: float) -> str:
        timeouts.append(timeout)
        if timeout < 0.5:
            raise timed_out()
        return "answer"

    assert AssignmentReads(slice_seconds=0.1).made(answers_after_half_a_second) == "answer"
    assert timeouts == [MIN_READ_CALL_SECONDS]
