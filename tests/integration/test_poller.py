"""The poller against the simulator over TCP and the session's broker, in this process."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import orjson
import pytest

from connector.contract.cursor import initial_cursor
from connector.devtools.brokers.base import Capability
from connector.poller import write_cursor
from testkit.brokers import ApiKey, ControllableBroker
from testkit.waiting import wait_for
from tests.fixtures.brokers import NewTopic, require
from tests.fixtures.simulator import SimulatorHandle
from tests.integration.poller_harness import PollerSetup, PollerThread, utc

pytestmark = pytest.mark.integration

# Kafka protocol error codes, for the mock's request-level fault injection.
REQUEST_TIMED_OUT = 7
NOT_LEADER_OR_FOLLOWER = 6
NOT_COORDINATOR = 16
CONCURRENT_TRANSACTIONS = 51
PRODUCER_FENCED = 90

LATE_WINDOW = 8.0
LATE_BY = 3.0


@pytest.fixture
def setup(
    kafka_broker: ControllableBroker, simulator: SimulatorHandle, new_topic: NewTopic
) -> PollerSetup:
    return PollerSetup(
        simulator,
        kafka_broker.bootstrap_servers,
        output_topic=new_topic(partitions=6),
        state_topic=new_topic(compacted=True),
    )


def test_every_finished_item_is_published_once_with_ties_late_items_and_faults(
    setup: PollerSetup,
) -> None:
    sim = setup.simulator
    sim.seed(600, per_timestamp=7)  # finished before the poller starts, in ties of 7
    sim.set_knobs(
        processing_delay=0.5,
        processing_jitter=5.0,
        item_error_ratio=0.1,
        item_cancel_ratio=0.05,
        late_visibility=LATE_BY,
        late_visibility_ratio=0.3,  # 30% show up 3 s late: behind items that finished later
        fault_scope="read",
        http_503_ratio=0.03,
        http_502_ratio=0.02,
        http_429_ratio=0.02,
        retry_after=0,
    )
    poller = PollerThread(
        setup.settings(CONNECTOR_PAGE_SIZE="100", CONNECTOR_LATE_WINDOW_SECONDS=str(LATE_WINDOW))
    )
    try:
        setup.create_items(2400)
        total = 3000
        wait_for(lambda: len(setup.finished_ids()) == total, what="every item finished")
        all_visible = datetime.now(UTC)
        # A look-back scan that started after everything was visible has completed.
        wait_for(
            lambda: (
                (h := setup.late_horizon()) is not None
                and h >= all_visible - timedelta(seconds=LATE_WINDOW)
            ),
            what="a complete look-back scan",
        )
        wait_for(lambda: sum(setup.published_ids().values()) >= total, what="all published")
    finally:
        poller.stop()
    listed = {item["id"]: item for item in setup.listed()}
    messages = setup.published()
    counts = setup.published_ids()
    assert set(counts) == set(listed), "every finished item, nothing else"
    assert max(counts.values()) == 1, "each once"
    for message in messages[::97]:
        value = orjson.loads(message.value() or b"")
        assert value == listed[value["id"]], "the item exactly as the API sent it"
        assert message.key() == value["input_data"].get("id", value["id"]).encode()
    statuses = {orjson.loads(m.value() or b"")["status"] for m in messages}
    assert statuses == {"COMPLETED", "ERROR", "CANCELLED"}
    assert poller.metric("toloka_connector_late_items_total") > 0, "late items were exercised"
    print(
        f"\nlate items published by look-back scans: "
        f"{poller.metric('toloka_connector_late_items_total'):.0f}"
    )


def test_start_from_latest_publishes_only_items_finished_afterwards(setup: PollerSetup) -> None:
    setup.simulator.seed(50)
    poller = PollerThread(setup.settings(CONNECTOR_START_FROM="latest"))
    try:
        wait_for(lambda: poller.poller.readiness().detail == "leader", what="leadership")
        started = datetime.now(UTC)
        setup.simulator.set_knobs(processing_delay=0.2)
        setup.create_items(30)
        wait_for(lambda: sum(setup.published_ids().values()) >= 30, what="new items published")
    finally:
        poller.stop()
    values = [orjson.loads(m.value() or b"") for m in setup.published()]
    assert len(values) == 30
    assert all(utc(v["finished_at"]) >= started for v in values)


@pytest.mark.slow
def test_throughput_against_the_zero_latency_simulator(setup: PollerSetup) -> None:
    count = 20_000
    setup.simulator.seed(count, per_timestamp=3)
    started = time.monotonic()
    poller = PollerThread(setup.settings(CONNECTOR_PAGE_SIZE="1000"))
    try:
        wait_for(lambda: poller.poller.readiness().detail == "leader", what="leadership")
        leading = time.monotonic()
        wait_for(
            lambda: (
                poller.metric("toloka_connector_results_published_total", {"status": "COMPLETED"})
                >= count
            ),
            timeout=240,
            what="all seeded items published",
        )
        done = time.monotonic()
    finally:
        poller.stop()
    assert sum(setup.published_ids().values()) == count
    print(
        f"\npoller throughput: {count} items in {done - leading:.1f} s as leader = "
        f"{count / (done - leading):,.0f} items/s; {count / (done - started):,.0f} items/s "
        f"counting start-up and take-over ({leading - started:.1f} s); page 1000, late window "
        "60 s (every id tracked)"
    )


def test_injected_transaction_errors_are_survived_without_loss(
    kafka_broker: ControllableBroker, setup: PollerSetup
) -> None:
    """Request-level faults on the mock: retriable EndTxn/Produce errors, then PRODUCER_FENCED on
    EndTxn (the poller steps down, finds no other leader and takes over again)."""
    require(kafka_broker, Capability.FAULT_INJECTION)
    poller = PollerThread(
        setup.settings(CONNECTOR_PAGE_SIZE="50", CONNECTOR_LEADER_TIMEOUT_SECONDS="2")
    )
    try:
        wait_for(lambda: poller.poller.readiness().detail == "leader", what="leadership")
        kafka_broker.push_request_errors(ApiKey.END_TXN, [NOT_COORDINATOR, CONCURRENT_TRANSACTIONS])
        kafka_broker.push_request_errors(
            ApiKey.PRODUCE, [NOT_LEADER_OR_FOLLOWER, REQUEST_TIMED_OUT]
        )
        setup.simulator.seed(500)
        wait_for(lambda: len(setup.published_ids()) >= 500, what="published through retries")
        kafka_broker.push_request_errors(ApiKey.END_TXN, [PRODUCER_FENCED])
        setup.simulator.seed(300)
        wait_for(
            lambda: poller.metric("toloka_connector_poller_takeovers_total") >= 2,
            what="stepped down, then took over again",
        )
        wait_for(lambda: len(setup.published_ids()) >= 800, what="published after fencing")
    finally:
        poller.stop()
    counts = setup.published_ids()
    assert len(counts) == 800, "nothing lost"
    repeated = sum(c - 1 for c in counts.values())
    print(f"\ninjected Kafka errors on {kafka_broker.kind}: {repeated} repeated (no transactions)")
    assert repeated <= 50, "at most the page whose commit was fenced"


def test_write_cursor_fences_the_running_poller_which_then_resumes_from_it(
    kafka_broker: ControllableBroker, setup: PollerSetup
) -> None:
    """What `reset-cursor` relies on: the running poller cannot overwrite the new cursor."""
    require(kafka_broker, Capability.TRANSACTIONS)
    setup.simulator.seed(100)
    poller = PollerThread(setup.settings())
    try:
        wait_for(lambda: len(setup.published_ids()) == 100, what="first pass")
        kafka = {"bootstrap.servers": setup.bootstrap_servers}
        restart = initial_cursor(
            setup.simulator.project_id,
            "earliest",
            now=time.time(),
            late_window_seconds=60,
            holder=None,
        )
        write_cursor(kafka, setup.state_topic, restart)
        wait_for(lambda: set(setup.published_ids().values()) == {2}, what="second pass")
    finally:
        poller.stop()
    assert poller.metric("toloka_connector_poller_takeovers_total") == 2
