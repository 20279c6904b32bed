"""The dependency trackers: one shared mechanism, fed by the API client and by Kafka clients."""

from __future__ import annotations

import logging

import orjson
import pytest
from confluent_kafka import KafkaError

from connector.availability import Availability, State
from connector.kafka.availability import GRACE_INTERVALS, KafkaAvailability
from connector.kafka.refusals import refusal
from connector.metrics import Metrics
from testkit.clocks import FakeClock

BOOTSTRAP = "broker-a:9092,broker-b:9092"
REFUSED = "broker-a:9092/bootstrap: Connect to ipv4#10.0.0.1:9092 failed: Connection refused"


def state_changes(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if getattr(r, "event", "") == "state_change"]


def stats(*states: tuple[int, str]) -> str:
    brokers = {
        f"b{n}-{nodeid}": {"nodeid": nodeid, "state": s} for n, (nodeid, s) in enumerate(states)
    }
    return orjson.dumps({"brokers": brokers}).decode()


def state(kafka: KafkaAvailability) -> State:
    return kafka.state  # read through a call: mypy would keep an earlier narrowing of the property


def kafka_up_gauge(metrics: Metrics) -> float | None:
    return metrics.sample("toloka_connector_kafka_up")


def test_availability_logs_one_line_when_an_outage_begins_and_one_when_it_ends(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = FakeClock()
    caplog.set_level(logging.INFO)
    tracker = Availability("thing", clock=clock)
    for _ in range(50):
        tracker.lost("refused")
    clock.advance(12)
    for _ in range(50):
        tracker.reached()
    assert state_changes(caplog) == [
        "thing: up -> down (outage began: refused)",
        "thing: down -> up (outage ended after 12.0s)",
    ]


def test_a_dependency_never_reached_is_starting_then_down_without_an_outage_that_ended(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    tracker = Availability("thing", clock=FakeClock(), initial=State.STARTING)
    assert tracker.state is State.STARTING
    tracker.lost("refused")
    assert (tracker.state, tracker.reason) == (State.DOWN, "refused")
    tracker.reached()
    assert state_changes(caplog) == [
        "thing: starting -> down (not reached: refused)",
        "thing: down -> up (outage ended after 0.0s)",
    ]


def test_reaching_kafka_the_first_time_is_no_outage(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    metrics = Metrics()
    kafka = KafkaAvailability(BOOTSTRAP, metrics, FakeClock())
    assert kafka.problem() == f"connecting to Kafka at {BOOTSTRAP}"
    assert kafka_up_gauge(metrics) == 0
    kafka.on_statistics(stats((-1, "UP"), (1, "CONNECT")))  # the bootstrap placeholder only
    assert state(kafka) is State.STARTING
    kafka.on_statistics(stats((-1, "UP"), (1, "UP")))
    assert (state(kafka), kafka.problem(), kafka_up_gauge(metrics)) == (State.UP, None, 1)
    assert state_changes(caplog) == []


def test_all_brokers_down_is_an_outage_once_no_client_reconnects_within_the_grace(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    clock = FakeClock()
    metrics = Metrics()
    kafka = KafkaAvailability(BOOTSTRAP, metrics, clock)
    kafka.watch({})
    kafka.on_statistics(stats((1, "UP")))
    for _ in range(100):
        kafka.on_error(KafkaError(KafkaError._TRANSPORT, REFUSED))
    kafka.on_error(KafkaError(KafkaError._ALL_BROKERS_DOWN, "2/2 brokers are down"))
    assert state(kafka) is State.UP, "within the grace another client may still be connected"
    clock.advance(GRACE_INTERVALS * 1.0)
    kafka.on_statistics(stats((1, "CONNECT")))
    assert state(kafka) is State.DOWN
    assert kafka_up_gauge(metrics) == 0
    problem = kafka.problem()
    assert problem is not None
    assert problem.startswith("Kafka unreachable for 0s: no broker reachable at broker-a:9092")
    assert REFUSED in problem
    assert "check KAFKA_BOOTSTRAP_SERVERS" in problem
    clock.advance(30)
    kafka.on_statistics(stats((2, "UP")))
    assert state(kafka) is State.UP
    assert [line.split(" (")[0] for line in state_changes(caplog)] == [
        "kafka: up -> down",
        "kafka: down -> up",
    ]
    assert state_changes(caplog)[1].endswith("(outage ended after 30.0s)")


def test_an_idle_client_whose_connections_were_closed_is_no_outage(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """librdkafka reports _ALL_BROKERS_DOWN for a client whose idle connections the brokers
    closed; the busy clients' statistics show their connections up within the grace."""
    caplog.set_level(logging.INFO)
    clock = FakeClock()
    kafka = KafkaAvailability(BOOTSTRAP, Metrics(), clock)
    kafka.on_statistics(stats((1, "UP")))
    kafka.on_error(KafkaError(KafkaError._ALL_BROKERS_DOWN, "1/1 brokers are down"))
    clock.advance(1)
    kafka.on_statistics(stats((1, "UP")))
    clock.advance(60)
    assert state(kafka) is State.UP
    assert state_changes(caplog) == []


def test_the_grace_follows_the_slowest_statistics_interval_of_the_watched_clients() -> None:
    clock = FakeClock()
    kafka = KafkaAvailability(BOOTSTRAP, Metrics(), clock)
    config = kafka.watch({"statistics.interval.ms": 5000})
    assert config["statistics.interval.ms"] == 5000
    kafka.on_statistics(stats((1, "UP")))
    kafka.on_error(KafkaError(KafkaError._ALL_BROKERS_DOWN, "down"))
    clock.advance(GRACE_INTERVALS * 5.0 - 0.5)
    assert state(kafka) is State.UP
    clock.advance(1)
    assert state(kafka) is State.DOWN


def test_watch_keeps_a_clients_own_statistics_callback_and_needs_statistics() -> None:
    kafka = KafkaAvailability(BOOTSTRAP, Metrics(), FakeClock())
    seen: list[str] = []
    config = kafka.watch({"bootstrap.servers": BOOTSTRAP, "stats_cb": seen.append,
                          "statistics.interval.ms": 0})  # fmt: skip
    assert config["bootstrap.servers"] == BOOTSTRAP
    assert config["statistics.interval.ms"] == 1000, "statistics off would hide a reconnect"
    assert config["error_cb"] == kafka.on_error
    config["stats_cb"](stats((1, "UP")))
    assert seen == [stats((1, "UP"))]
    assert state(kafka) is State.UP


# --- refused connections -----------------------------------------------------------------------

AUTH_FAILED = (
    "sasl_ssl://broker-a:9093/bootstrap: SASL authentication error: Authentication failed "
    "during authentication due to invalid credentials with SASL mechanism SCRAM-SHA-512 (after "
    "316ms in state AUTH_REQ)"
)
REFUSAL_TIMEOUT = 30.0


def refusing(clock: FakeClock) -> KafkaAvailability:
    return KafkaAvailability(BOOTSTRAP, Metrics(), clock, refusal_timeout_seconds=REFUSAL_TIMEOUT)


def test_refusals_since_start_up_are_fatal_once_they_last_the_refusal_timeout() -> None:
    clock = FakeClock()
    kafka = refusing(clock)
    kafka.on_error(KafkaError(KafkaError._AUTHENTICATION, AUTH_FAILED))
    clock.advance(REFUSAL_TIMEOUT - 1)
    kafka.on_error(KafkaError(KafkaError._AUTHENTICATION, AUTH_FAILED))
    assert kafka.fatal_problem() is None, "still within the timeout"
    clock.advance(1)
    assert kafka.fatal_problem() == (
        f"Kafka at {BOOTSTRAP} refused every connection for 30s since start-up: SASL "
        "authentication failed; check KAFKA_SASL_USERNAME and KAFKA_SASL_PASSWORD (librdkafka: "
        "SASL authentication error: Authentication failed during authentication due to invalid "
        "credentials with SASL mechanism SCRAM-SHA-512)"
    )


def test_while_starting_readiness_names_the_refusal_and_so_does_the_outage_line(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    clock = FakeClock()
    kafka = refusing(clock)
    kafka.on_error(KafkaError(KafkaError._AUTHENTICATION, AUTH_FAILED))
    problem = kafka.problem()
    assert problem is not None
    assert problem.startswith(f"connecting: Kafka at {BOOTSTRAP} refused the connection: SASL")
    kafka.on_error(KafkaError(KafkaError._ALL_BROKERS_DOWN, "1/1 brokers are down"))
    clock.advance(GRACE_INTERVALS * 1.0)
    assert state(kafka) is State.DOWN
    [line] = state_changes(caplog)
    assert line.startswith("kafka: starting -> down (not reached: Kafka at broker-a:9092,")
    assert "check KAFKA_SASL_USERNAME and KAFKA_SASL_PASSWORD" in line


def test_a_broker_that_stopped_refusing_and_is_down_now_is_not_fatal() -> None:
    """The latest failure decides: a broker that refused at first and is now merely down (a
    restart) may come back with the credentials in place."""
    clock = FakeClock()
    kafka = refusing(clock)
    kafka.on_error(KafkaError(KafkaError._AUTHENTICATION, AUTH_FAILED))
    clock.advance(REFUSAL_TIMEOUT * 2)
    kafka.on_error(KafkaError(KafkaError._TRANSPORT, REFUSED))
    assert kafka.fatal_problem() is None
    kafka.on_error(KafkaError(KafkaError._AUTHENTICATION, AUTH_FAILED))
    assert kafka.fatal_problem() is not None, "refusing again, and never connected"


def test_after_a_first_connection_a_refusal_is_an_outage_never_fatal(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    clock = FakeClock()
    kafka = refusing(clock)
    kafka.on_statistics(stats((1, "UP")))
    for _ in range(10):
        kafka.on_error(KafkaError(KafkaError._AUTHENTICATION, AUTH_FAILED))
        clock.advance(REFUSAL_TIMEOUT)
    kafka.on_error(KafkaError(KafkaError._ALL_BROKERS_DOWN, "1/1 brokers are down"))
    kafka.on_statistics(stats((1, "CONNECT")))
    clock.advance(GRACE_INTERVALS * 1.0)
    assert kafka.fatal_problem() is None
    assert state(kafka) is State.DOWN
    problem = kafka.problem()
    assert problem is not None
    assert problem.startswith("Kafka unreachable for 0s: Kafka at ")
    assert "check KAFKA_SASL_USERNAME and KAFKA_SASL_PASSWORD" in problem
    kafka.on_statistics(stats((1, "UP")))
    assert (state(kafka), kafka.problem()) == (State.UP, None)


def test_a_refusal_the_topic_watch_met_counts_like_a_clients() -> None:
    clock = FakeClock()
    kafka = refusing(clock)
    found = refusal(AUTH_FAILED)
    assert found is not None
    kafka.refused(found)
    clock.advance(REFUSAL_TIMEOUT)
    assert kafka.fatal_problem() is not None
    kafka.answered()
    assert kafka.fatal_problem() is None
