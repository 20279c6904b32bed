"""The poller against answers, sizes and broker faults of the real world (issue 11): the real
TolokaClient against the simulator over TCP, and the session's broker.

- pages over the response-size limit, and items that cannot be read even alone;
- results larger than the output topic accepts;
- a broker frozen across a transaction commit;
- a backlog that must not grow the state, nor hold late items back;
- an after_id the API no longer knows.
"""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest
from confluent_kafka.admin import (
    AdminClient,
    AlterConfigOpType,
    ConfigEntry,
    ConfigResource,
    ResourceType,
)

from connector.contract.cursor import Cursor, decode_cursor
from connector.devtools.brokers.base import Capability
from connector.kafka.admin import TopicSpec
from connector.poller import write_cursor
from testkit.brokers import ControllableBroker
from testkit.kafka import headers_of, read_all, unique_name
from testkit.waiting import wait_for
from tests.fixtures.brokers import NewTopic, require
from tests.fixtures.simulator import SimulatorHandle
from tests.integration.poller_harness import PollerSetup, PollerThread
from tests.integration.test_uploader_hardening import START_UP_FAULTS, start_up_fault

pytestmark = pytest.mark.integration

WAIT = 45.0
"""Seconds any one outcome may take; today's stalls fail the test after this long."""


@pytest.fixture
def setup(
    kafka_broker: ControllableBroker, simulator: SimulatorHandle, new_topic: NewTopic
) -> PollerSetup:
    return PollerSetup(
        simulator,
        kafka_broker.bootstrap_servers,
        output_topic=new_topic(partitions=3),
        state_topic=new_topic(compacted=True),
        dlq_topic=new_topic(),
    )


def published_total(setup: PollerSetup) -> int:
    return sum(setup.published_ids().values())


def seed_one(sim: SimulatorHandle, **knobs: Any) -> str:
    """Seed one finished item shaped by `knobs` (reset afterwards); its id."""
    sim.set_knobs(**knobs)
    first_id = str(sim.seed(1)["first_id"])
    sim.set_knobs(**{name: 0.0 for name in knobs})
    return first_id


# --- start-up: an answer that says nothing about the key or the project is waited out -------


@pytest.mark.parametrize("fault_name", START_UP_FAULTS)
def test_a_proxy_answering_the_start_up_read_is_waited_out(
    setup: PollerSetup, fault_name: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="connector.startup")
    sim = setup.simulator
    sim.seed(20)
    fault, status = start_up_fault(fault_name)
    sim.set_knobs(fault_scope="read", **fault)
    poller = PollerThread(setup.settings(CONNECTOR_API_MAX_RESPONSE_BYTES="65536"))
    try:
        wait_for(lambda: f"HTTP {status}" in poller.poller.readiness().detail
                 or not poller.thread.is_alive(), timeout=WAIT,
                 what="readiness naming the answer waited out")  # fmt: skip
        assert poller.error is None, f"the poller gave up at start: {poller.error}"
        readiness = poller.poller.readiness()
        assert not readiness.ready
        assert "app project" in readiness.detail
        sim.set_knobs(redirect_ratio=0.0, oversized_page_ratio=0.0)
        wait_for(lambda: published_total(setup) >= 20, timeout=WAIT, what="all published")
    finally:
        poller.stop()
    assert len(setup.published_ids()) == 20
    said = [
        r for r in caplog.records if r.name == "connector.startup" and r.levelno >= logging.INFO
    ]
    assert [r.levelno for r in said] == [logging.ERROR, logging.INFO], "not once each way"


# --- item 2: pages that cannot be read ------------------------------------------------------


def test_pages_over_the_response_limit_shrink_and_grow_back(setup: PollerSetup) -> None:
    sim = setup.simulator
    sim.set_knobs(bulky_output_bytes=20_000)
    sim.seed(60)  # 40 of these make a page of ~800 kB, 5 make ~100 kB
    sim.set_knobs(bulky_output_bytes=0)
    sim.seed(300)
    poller = PollerThread(
        setup.settings(CONNECTOR_PAGE_SIZE="40", CONNECTOR_API_MAX_RESPONSE_BYTES="150000")
    )
    try:
        wait_for(lambda: published_total(setup) >= 360, timeout=WAIT, what="all published")
        wait_for(
            lambda: poller.metric("toloka_connector_poller_page_limit") == 40,
            timeout=WAIT,
            what="the page size grown back",
        )
        shrunk = poller.metric("toloka_connector_unreadable_pages_total")
    finally:
        poller.stop()
    counts = setup.published_ids()
    assert len(counts) == 360
    assert max(counts.values()) == 1
    assert setup.dead_letters() == []
    assert shrunk >= 3, "40 -> 20 -> 10 -> 5"


