"""Take-overs that Kafka refuses, on fakes: an exponential back-off instead of a new producer and a
new state consumer every second, one log line per outage, and a transaction timeout the broker
refuses reported as the configuration problem it is."""

from __future__ import annotations

import logging
from collections.abc import Callable
from itertools import pairwise

import pytest
from confluent_kafka import KafkaError, KafkaException

from connector.lifecycle import Heartbeat
from connector.metrics import Metrics
from connector.poller.loop import PollerLoop
from connector.poller.takeover import TAKEOVER_BACKOFF_CAP_SECONDS
from testkit.clocks import FakeClock
from tests.unit.poller_fakes import (
    RESPONSE_LIMIT_BYTES,
    T0,
    FakeApi,
    FakeKafka,
    FakeProducer,
    FakeStateStore,
    poller_settings,
    producer_factory,
)

RUN_SECONDS = 300.0


def refusing_timeout(producer: FakeProducer) -> None:
    error = KafkaError(
        KafkaError.INVALID_TRANSACTION_TIMEOUT,
        "Transaction timeout is larger than the maximum value allowed by the broker",
    )
    producer.faults["init_transactions"] = [KafkaException(error)]


def loop_for(
    clock: FakeClock,
    kafka: FakeKafka,
    made: list[FakeProducer],
    configure: Callable[[FakeProducer], None],
) -> PollerLoop:
    return PollerLoop(
        poller_settings(transaction_timeout_seconds=1000.0),
        "proj",
        source=FakeApi(clock),
        producer_factory=producer_factory(kafka, made, configure),
        store=FakeStateStore(kafka, clock=clock),
        clock=clock,
        metrics=Metrics(),
        heartbeat=Heartbeat("poller", clock),
        instance_id="A",
        response_limit_bytes=RESPONSE_LIMIT_BYTES,
    )


def test_a_refused_transaction_timeout_is_one_error_naming_the_settings_then_back_off(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = FakeClock(stop_at=T0 + RUN_SECONDS)
    made: list[FakeProducer] = []
    attempts: list[float] = []

    def configure(producer: FakeProducer) -> None:
        attempts.append(clock.monotonic())
        refusing_timeout(producer)

    loop = loop_for(clock, FakeKafka(), made, configure)
    with caplog.at_level(logging.DEBUG, logger="connector"):
        loop.run(clock.stop)
    gaps = [later - earlier for earlier, later in pairwise(attempts)]
    assert len(attempts) >= 4, "tried again"
    assert all(later >= earlier for earlier, later in pairwise(gaps)), gaps
    assert gaps[4] >= 8 * gaps[0], f"the pause doubles: {gaps}"
    assert max(gaps) <= TAKEOVER_BACKOFF_CAP_SECONDS + 1.0, f"the pause is capped: {gaps}"
    assert len(attempts) <= 2 + RUN_SECONDS / TAKEOVER_BACKOFF_CAP_SECONDS + 5
    loud = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(loud) == 1, [r.getMessage() for r in loud]
    assert loud[0].levelno == logging.ERROR
    assert "CONNECTOR_TRANSACTION_TIMEOUT_SECONDS=1000" in loud[0].getMessage()
    assert "transaction.max.timeout.ms" in loud[0].getMessage()
    taking_over = [r for r in caplog.records if "taking over" in r.getMessage()]
    assert [r.levelno for r in taking_over].count(logging.INFO) == 1
    problem = loop.status.kafka_problem
    assert problem is not None
    assert "CONNECTOR_TRANSACTION_TIMEOUT_SECONDS" in problem
    assert "transaction.max.timeout.ms" in problem


def test_a_broker_away_at_take_over_is_one_warning_per_outage_and_leads_when_back(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = FakeClock(stop_at=T0 + 60)
    made: list[FakeProducer] = []
    away = KafkaException(KafkaError(KafkaError._TRANSPORT, "broker down"))

    def configure(producer: FakeProducer) -> None:
        if len(made) < 4:
            producer.faults["init_transactions"] = [away]

    loop = loop_for(clock, FakeKafka(), made, configure)
    with caplog.at_level(logging.INFO, logger="connector"):
        loop.run(clock.stop)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1, warnings
    assert "could not take over" in warnings[0]
    assert any("took over after 4 failed attempts" in r.getMessage() for r in caplog.records)
    assert loop.status.kafka_problem is None, "a leader again: no problem left to report"
    assert len(made) == 5
