"""The broker abstraction: capability table, refusals with reasons, generated Kafka settings."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest

from connector.kafka.admin import TopicSpec
from connector.kafka.broker import ApiKey, Broker, BrokerCapabilityError, Capability
from connector.kafka.brokers.apache import ApacheKafkaBroker, new_cluster_id, server_properties
from connector.kafka.brokers.external import ExternalBroker
from connector.kafka.brokers.mock import MockClusterBroker
from connector.kafka.brokers.noida import NoidaBroker

CAPABILITIES = {
    # kind: transactions, evicts_killed_members, cooperative_rebalancing, fault_injection,
    # process_control, admin_create
    ApacheKafkaBroker: (True, True, True, False, True, True),
    MockClusterBroker: (False, True, True, True, False, False),
    NoidaBroker: (True, False, False, False, False, True),
    ExternalBroker: (True, True, True, False, False, True),
}
ORDER = (
    Capability.TRANSACTIONS,
    Capability.EVICTS_KILLED_MEMBERS,
    Capability.COOPERATIVE_REBALANCING,
    Capability.FAULT_INJECTION,
    Capability.PROCESS_CONTROL,
    Capability.ADMIN_CREATE_TOPICS,
)


@pytest.mark.parametrize("broker_class", list(CAPABILITIES))
def test_capability_table_matches_dev_broker_notes(broker_class: type[Broker]) -> None:
    expected = dict(zip(ORDER, CAPABILITIES[broker_class], strict=True))
    assert {cap: cap not in broker_class.lacks for cap in ORDER} == expected
    assert all(reason.strip() for reason in broker_class.lacks.values())


def test_unsupported_operations_raise_with_the_reason() -> None:
    broker = ExternalBroker("127.0.0.1:9")
    assert broker.supports("transactions")
    assert not broker.supports(Capability.PROCESS_CONTROL)
    with pytest.raises(BrokerCapabilityError, match="not ours to stop") as raised:
        broker.restart()
    assert raised.value.capability is Capability.PROCESS_CONTROL
    with pytest.raises(BrokerCapabilityError, match="fault_injection"):
        broker.push_request_errors(ApiKey.PRODUCE, [6])
    broker.ensure_running()  # nothing to bring back: no error
    with pytest.raises(ValueError, match="teleport"):
        broker.supports("teleport")


def test_topic_spec_compaction_adds_cleanup_policy() -> None:
    assert TopicSpec("state", compacted=True, config={"segment.ms": "100"}).topic_config() == {
        "segment.ms": "100",
        "cleanup.policy": "compact",
    }
    assert TopicSpec("items", partitions=6).topic_config() == {}


def test_cluster_id_is_a_kafka_uuid_string() -> None:
    for _ in range(200):
        cluster_id = new_cluster_id()
        assert len(cluster_id) == 22
        assert not cluster_id.startswith("-")
        assert len(base64.urlsafe_b64decode(cluster_id + "==")) == 16


def test_server_properties_single_node_kraft() -> None:
    text = server_properties(Path("/data"), 19092, 19093)
    settings = dict(line.split("=", 1) for line in text.splitlines())
    assert settings["process.roles"] == "broker,controller"
    assert settings["controller.quorum.bootstrap.servers"] == "127.0.0.1:19093"
    assert settings["advertised.listeners"] == "PLAINTEXT://127.0.0.1:19092"
    assert settings["log.dirs"] == "/data"
    for key in (
        "offsets.topic.replication.factor",
        "transaction.state.log.replication.factor",
        "transaction.state.log.min.isr",
    ):
        assert settings[key] == "1"
    assert settings["group.initial.rebalance.delay.ms"] == "0"
