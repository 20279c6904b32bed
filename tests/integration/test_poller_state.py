"""The poller's state store on a real broker (`connector.poller.state.KafkaStateStore`): the
state topic is shared by every app project's poller."""

from __future__ import annotations

import threading
from datetime import UTC, datetime

import pytest
from confluent_kafka import Producer

from connector.contract.cursor import Cursor
from connector.kafka.reads import end_offsets
from connector.poller import write_cursor
from connector.poller.state import KafkaStateStore
from testkit.brokers import ControllableBroker
from testkit.waiting import wait_for
from tests.fixtures.brokers import NewTopic

pytestmark = pytest.mark.integration


def test_the_state_is_read_to_its_end_while_other_projects_commit_without_pause(
    kafka_broker: ControllableBroker, new_topic: NewTopic
) -> None:
    """A take-over reads the state to the end the topic had when the read began. With the
    pollers of other projects writing all the time, no fetch comes back empty: the read must
    end once it passed that end (before, it ran into its timeout: "not read to its end")."""
    bootstrap = kafka_broker.bootstrap_servers
    topic = new_topic(compacted=True)
    now = datetime.now(UTC)
    ours = Cursor(app_project_id="ours", after_id="item-7", finished_at=now, late_horizon=now,
                  written_at=now, holder=None)  # fmt: skip
    write_cursor({"bootstrap.servers": bootstrap}, topic, ours)
    stop = threading.Event()

    def other_projects_commit() -> None:
        producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 0})
        while not stop.is_set():
            producer.produce(topic, key=b"cursor/other", value=b"{}")
            producer.poll(0.001)
        producer.flush(10)

    writer = threading.Thread(target=other_projects_commit)
    writer.start()
    try:
        # The read begins while they write: its end lies behind a stream that does not stop.
        wait_for(
            lambda: end_offsets({"bootstrap.servers": bootstrap}, topic, [0], 10)[0] > 2000,
            "the writes flowing",
        )
        store = KafkaStateStore(
            {"bootstrap.servers": bootstrap}, topic=topic, app_project_id="ours",
            group_id="state-test", timeout_seconds=10.0,
        )  # fmt: skip
        state = store.read()
    finally:
        stop.set()
        writer.join(30)
    assert state.cursor is not None
    assert state.cursor.after_id == "item-7"
