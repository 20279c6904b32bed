"""Synchronous commits and closes that wait for the broker a bounded time."""

from __future__ import annotations

import logging
import threading
from typing import Any

import pytest
from confluent_kafka import KafkaError, KafkaException, TopicPartition

from connector.errors import KafkaUnansweredError
from connector.kafka import bounded
from connector.kafka.bounded import BoundedConsumerCalls
from testkit.waiting import wait_for

OFFSETS = [TopicPartition("items", 0, 7)]


class SlowCoordinator:
    """A consumer whose synchronous commits and close wait until `answer` is set."""

    def __init__(self, refusal: KafkaError | None = None) -> None:
        self.answer = threading.Event()
        self.refusal = refusal
        self.committed: list[list[TopicPartition]] = []
        self.closed = False

    def commit(self, *, offsets: list[TopicPartition], asynchronous: bool = True) -> Any:
        assert not asynchronous
        self.answer.wait()
        if self.refusal is not None:
            raise KafkaException(self.refusal)
        self.committed.append(offsets)
        return offsets

    def close(self) -> None:
        self.answer.wait()
        self.closed = True


def test_an_answered_commit_returns_and_a_refused_one_raises_the_refusal() -> None:
    answered = SlowCoordinator()
    answered.answer.set()
    BoundedConsumerCalls(answered).commit(OFFSETS, 5)  # type: ignore[arg-type]
    assert answered.committed == [OFFSETS]
    refused = SlowCoordinator(KafkaError(KafkaError.REBALANCE_IN_PROGRESS))
    refused.answer.set()
    with pytest.raises(KafkaException):
        BoundedConsumerCalls(refused).commit(OFFSETS, 5)  # type: ignore[arg-type]


def test_an_unanswered_commit_gives_up_in_time_and_holds_back_the_next_until_answered() -> None:
    coordinator = SlowCoordinator()
    calls = BoundedConsumerCalls(coordinator)  # type: ignore[arg-type]
    try:
        with pytest.raises(KafkaUnansweredError, match=r"no answer from Kafka within 0\.05s"):
            calls.commit(OFFSETS, 0.05)
        # Not a second thread queued behind the first: refused at once.
        with pytest.raises(KafkaUnansweredError, match="an earlier commit is still unanswered"):
            calls.commit(OFFSETS, 30)
    finally:
        coordinator.answer.set()
    wait_for(lambda: coordinator.committed, "the late answer")
    wait_for(lambda: not any(t.name == "offset commit" for t in threading.enumerate()),
             "the first commit's thread ending")  # fmt: skip
    calls.commit(OFFSETS, 5)
    assert coordinator.committed == [OFFSETS, OFFSETS]


def test_an_unanswered_close_is_warned_about_and_returns(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(bounded, "LEAVE_GROUP_SECONDS", 0.05)
    coordinator = SlowCoordinator()
    try:
        with caplog.at_level(logging.WARNING):
            BoundedConsumerCalls(coordinator).close("the test's consumer")  # type: ignore[arg-type]
    finally:
        coordinator.answer.set()
    assert "the test's consumer did not leave its group within 0.05s" in caplog.text
