"""`toloka-connector poll` as a process while the API or the broker will not cooperate: a
SIGTERM during a listing the client is retrying, /healthz during a slow listing, and a broker that
refuses the transaction timeout."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest

from connector.devtools.brokers.base import Capability
from connector.devtools.processes import free_port
from testkit.brokers import ControllableBroker
from testkit.processes import ConnectorProcess
from testkit.waiting import wait_for
from tests.fixtures.brokers import NewTopic, require
from tests.fixtures.simulator import SimulatorHandle
from tests.integration.poller_harness import PollerSetup

pytestmark = pytest.mark.integration


@pytest.fixture
def setup(
    kafka_broker: ControllableBroker, simulator: SimulatorHandle, new_topic: NewTopic
) -> PollerSetup:
    return PollerSetup(
        simulator,
        kafka_broker.bootstrap_servers,
        output_topic=new_topic(),
        state_topic=new_topic(compacted=True),
    )


def test_sigterm_while_the_listing_is_retried_releases_leadership_and_exits_0(
    setup: PollerSetup, tmp_path: Path
) -> None:
    environ = setup.environ(
        CONNECTOR_API_TIMEOUT_SECONDS="3",
        CONNECTOR_API_MAX_ATTEMPTS="1000",
        CONNECTOR_SHUTDOWN_TIMEOUT_SECONDS="8",
    )
    poller = ConnectorProcess(["poll"], environ, tmp_path / "poll.log")
    try:
        wait_for(poller.is_leader, what="the poller leads", guard=poller.check_alive)
        setup.simulator.set_knobs(read_latency=100.0)
        wait_for(
            # The outage line: the first listing timed out, the client is retrying it.
            lambda: any(poller.lines("toloka-api: up -> down (outage began: list_items")),
            what="a listing that timed out and is being retried",
            guard=poller.check_alive,
        )
        code = poller.terminate()
    finally:
        poller.kill()
    assert code == 0, poller.log_tail(40)
    assert any(poller.lines("leadership released")), poller.log_tail(40)
    cursor = setup.cursor()
    assert cursor is not None
    assert cursor.holder is None, "the leader released its leadership"


def test_healthz_names_the_listing_while_a_slow_listing_outlasts_the_liveness_limit(
    setup: PollerSetup, tmp_path: Path
) -> None:
    """The leader timeout is long, so no keepalive falls due during the listing: only the wait
    on the API keeps /healthz green."""
    environ = setup.environ(
        CONNECTOR_METRICS_PORT=str(free_port()),
        CONNECTOR_LEADER_TIMEOUT_SECONDS="120",
        CONNECTOR_LIVENESS_TIMEOUT_SECONDS="1",
        CONNECTOR_API_TIMEOUT_SECONDS="30",
    )
    poller = ConnectorProcess(["poll"], environ, tmp_path / "poll.log")
    try:
        wait_for(poller.is_leader, what="the poller leads", guard=poller.check_alive)
        setup.simulator.set_knobs(read_latency=6.0)
        body = wait_for(
            lambda: _liveness_waiting_on_the_listing(poller),
            what="/healthz naming the listing",
            guard=poller.check_alive,
        )
        # Past the liveness limit in the same listing, /healthz is still 200 and still says why.
        answer = wait_for(
            lambda: _liveness_after(poller, seconds=2.0),
            what="/healthz 2 s into the listing",
            guard=poller.check_alive,
        )
    finally:
        poller.terminate()
    assert "poller waiting on the Toloka API (listing) for" in body["message"]
    assert answer.status_code == 200, answer.text


def _liveness_waiting_on_the_listing(poller: ConnectorProcess) -> dict[str, Any] | None:
    response = poller.get("/healthz")
    if response is None:
        return None
    body: dict[str, Any] = response.json()
    if body["roles"]["poller"]["waiting_on"] != "the Toloka API (listing)":
        return None
    return body


def _liveness_after(poller: ConnectorProcess, seconds: float) -> httpx.Response | None:
    """The /healthz answer once the poller's loop heartbeat is `seconds` old (None before)."""
    response = poller.get("/healthz")
    if response is None:
        return None
    age = response.json()["roles"]["poller"]["heartbeat_age_seconds"]
    return response if age >= seconds else None


def test_a_refused_transaction_timeout_is_reported_as_configuration_and_retried_with_back_off(
    kafka_broker: ControllableBroker, setup: PollerSetup, tmp_path: Path
) -> None:
    require(kafka_broker, Capability.TRANSACTIONS)
    # Above the broker's transaction.max.timeout.ms (15 min by default), and within half the
    # leader timeout, so that only the broker can refuse it.
    environ = setup.environ(
        CONNECTOR_TRANSACTION_TIMEOUT_SECONDS="1000",
        CONNECTOR_LEADER_TIMEOUT_SECONDS="2400",
        CONNECTOR_METRICS_PORT=str(free_port()),
    )
    poller = ConnectorProcess(["poll"], environ, tmp_path / "poll.log")
    try:
        reason = wait_for(
            lambda: _not_ready_reason(poller, "transaction.max.timeout.ms"),
            what="/readyz naming the broker's transaction.max.timeout.ms",
            guard=poller.check_alive,
        )
        poller.wait_for_output("CONNECTOR_TRANSACTION_TIMEOUT_SECONDS")
        # Tried again (with back-off: the unit tests time the pauses on a fake clock).
        attempts = wait_for(
            lambda: (n := _attempts(poller)) >= 3 and n,
            what="three take-over attempts",
            guard=poller.check_alive,
        )
    finally:
        code = poller.terminate()
    assert "CONNECTOR_TRANSACTION_TIMEOUT_SECONDS" in reason
    assert code == 0
    errors = [line for line in poller.lines("CONNECTOR_TRANSACTION_TIMEOUT_SECONDS")]
    assert len(errors) == 1, "one ERROR line per outage, not one per attempt"
    assert "ERROR" in errors[0]
    assert len(list(poller.lines("taking over"))) == 1, "one take-over line per outage"
    assert not any(poller.lines("could not take over")), "a configuration problem, said once"
    assert attempts >= 3


def _not_ready_reason(poller: ConnectorProcess, text: str) -> str | None:
    response = poller.get("/readyz")
    if response is None or response.status_code != 503:
        return None
    detail = str(response.json()["roles"]["poller"]["detail"])
    return detail if text in detail else None


def _attempts(poller: ConnectorProcess) -> int:
    response = poller.get("/metrics")
    if response is None:
        return 0
    for line in response.text.splitlines():
        if line.startswith("toloka_connector_poller_takeover_failures_total"):
            return int(float(line.split()[-1]))
    return 0
