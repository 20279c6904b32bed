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
from connector.lifecycle import StopRequest
from testkit.clocks import FakeClock
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


def test_an_unanswered_commit_gives_up_in_time_and_the_next_waits_for_it_first() -> None:
    coordinator = SlowCoordinator()
    calls = BoundedConsumerCalls(coordinator)  # type: ignore[arg-type]
    try:
        with pytest.raises(KafkaUnansweredError, match=r"no answer from Kafka within 0\.05s"):
            calls.commit(OFFSETS, 0.05)
        assert calls.pending
        # The next one waits for the first within its own time, never beside it.
        with pytest.raises(KafkaUnansweredError, match="an earlier commit is still unanswered"):
            calls.commit(OFFSETS, 0.05)
        assert coordinator.committed == []
    finally:
        coordinator.answer.set()
    calls.commit(OFFSETS, 5)  # the first one's answer came within this one's time
    assert coordinator.committed == [OFFSETS, OFFSETS]
    assert not calls.pending


def test_the_close_waits_until_no_commit_is_inside_the_consumer(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """librdkafka's rule: a handle is destroyed only after every call on it returned; a close
    beside a commit still inside it could free what that commit still uses."""
    monkeypatch.setattr(bounded, "LEAVE_GROUP_SECONDS", 0.05)
    order: list[str] = []
    coordinator = SlowCoordinator()
    coordinator.close = lambda: order.append("closed")  # type: ignore[method-assign]
    calls = BoundedConsumerCalls(coordinator)  # type: ignore[arg-type]
    with pytest.raises(KafkaUnansweredError):
        calls.commit(OFFSETS, 0.01)
    calls.close("the test's consumer")  # gives up waiting, as the commit is still inside
    assert order == []
    order.append("answered")
    coordinator.answer.set()
    wait_for(lambda: order == ["answered", "closed"], "the close after the commit's answer")


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


def test_a_commit_inside_a_rebalance_callback_is_made_on_the_callers_thread() -> None:
    """librdkafka answers a commit from another thread only once the callback returned: the
    hand-over's commit is made where the callback runs, as the group protocol needs."""
    threads: list[threading.Thread] = []
    coordinator = SlowCoordinator()
    coordinator.answer.set()
    original = coordinator.commit

    def commit(*, offsets: list[TopicPartition], asynchronous: bool = True) -> Any:
        threads.append(threading.current_thread())
        return original(offsets=offsets, asynchronous=asynchronous)

    coordinator.commit = commit  # type: ignore[method-assign]
    BoundedConsumerCalls(coordinator).commit(OFFSETS, 5, in_callback=True)  # type: ignore[arg-type]
    assert threads == [threading.current_thread()]
    assert coordinator.committed == [OFFSETS]


def test_a_callbacks_commit_does_not_wait_for_an_earlier_one_still_unanswered() -> None:
    """From its thread, the earlier one is answered only once the callback returned: waiting
    for it inside the callback would always run out (and the hand-over commit with it)."""
    first_answer = threading.Event()

    class FirstUnanswered(SlowCoordinator):
        def commit(self, *, offsets: list[TopicPartition], asynchronous: bool = True) -> Any:
            if not self.committed and threading.current_thread().name == "offset commit":
                first_answer.wait()
            self.committed.append(offsets)
            return offsets

    coordinator = FirstUnanswered()
    calls = BoundedConsumerCalls(coordinator)  # type: ignore[arg-type]
    try:
        with pytest.raises(KafkaUnansweredError):
            calls.commit(OFFSETS, 0.01)
        calls.commit(OFFSETS, 30, in_callback=True)  # before: waited out all 30 s, then failed
        assert coordinator.committed == [OFFSETS]
    finally:
        first_answer.set()


def test_a_commit_under_way_when_a_stop_is_requested_ends_by_the_stops_deadline() -> None:
    """An upload intent's commit waits up to 5 s; a stop requested meanwhile must not wait for
    it past its own deadline (seen: the stop's drain began only after the commit gave up, and
    `run` exited 1 "did not finish draining in time"). Measured on the fake clock: the commit
    never answers, the stop comes 1 s into the wait with a deadline 0.5 s later."""
    coordinator = SlowCoordinator()
    clock = FakeClock()
    start = clock.monotonic()
    stop = StopRequest(clock)

    def stop_deadline() -> float | None:
        if not stop.is_set() and clock.monotonic() >= start + 1:
            stop.set()  # requested while the commit waits
        return None if stop.requested_at is None else stop.requested_at + 0.5

    calls = BoundedConsumerCalls(coordinator, clock)  # type: ignore[arg-type]
    try:
        with pytest.raises(KafkaUnansweredError, match=r"within 5s \(cut short by the stop\)"):
            calls.commit(OFFSETS, 5, cutoff=stop_deadline)
        assert stop.requested_at is not None
        assert clock.monotonic() <= stop.requested_at + 0.5
        # Without a stop a wait takes its whole time (1 s: each slice waits 0.1 s for real).
        before = clock.monotonic()
        unstopped = BoundedConsumerCalls(coordinator, clock)  # type: ignore[arg-type]
        with pytest.raises(KafkaUnansweredError, match=r"within 1s$"):
            unstopped.commit(OFFSETS, 1, cutoff=lambda: None)
        assert clock.monotonic() >= before + 1
    finally:
        coordinator.answer.set()


class LateScheduledCoordinator(SlowCoordinator):
    """A coordinator that answers at once, but whose call's thread runs only `delay` (real)
    seconds after it was started: a busy machine."""

    def __init__(self, delay: float) -> None:
        super().__init__()
        self.delay = delay

    def commit(self, *, offsets: list[TopicPartition], asynchronous: bool = True) -> Any:
        threading.Event().wait(self.delay)  # stands for the thread scheduled late
        self.committed.append(offsets)
        return offsets


def test_an_answered_commit_is_not_taken_for_unanswered_on_a_fake_clock() -> None:
    """Seen: on the fake clock (whose wait returns at once and jumps time) a commit answered at
    once read as unanswered when its thread had not run yet: waits are real, in short slices,
    and only the deadlines are read from the clock."""
    clock = FakeClock()
    coordinator = LateScheduledCoordinator(0.02)
    BoundedConsumerCalls(coordinator, clock).commit(OFFSETS, 5)  # type: ignore[arg-type]
    assert coordinator.committed == [OFFSETS]
