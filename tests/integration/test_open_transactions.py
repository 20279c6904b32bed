"""Reads "to the end" of a topic that another producer holds a transaction open on.

The state topic is shared by every app project's poller, and pollers write dead letters to the
dead-letter topic in their transactions. A read_committed reader's partition-EOF lands at the
last stable offset, before any transaction still open: a read that stopped there would miss
what was committed after it (an OLD cursor read at take-over, so results published again; a
replay ending early without a word). Each read here must wait for the open transaction, or
fail naming it, never end early.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Iterator
from dataclasses import replace

import pytest
from confluent_kafka import OFFSET_BEGINNING, KafkaException, Producer

from connector.contract.cursor import (
    STATE_PARTITION,
    Cursor,
    cursor_key,
    encode_cursor,
    initial_cursor,
)
from connector.contract.dead_letters import REASON_HEADER, REJECTED
from connector.devtools.brokers.base import Capability
from connector.errors import KafkaOperationError
from connector.kafka.reads import end_offsets, looking_consumer, read_partitions
from connector.operations.replay import ReplayRequest, replay_dead_letters
from connector.poller import read_cursor, write_cursor
from testkit.brokers import ControllableBroker
from testkit.waiting import wait_for
from tests.fixtures.brokers import NewTopic, require

pytestmark = pytest.mark.integration


@pytest.fixture
def open_transaction(kafka_broker: ControllableBroker) -> Iterator[Producer]:
    """A transactional producer (another app project's poller, say) to hold a transaction
    open; aborted at the end of the test if still open."""
    require(kafka_broker, Capability.TRANSACTIONS)
    producer = Producer(
        {
            "bootstrap.servers": kafka_broker.bootstrap_servers,
            "transactional.id": f"toloka-connector-poller-other-{time.monotonic_ns()}",
        }
    )
    producer.init_transactions(30)
    producer.begin_transaction()
    yield producer
    with contextlib.suppress(KafkaException):  # committed or aborted by the test
        producer.abort_transaction(30)


def _cursor(after_id: str) -> Cursor:
    first = initial_cursor("A", "latest", now=time.time(), late_window_seconds=0, holder=None)
    return replace(first, after_id=after_id)


def _state_behind_open_transaction(
    kafka_broker: ControllableBroker, new_topic: NewTopic, other: Producer
) -> tuple[dict[str, str], str]:
    """Project A's cursor a-1, project B's transaction opened, then A's leader commits a-2 (as
    the leader writes its cursor: in a transaction of its own)."""
    config = {"bootstrap.servers": kafka_broker.bootstrap_servers}
    state = new_topic(compacted=True, prefix="shared-state")
    write_cursor(config, state, _cursor("a-1"), timeout_seconds=30)
    other.produce(state, key=cursor_key("B").encode(), value=b"{}", partition=STATE_PARTITION)
    assert other.flush(30) == 0
    leader_a = Producer({**config, "transactional.id": f"poller-A-{time.monotonic_ns()}"})
    leader_a.init_transactions(30)
    leader_a.begin_transaction()
    leader_a.produce(
        state,
        key=cursor_key("A").encode(),
        value=encode_cursor(_cursor("a-2")),
        partition=STATE_PARTITION,
    )
    leader_a.commit_transaction(30)
    return config, state


def test_a_cursor_read_behind_another_projects_open_transaction_fails_naming_it(
    kafka_broker: ControllableBroker, new_topic: NewTopic, open_transaction: Producer
) -> None:
    config, state = _state_behind_open_transaction(kafka_broker, new_topic, open_transaction)
    # Before: the read stopped at the open transaction and returned A's old cursor a-1.
    with pytest.raises(KafkaOperationError, match="transaction open at offset"):
        read_cursor(config, state, "A", timeout_seconds=3)


def test_a_cursor_read_waits_for_the_open_transaction_and_returns_the_newest(
    kafka_broker: ControllableBroker,
    new_topic: NewTopic,
    open_transaction: Producer,
    caplog: pytest.LogCaptureFixture,
) -> None:
    config, state = _state_behind_open_transaction(kafka_broker, new_topic, open_transaction)
    caplog.set_level(logging.INFO, logger="connector.poller.state")
    seen: list[Cursor | None] = []
    reader = threading.Thread(
        target=lambda: seen.append(read_cursor(config, state, "A", timeout_seconds=60))
    )
    reader.start()
    wait_for(lambda: "waiting for a transaction open" in caplog.text, "the read to wait", 30)
    open_transaction.abort_transaction(30)
    reader.join(60)
    assert [cursor and cursor.after_id for cursor in seen] == ["a-2"]


def _dead_letters_behind_open_transaction(
    kafka_broker: ControllableBroker, new_topic: NewTopic, other: Producer
) -> tuple[dict[str, str], str]:
    """A dead letter, a poller's transaction opened on the topic, a second dead letter."""
    config = {"bootstrap.servers": kafka_broker.bootstrap_servers}
    dlq = new_topic(1, prefix="shared-dlq")
    plain = Producer(config)
    headers: list[tuple[str, str | bytes | None]] = [(REASON_HEADER, REJECTED.encode())]
    plain.produce(dlq, value=b'{"id": "1", "text": "t"}', headers=headers, partition=0)
    assert plain.flush(30) == 0
    other.produce(dlq, value=b"{}", headers=headers, partition=0)
    assert other.flush(30) == 0
    plain.produce(dlq, value=b'{"id": "2", "text": "t"}', headers=headers, partition=0)
    assert plain.flush(30) == 0
    return config, dlq


def test_a_replay_behind_an_open_transaction_fails_naming_it(
    kafka_broker: ControllableBroker, new_topic: NewTopic, open_transaction: Producer
) -> None:
    config, dlq = _dead_letters_behind_open_transaction(kafka_broker, new_topic, open_transaction)
    request = ReplayRequest(dlq, new_topic(1, prefix="in"), (REJECTED,), dry_run=True)
    # Before: the replay ended at the open transaction, one dead letter replayed, no word said.
    with pytest.raises(KafkaOperationError, match="transaction open at offset 1"):
        replay_dead_letters(config, request, timeout=3)


def test_a_read_to_the_end_waits_for_the_open_transaction(
    kafka_broker: ControllableBroker,
    new_topic: NewTopic,
    open_transaction: Producer,
    caplog: pytest.LogCaptureFixture,
) -> None:
    config, dlq = _dead_letters_behind_open_transaction(kafka_broker, new_topic, open_transaction)
    caplog.set_level(logging.INFO, logger="connector.kafka.reads")
    consumer = looking_consumer(config)
    ends = end_offsets(config, dlq, [0], 10)
    read: list[bytes | None] = []
    try:
        records = read_partitions(consumer, dlq, {0: OFFSET_BEGINNING}, ends=ends, idle_timeout=60)
        reader = threading.Thread(target=lambda: read.extend(m.value() for m in records))
        reader.start()
        wait_for(lambda: "waiting for a transaction open" in caplog.text, "the read to wait", 30)
        open_transaction.commit_transaction(30)
        reader.join(60)
    finally:
        consumer.close()
    assert read == [b'{"id": "1", "text": "t"}', b"{}", b'{"id": "2", "text": "t"}']
