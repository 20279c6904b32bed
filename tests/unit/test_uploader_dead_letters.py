"""The dead-letter writer on a scripted producer and a fake clock: values are kept whole, a
delivery that fails (or a produce that is refused locally) is produced again after a growing
backoff, a full queue is retried on the next step, pending dead letters above the bound name the
partitions to pause, and the deadline ends the wait with one line naming the topic."""

from __future__ import annotations

from typing import Any

import pytest
from confluent_kafka import KafkaError, KafkaException

from connector.errors import DeadLetterStuckError, KafkaOperationError
from connector.metrics import Metrics
from connector.uploader.dead_letters import RETRY_BASE_SECONDS, RETRY_CAP_SECONDS, DeadLetterWriter
from connector.uploader.decode import Refusal
from testkit.clocks import FakeClock
from tests.unit.test_uploader_loop import FakeMessage

TOPIC = "items.dlq"
TIMEOUT = 60.0


class ScriptedProducer:
    """Queues what is produced; `poll()` delivers it with the next scripted outcome. `produce`
    raises what `refusals` holds next (BufferError, KafkaException) instead of queueing."""

    def __init__(self) -> None:
        self.queued: list[tuple[dict[str, Any], Any]] = []
        self.delivered: list[dict[str, Any]] = []
        self.produced = 0
        self.outcomes: list[int | None] = []
        self.refusals: list[BaseException] = []
        self.polls = 0

    def produce(self, topic: str, *, value: Any = None, key: Any = None, headers: Any = None,
                on_delivery: Any = None) -> None:  # fmt: skip
        if self.refusals:
            raise self.refusals.pop(0)
        self.produced += 1
        self.queued.append(({"topic": topic, "value": value, "key": key,
                             "headers": dict(headers or [])}, on_delivery))  # fmt: skip

    def poll(self, timeout: float = 0) -> int:
        self.polls += 1
        served = 0
        while self.queued:
            record, report = self.queued.pop(0)
            code = self.outcomes.pop(0) if self.outcomes else None
            if code is None:
                self.delivered.append(record)
            report(None if code is None else KafkaError(code), None)
            served += 1
        return served

    def flush(self, timeout: float = 0) -> int:
        self.poll()
        return 0


class Setup:
    def __init__(self, max_pending_bytes: int = 1_000_000) -> None:
        self.producer = ScriptedProducer()
        self.clock = FakeClock()
        self.metrics = Metrics()
        self.writer = DeadLetterWriter(
            self.producer, TOPIC, self.metrics, self.clock,
            max_pending_bytes=max_pending_bytes, timeout_seconds=TIMEOUT,
        )  # fmt: skip
        self.written: list[int] = []

    def write(self, partition: int, offset: int, value: bytes = b"{") -> None:
        message = FakeMessage(partition, offset, value, key=b"k")
        self.writer.write(message, Refusal("invalid_json", "bad"), None, partition,
                          lambda: self.written.append(offset))  # fmt: skip

    def step(self, seconds: float = 0.0) -> None:
        """One loop step, `seconds` after the last."""
        self.clock.advance(seconds)
        self.writer.send_due()
        self.producer.poll()

    def sample(self, name: str) -> float:
        return self.metrics.sample(f"toloka_connector_{name}") or 0.0


def test_a_dead_letter_the_topic_refuses_as_too_large_keeps_its_value_and_stays_pending() -> None:
    setup = Setup()
    big = b"x" * 5000
    setup.producer.outcomes = [KafkaError.MSG_SIZE_TOO_LARGE] * 3
    setup.write(0, 7, big)
    setup.step()
    assert setup.written == []
    assert setup.writer.unacknowledged == 1
    assert "max.message.bytes of topic items.dlq" in (setup.writer.failing or "")
    setup.step(RETRY_BASE_SECONDS / 2)
    assert setup.producer.produced == 1, "produced again before its backoff ended"
    setup.step(RETRY_BASE_SECONDS)
    setup.step(2 * RETRY_BASE_SECONDS)
    setup.step(4 * RETRY_BASE_SECONDS)  # the operator raised the topic's limit meanwhile
    assert setup.written == [7]
    assert [record["value"] for record in setup.producer.delivered] == [big]
    assert "error-value-dropped" not in setup.producer.delivered[0]["headers"]
    assert setup.writer.failing is None
    assert setup.sample("dead_letter_delivery_failures_total") == 3
    assert setup.sample("dead_letters_pending") == 0