@pytest.mark.parametrize(
    ("fault", "knobs"),
    [
        ("not UTF-8", {"undecodable_item_ratio": 1.0}),
        ("finished_at no datetime", {"invalid_item_ratio": 1.0}),
        ("larger than the response limit alone", {"bulky_output_bytes": 300_000}),
    ],
)
def test_an_item_unreadable_even_alone_is_dead_lettered_and_passed(
    setup: PollerSetup, fault: str, knobs: dict[str, Any]
) -> None:
    sim = setup.simulator
    sim.seed(10)
    bad = seed_one(sim, **knobs)
    sim.seed(10)
    poller = PollerThread(
        setup.settings(CONNECTOR_PAGE_SIZE="8", CONNECTOR_API_MAX_RESPONSE_BYTES="100000")
    )
    try:
        wait_for(lambda: published_total(setup) >= 20, timeout=WAIT, what="the others published")
        wait_for(setup.dead_letters, timeout=WAIT, what="the dead letter")
        sim.seed(5)
        wait_for(lambda: published_total(setup) >= 25, timeout=WAIT, what="later items")
    finally:
        poller.stop()
    counts = setup.published_ids()
    assert bad not in counts
    assert len(counts) == 25
    assert max(counts.values()) == 1
    (letter,) = setup.dead_letters()  # once, and visible to read_committed readers
    found = headers_of(letter)
    assert found["error-reason"] == "unreadable_result"
    assert found["toloka-item-id"] == bad
    assert found["toloka-app-project-id"] == sim.project_id
    assert found["error-message"]
    value = orjson.loads(letter.value() or b"")
    assert value["id"] == bad, f"as much of the item as could be read ({fault})"
    assert value["input_data"]["text"].startswith("Seeded item number")


# --- item 3: a result larger than the output topic accepts ----------------------------------


def lower_max_message_bytes(bootstrap: str, topic: str, limit: int) -> None:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    resource = ConfigResource(
        ResourceType.TOPIC,
        topic,
        incremental_configs=[
            ConfigEntry(
                "max.message.bytes", str(limit), incremental_operation=AlterConfigOpType.SET
            )
        ],
    )
    for future in admin.incremental_alter_configs([resource]).values():
        future.result(30)


@pytest.mark.parametrize("limit_from", ["topic", "producer", "topic lowered while leading"])
def test_a_result_too_large_for_the_output_topic_is_dead_lettered_and_passed(
    kafka_broker: ControllableBroker, setup: PollerSetup, limit_from: str
) -> None:
    limit = 60_000
    if limit_from == "topic":
        require(kafka_broker, Capability.ADMIN_CREATE_TOPICS)
        setup.output_topic = unique_name("small-out")
        kafka_broker.create_topics(
            [TopicSpec(setup.output_topic, config={"max.message.bytes": str(limit)})]
        )
    if limit_from == "topic lowered while leading":
        require(kafka_broker, Capability.TRANSACTIONS)  # real topic configs, no mock gaps
    extra = {"KAFKA_MESSAGE_MAX_BYTES": str(limit)} if limit_from == "producer" else {}
    sim = setup.simulator
    poller = PollerThread(setup.settings(CONNECTOR_PAGE_SIZE="10", **extra))
    try:
        wait_for(lambda: poller.poller.readiness().detail == "leader", what="leadership")
        if limit_from == "topic lowered while leading":
            lower_max_message_bytes(setup.bootstrap_servers, setup.output_topic, limit)
        sim.seed(7)
        bad = seed_one(sim, bulky_output_bytes=100_000)  # its result: ~100 kB
        sim.seed(7)
        wait_for(lambda: published_total(setup) >= 14, timeout=WAIT, what="the others published")
        wait_for(setup.dead_letters, timeout=WAIT, what="the dead letter")
    finally:
        poller.stop()
    counts = setup.published_ids()
    assert bad not in counts
    assert len(counts) == 14
    assert max(counts.values()) == 1
    (letter,) = setup.dead_letters()
    found = headers_of(letter)
    assert found["error-reason"] == "result_too_large"
    assert found["toloka-item-id"] == bad
    assert found["toloka-app-project-id"] == sim.project_id
    assert str(limit) in found["error-message"] or "too large" in found["error-message"]
    value = orjson.loads(letter.value() or b"")
    assert value["id"] == bad
    assert value["input_data"]["text"].startswith("Seeded item number")
    if limit_from == "producer":  # the dead-letter topic is held to the same limit
        assert "output_data" not in value, "what did not fit was left out"
        assert found["error-dropped-fields"] == "output_data"
    else:  # the dead-letter topic takes the whole item
        assert len(value["output_data"]["mask"]) == 100_000
        assert "error-dropped-fields" not in found


# --- item 4: a commit across a frozen broker ------------------------------------------------


def said_commit_transaction(caplog: pytest.LogCaptureFixture) -> bool:
    return any(
        "commit_transaction:" in record.getMessage()
        for record in caplog.records
        if record.name.startswith("connector.poller")
    )


