"""What every development broker must show, run against the one TEST_KAFKA_BROKER selects.

Group consumption with committed offsets on all of them; transactions (aborts invisible,
open transactions not passed, zombie fencing) where the broker has them; request-level fault
injection on the mock; stop/pause/restart where we control the process.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from confluent_kafka import Consumer, KafkaError, KafkaException, Message, Producer
from confluent_kafka.admin import (
    AdminClient,
    ConfigResource,
)

from connector.devtools.brokers.base import Capability
from connector.kafka.admin import TopicSpec, ensure_topics
from testkit.brokers import ApiKey, ControllableBroker
from testkit.kafka import unique_name
from tests.fixtures.brokers import NewTopic, ReadTopic, require

pytestmark = pytest.mark.integration

TIMEOUT = 30.0


def values(records: list[Message]) -> list[str]:
    return [bytes(record.value() or b"").decode() for record in records]


def produce(bootstrap: str, topic: str, payloads: list[str]) -> None:
    producer = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True})
    errors: list[KafkaError] = []
    for payload in payloads:
        producer.produce(
            topic,
            payload.encode(),
            key=payload.encode(),
            on_delivery=lambda e, _m: errors.append(e) if e else None,
        )
    assert producer.flush(TIMEOUT) == 0
    assert errors == []


def consume(consumer: Consumer, count: int) -> list[str]:
    """Poll until `count` records arrived (and no error), within TIMEOUT."""
    received: list[str] = []
    deadline = time.monotonic() + TIMEOUT
    while len(received) < count:
        assert time.monotonic() < deadline, f"got {len(received)} of {count} records"
        message = consumer.poll(0.5)
        if message is None:
            continue
        assert message.error() is None, message.error()
        received.append(bytes(message.value() or b"").decode())
    return received


@pytest.fixture
def group_consumer(kafka_broker: ControllableBroker) -> Iterator[Callable[[], Consumer]]:
    """Makes consumers of one fresh group; closed promptly (idle noida-db consumers busy-loop)."""
    group = unique_name("group")
    consumers: list[Consumer] = []

    def make() -> Consumer:
        consumer = Consumer(
            {
                "bootstrap.servers": kafka_broker.bootstrap_servers,
                "group.id": group,
                "auto.offset.reset": "earliest",
                "enable.auto.commit": False,
                # The mock cluster holds a rejoin after a clean LeaveGroup for about the session
                # timeout (45 s by default); 6 s is the lowest a default Kafka broker accepts.
                "session.timeout.ms": 6000,
            }
        )
        consumers.append(consumer)
        return consumer

    yield make
    for consumer in consumers:
        consumer.close()


def transactional_producer(bootstrap: str, transactional_id: str) -> Producer:
    producer = Producer({"bootstrap.servers": bootstrap, "transactional.id": transactional_id})
    producer.init_transactions(TIMEOUT)
    return producer


def test_group_resumes_from_committed_offset(
    kafka_broker: ControllableBroker, new_topic: NewTopic, group_consumer: Callable[[], Consumer]
) -> None:
    topic = new_topic(partitions=2)
    first = [f"first-{i}" for i in range(6)]
    produce(kafka_broker.bootstrap_servers, topic, first)

    reader = group_consumer()
    reader.subscribe([topic])
    assert sorted(consume(reader, len(first))) == sorted(first)
    reader.commit(asynchronous=False)
    reader.close()

    later = [f"later-{i}" for i in range(4)]
    produce(kafka_broker.bootstrap_servers, topic, later)
    successor = group_consumer()
    successor.subscribe([topic])
    # auto.offset.reset=earliest: only a committed offset keeps the first records from coming back
    assert sorted(consume(successor, len(later))) == sorted(later)
    assert successor.poll(1.0) is None


def test_a_new_topic_is_served_as_soon_as_the_fixture_returns(
    kafka_broker: ControllableBroker, new_topic: NewTopic
) -> None:
    """A command started right after `new_topic` must not be told the topic does not exist
    (a broker serves a topic a moment after CreateTopics is answered: about one in seven
    topics asked for at once was not yet listed)."""
    looker = Consumer({"bootstrap.servers": kafka_broker.bootstrap_servers, "group.id": "look"})
    try:
        for partitions in (1, 3, 1, 2, 1, 3, 1, 2, 1, 3):
            topic = new_topic(partitions)
            listed = looker.list_topics(topic, timeout=TIMEOUT).topics[topic]
            assert listed.error is None, (topic, listed.error)
            assert len(listed.partitions) == partitions
    finally:
        looker.close()


def test_aborted_transaction_is_invisible_to_read_committed(
    kafka_broker: ControllableBroker, new_topic: NewTopic, read_topic: ReadTopic
) -> None:
    require(kafka_broker, Capability.TRANSACTIONS)
    topic = new_topic(partitions=2)
    producer = transactional_producer(kafka_broker.bootstrap_servers, unique_name("txn"))

    producer.begin_transaction()
    for i in range(3):
        producer.produce(topic, f"aborted-{i}".encode(), key=str(i).encode())
    producer.flush(TIMEOUT)
    producer.abort_transaction(TIMEOUT)

    producer.begin_transaction()
    for i in range(3):
        producer.produce(topic, f"committed-{i}".encode(), key=str(i).encode())
    producer.commit_transaction(TIMEOUT)

    assert sorted(values(read_topic(topic, "read_committed"))) == [
        f"committed-{i}" for i in range(3)
    ]
    # The aborted records were really written: a read_uncommitted reader sees them.
    assert len(read_topic(topic, "read_uncommitted")) == 6


def test_read_committed_stops_at_an_open_transaction(
    kafka_broker: ControllableBroker, new_topic: NewTopic, read_topic: ReadTopic
) -> None:
    require(kafka_broker, Capability.TRANSACTIONS)
    topic = new_topic()
    producer = transactional_producer(kafka_broker.bootstrap_servers, unique_name("txn"))
    producer.begin_transaction()
    producer.produce(topic, b"committed")
    producer.commit_transaction(TIMEOUT)
    producer.begin_transaction()
    producer.produce(topic, b"open")
    producer.flush(TIMEOUT)

    assert values(read_topic(topic, "read_committed")) == ["committed"]
    assert values(read_topic(topic, "read_uncommitted")) == ["committed", "open"]
    producer.abort_transaction(TIMEOUT)


def test_second_producer_with_same_transactional_id_fences_the_first(
    kafka_broker: ControllableBroker, new_topic: NewTopic, read_topic: ReadTopic
) -> None:
    require(kafka_broker, Capability.TRANSACTIONS)
    topic = new_topic()
    transactional_id = unique_name("txn")
    zombie = transactional_producer(kafka_broker.bootstrap_servers, transactional_id)
    zombie.begin_transaction()
    zombie.produce(topic, b"zombie")
    zombie.flush(TIMEOUT)

    successor = transactional_producer(kafka_broker.bootstrap_servers, transactional_id)
    with pytest.raises(KafkaException) as raised:
        zombie.commit_transaction(TIMEOUT)
    fenced = {KafkaError._FENCED, KafkaError.PRODUCER_FENCED, KafkaError.INVALID_PRODUCER_EPOCH}
    assert raised.value.args[0].code() in fenced, raised.value

    successor.begin_transaction()
    successor.produce(topic, b"successor")
    successor.commit_transaction(TIMEOUT)
    assert values(read_topic(topic, "read_committed")) == ["successor"]


def test_ensure_topics_creates_missing_compacted_and_reports_existing(
    kafka_broker: ControllableBroker,
) -> None:
    require(kafka_broker, Capability.ADMIN_CREATE_TOPICS)
    state = TopicSpec(unique_name("state"), partitions=1, compacted=True)
    items = TopicSpec(unique_name("items"), partitions=3)

    first = ensure_topics(kafka_broker.bootstrap_servers, [state, items])
    again = ensure_topics(kafka_broker.bootstrap_servers, [state, items])

    assert sorted(first.created) == sorted([state.name, items.name])
    assert first.existing == ()
    assert again == type(again)(existing=(state.name, items.name), created=())
    admin = AdminClient({"bootstrap.servers": kafka_broker.bootstrap_servers})
    [future] = admin.describe_configs([ConfigResource("topic", state.name)]).values()
    assert future.result(TIMEOUT)["cleanup.policy"].value == "compact"


def test_injected_request_errors_reach_the_client(
    kafka_broker: ControllableBroker, new_topic: NewTopic, read_topic: ReadTopic
) -> None:
    require(kafka_broker, Capability.FAULT_INJECTION)
    topic = new_topic()
    try:
        # A permanent error reaches the application in the delivery report...
        kafka_broker.push_request_errors(ApiKey.PRODUCE, [KafkaError.TOPIC_AUTHORIZATION_FAILED])
        plain = Producer({"bootstrap.servers": kafka_broker.bootstrap_servers})
        reports: list[KafkaError | None] = []
        plain.produce(topic, b"refused", on_delivery=lambda error, _m: reports.append(error))
        plain.flush(TIMEOUT)
        assert [report.code() if report else None for report in reports] == [
            KafkaError.TOPIC_AUTHORIZATION_FAILED
        ]

        # ...and the idempotent producer retries through retriable ones, writing once.
        kafka_broker.push_request_errors(
            ApiKey.PRODUCE,
            [KafkaError.NOT_LEADER_FOR_PARTITION, KafkaError.REQUEST_TIMED_OUT],
        )
        stats: list[dict[str, Any]] = []
        idempotent = Producer(
            {
                "bootstrap.servers": kafka_broker.bootstrap_servers,
                "enable.idempotence": True,
                "statistics.interval.ms": 100,
                "stats_cb": lambda raw: stats.append(json.loads(raw)),
            }
        )
        idempotent.produce(topic, b"kept", on_delivery=lambda error, _m: reports.append(error))
        assert idempotent.flush(TIMEOUT) == 0
        assert reports[-1] is None
        # One record took three Produce requests: both injected errors reached the client.
        deadline = time.monotonic() + TIMEOUT
        while _produce_requests(stats) < 3:
            assert time.monotonic() < deadline, f"{_produce_requests(stats)} Produce requests"
            idempotent.poll(0.1)
    finally:
        kafka_broker.clear_request_errors(ApiKey.PRODUCE)
    assert values(read_topic(topic, "read_uncommitted")) == ["kept"]


def _produce_requests(stats: list[dict[str, Any]]) -> int:
    """Produce requests sent so far, from the newest librdkafka statistics."""
    if not stats:
        return 0
    return sum(broker["req"].get("Produce", 0) for broker in stats[-1]["brokers"].values())


@pytest.mark.slow
def test_paused_broker_stops_answering_and_restart_keeps_data(
    kafka_broker: ControllableBroker, new_topic: NewTopic, read_topic: ReadTopic
) -> None:
    require(kafka_broker, Capability.PROCESS_CONTROL)
    topic = new_topic()
    produce(kafka_broker.bootstrap_servers, topic, ["before-restart"])
    admin = AdminClient({"bootstrap.servers": kafka_broker.bootstrap_servers})

    kafka_broker.pause()
    with pytest.raises(KafkaException):
        admin.list_topics(timeout=2.0)
    kafka_broker.resume()
    assert admin.list_topics(timeout=TIMEOUT).brokers

    bootstrap = kafka_broker.bootstrap_servers
    kafka_broker.restart()
    assert kafka_broker.bootstrap_servers == bootstrap
    assert values(read_topic(topic, "read_uncommitted")) == ["before-restart"]