def test_the_backoff_grows_while_deliveries_fail_and_starts_over_after_a_success() -> None:
    setup = Setup()
    setup.producer.outcomes = [KafkaError._MSG_TIMED_OUT] * 8
    setup.write(0, 0)
    setup.step()
    delays = []
    while setup.producer.produced < 8:
        before = setup.producer.produced
        waited = 0.0
        while setup.producer.produced == before:
            setup.step(0.25)
            waited += 0.25
        delays.append(waited)
    assert delays == sorted(delays)
    assert delays[0] == RETRY_BASE_SECONDS
    assert max(delays) == RETRY_CAP_SECONDS
    setup.step(RETRY_CAP_SECONDS)
    assert setup.written == [0]
    setup.producer.outcomes = [KafkaError._MSG_TIMED_OUT]
    setup.write(0, 1)
    setup.step()
    produced = setup.producer.produced
    setup.step(RETRY_BASE_SECONDS)
    assert setup.producer.produced == produced + 1, "the backoff did not start over"


def test_a_full_queue_keeps_the_dead_letter_for_the_next_step() -> None:
    setup = Setup()
    setup.producer.refusals = [BufferError("queue full"), BufferError("queue full")]
    setup.write(0, 0)
    setup.write(0, 1)
    assert setup.producer.produced == 0
    assert setup.producer.polls >= 1, "reports were not served to make room"
    setup.step()
    setup.step()
    assert setup.written == [0, 1]
    assert setup.sample("dead_letter_delivery_failures_total") == 0


def test_a_produce_refused_locally_for_a_missing_topic_is_retried_later() -> None:
    setup = Setup()
    setup.producer.refusals = [KafkaException(KafkaError(KafkaError._UNKNOWN_TOPIC))]
    setup.write(3, 0)
    assert "Unknown topic" in (setup.writer.failing or "")
    setup.step(RETRY_BASE_SECONDS)
    assert setup.written == [0]


@pytest.mark.parametrize(
    "error", [KafkaError(KafkaError.MSG_SIZE_TOO_LARGE), KafkaError(KafkaError._FATAL, fatal=True)]
)
def test_a_produce_that_can_never_succeed_fails_at_once_naming_the_topic(
    error: KafkaError,
) -> None:
    setup = Setup()
    setup.producer.refusals = [KafkaException(error)]
    with pytest.raises(KafkaOperationError, match=TOPIC):
        setup.write(0, 0)


def test_pending_bytes_above_the_bound_name_the_partitions_holding_them() -> None:
    setup = Setup(max_pending_bytes=2500)
    setup.producer.outcomes = [KafkaError._MSG_TIMED_OUT] * 10
    setup.write(0, 0, b"x" * 1000)
    setup.write(2, 0, b"x" * 1000)
    setup.step()
    assert setup.writer.pending_partitions() == set()
    setup.write(2, 1, b"x" * 1000)
    assert setup.writer.pending_partitions() == {0, 2}
    assert setup.sample("dead_letters_pending") == 3
    setup.producer.outcomes = []
    setup.step(RETRY_CAP_SECONDS)
    assert setup.writer.pending_partitions() == set()
    assert sorted(setup.written) == [0, 0, 1]


def test_the_deadline_ends_the_wait_with_one_line_naming_the_topic_and_the_setting() -> None:
    setup = Setup()
    setup.producer.outcomes = [KafkaError.TOPIC_AUTHORIZATION_FAILED] * 1000
    setup.write(1, 4)
    elapsed = 0.0
    while elapsed + RETRY_CAP_SECONDS <= TIMEOUT:
        setup.step(RETRY_CAP_SECONDS)
        elapsed += RETRY_CAP_SECONDS
        setup.writer.check_deadline()
    setup.step(RETRY_CAP_SECONDS)
    with pytest.raises(DeadLetterStuckError) as raised:
        setup.writer.check_deadline()
    message = str(raised.value)
    assert "\n" not in message
    assert TOPIC in message
    assert "CONNECTOR_DLQ_TIMEOUT_SECONDS" in message
    assert "Topic authorization failed" in message


def test_a_revoked_partitions_dead_letters_are_not_sent_again_nor_counted_as_done() -> None:
    setup = Setup(max_pending_bytes=1)
    setup.producer.outcomes = [KafkaError._MSG_TIMED_OUT, KafkaError._MSG_TIMED_OUT]
    setup.write(0, 0)
    setup.write(1, 0)
    setup.step()
    setup.writer.forget_partitions({1})
    assert setup.writer.pending_partitions() == {0}
    assert setup.writer.unacknowledged == 1
    setup.step(RETRY_CAP_SECONDS)
    assert setup.written == [0]
    assert [record["headers"]["source-partition"] for record in setup.producer.delivered] == [b"0"]
    setup.clock.advance(2 * TIMEOUT)
    setup.writer.check_deadline()  # nothing of its own is pending any more