def test_a_broker_frozen_across_a_commit_does_not_wedge_the_leader(
    kafka_broker: ControllableBroker, setup: PollerSetup, caplog: pytest.LogCaptureFixture
) -> None:
    """An idle leader's only transactions are keepalives: no results to flush, so a broker
    frozen between two of them is frozen across the next one's commit_transaction. Today: the
    commit times out, the abort after it is refused as conflicting, and so is every begin
    after that, for good."""
    require(kafka_broker, Capability.PROCESS_CONTROL)
    require(kafka_broker, Capability.TRANSACTIONS)
    setup.simulator.seed(200)
    poller = PollerThread(
        setup.settings(
            CONNECTOR_TRANSACTION_TIMEOUT_SECONDS="2",
            CONNECTOR_LEADER_TIMEOUT_SECONDS="4",
            CONNECTOR_IDLE_POLL_INTERVAL_SECONDS="5",
        )
    )
    try:
        wait_for(lambda: published_total(setup) >= 200, timeout=WAIT, what="caught up")
        caplog.set_level(logging.WARNING, logger="connector.poller")
        caplog.clear()
        kafka_broker.pause()
        try:
            # Frozen until the keepalive's commit gave up (2 s after it began); readiness alone
            # is no sign of it: the frozen broker makes Kafka look unreachable, sooner or (on
            # a loaded machine, whose statistics come late) a little later.
            wait_for(lambda: said_commit_transaction(caplog), what="a commit given up")
            wait_for(lambda: not poller.poller.readiness().ready, what="not ready while frozen")
        finally:
            kafka_broker.resume()
        resumed = time.monotonic()
        setup.simulator.seed(300)
        wait_for(lambda: published_total(setup) >= 500, timeout=WAIT, what="all published")
        recovered_in = time.monotonic() - resumed
        wait_for(lambda: poller.poller.readiness().ready, what="ready again")
    finally:
        poller.stop()
    counts = setup.published_ids()
    print(f"\nbroker frozen across a commit: publishing again {recovered_in:.1f} s after resume")
    assert len(counts) == 500
    assert max(counts.values()) == 1


# --- item 6: a backlog ----------------------------------------------------------------------


def cursor_records(setup: PollerSetup) -> list[tuple[Cursor, int]]:
    """Every committed cursor record of the project, with its size in bytes."""
    key = setup.simulator.project_id.encode()
    return [
        (decode_cursor(message.value() or b""), len(message.value() or b""))
        for message in read_all(setup.bootstrap_servers, setup.state_topic)
        if message.key() == key and message.value()
    ]


@pytest.mark.slow
def test_a_backlog_keeps_the_state_bounded_and_the_look_back_scans_on_time(
    setup: PollerSetup,
) -> None:
    poller = PollerThread(
        setup.settings(
            CONNECTOR_PAGE_SIZE="5",
            CONNECTOR_LATE_WINDOW_SECONDS="2",
            CONNECTOR_LATE_SCAN_INTERVAL_SECONDS="1",
        )
    )
    items = 1000  # 200 transactions behind a 2 s window, each listing 50 ms: 10 s or more
    try:
        wait_for(lambda: poller.poller.readiness().detail == "leader", what="leadership")
        setup.simulator.set_knobs(read_latency=0.05)
        setup.simulator.seed(items)
        wait_for(lambda: published_total(setup) >= items, timeout=90, what="the backlog published")
    finally:
        poller.stop()
    counts = setup.published_ids()
    assert len(counts) == items
    assert max(counts.values()) == 1
    records = cursor_records(setup)
    last_item = max(counts)  # simulator ids sort like creation order
    backlog = [cursor for cursor, _ in records if cursor.after_id != last_item]
    # Every item finished within a few ms: only in the first seconds are they within the
    # window. From the second half of the backlog on, the horizon has long passed them.
    later = [(cursor, size) for cursor, size in records[len(records) // 2 :]]
    largest_later = max(size for _, size in later)
    print(
        f"\nbacklog of {items} items in {len(records)} cursor records: largest "
        f"{max(size for _, size in records)} B (while within the window), largest later "
        f"{largest_later} B"
    )
    assert largest_later < 600, "the cursor record does not grow with the backlog"
    assert max(len(cursor.segments) for cursor, _ in later) <= 1
    assert backlog[-1].late_horizon - backlog[0].late_horizon >= timedelta(seconds=4), (
        "look-back scans kept their interval during the backlog"
    )


# --- item 8: an after_id the API does not know ----------------------------------------------


def test_an_unknown_after_id_is_sent_once_not_every_idle_cycle(setup: PollerSetup) -> None:
    sim = setup.simulator
    finished = datetime.now(UTC) - timedelta(minutes=5)
    write_cursor(
        {"bootstrap.servers": setup.bootstrap_servers},
        setup.state_topic,
        Cursor(
            app_project_id=sim.project_id,
            after_id="an-item-the-api-forgot",
            finished_at=finished,
            late_horizon=finished,
            written_at=finished,
            holder=None,
        ),
    )
    poller = PollerThread(setup.settings(CONNECTOR_LATE_WINDOW_SECONDS="0"))
    try:
        wait_for(
            lambda: sim.stats()["requests_by_route"].get("list_items", 0) >= 8,
            what="several idle cycles",
        )
        rejected = sim.stats()["requests_by_status"].get("400", 0)
        sim.seed(5)
        wait_for(lambda: published_total(setup) >= 5, timeout=WAIT, what="new items published")
    finally:
        poller.stop()
    assert rejected == 1
