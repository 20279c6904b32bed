"""The mock cluster: ctypes calls in-process, and the child process behind its JSON protocol."""

from __future__ import annotations

import json
import signal
from collections.abc import Iterator

import pytest
from confluent_kafka import KafkaError
from confluent_kafka.admin import AdminClient

from connector.devtools.brokers.mock_cluster import execute
from connector.errors import BrokerError, KafkaOperationError
from connector.kafka.admin import (
    TopicSpec,
    broker_config_value,
    cleanup_policies,
    create_topics_tolerating_existing,
    topic_config_values,
)
from testkit.brokers import ApiKey, FaultyMock
from testkit.mock_faults import FaultyMockCluster


@pytest.fixture(scope="module")
def cluster() -> Iterator[FaultyMockCluster]:
    mock = FaultyMockCluster(brokers=2)
    yield mock
    mock.close()


def test_in_process_cluster_serves_metadata_and_topics(cluster: FaultyMockCluster) -> None:
    cluster.create_topic("orders", partitions=4)
    metadata = AdminClient({"bootstrap.servers": cluster.bootstrap_servers}).list_topics(timeout=10)
    assert sorted(metadata.brokers) == [1, 2]
    assert len(metadata.topics["orders"].partitions) == 4


def test_protocol_runs_commands_and_reports_failures(cluster: FaultyMockCluster) -> None:
    ok = json.dumps({"op": "push_request_errors", "args": {"api_key": 0, "errors": [6, 7]}})
    assert execute(cluster, ok) == {"ok": True}
    assert execute(cluster, json.dumps({"op": "clear_request_errors", "args": {"api_key": 0}}))[
        "ok"
    ]
    assert execute(cluster, json.dumps({"op": "__init__"})) == {
        "ok": False,
        "error": "unknown op '__init__'",
    }
    down = execute(cluster, json.dumps({"op": "broker_down", "args": {"broker_id": 42}}))
    assert down["ok"] is False
    assert "not available" in down["error"]
    assert execute(cluster, "not json")["ok"] is False


def test_child_process_broker_takes_fault_commands_and_exits_on_close() -> None:
    broker = FaultyMock(brokers=3)
    try:
        assert len(broker.bootstrap_servers.split(",")) == 3
        broker.create_topic("faults", partitions=2)
        broker.push_request_errors(ApiKey.FETCH, [KafkaError.NOT_LEADER_FOR_PARTITION])
        broker.push_broker_request_errors(2, ApiKey.PRODUCE, [(KafkaError.REQUEST_TIMED_OUT, 50)])
        broker.clear_request_errors(ApiKey.FETCH)
        broker.broker_down(3)
        broker.broker_up(3)
        broker.set_rtt(1, 5)
        broker.set_partition_leader("faults", 0, 2)
        broker.set_coordinator("group", "some-group", 1)
        broker.set_group_initial_rebalance_delay_ms(0)
        with pytest.raises(BrokerError, match="broker_down failed"):
            broker.broker_down(7)
    finally:
        broker.close()
    assert broker._proc.returncode == 0  # left on its own when its stdin closed
    broker.close()  # idempotent


def test_child_process_death_is_reported() -> None:
    broker = FaultyMock(brokers=1)
    try:
        broker._proc.send_signal(signal.SIGKILL)
        broker._proc.wait()
        with pytest.raises(BrokerError, match="exited"):
            broker.broker_down(1)
    finally:
        broker.close()


def test_admin_requests_the_mock_never_answers_are_refused_at_once_naming_why(
    cluster: FaultyMockCluster,
) -> None:
    """CreateTopics and DescribeConfigs go unanswered on the mock (docs/brokers.md): the admin
    helpers say so instead of waiting out their timeout (`check` on the mock waited 2 x 10 s)."""
    cluster.create_topic("described", partitions=1)
    servers = cluster.bootstrap_servers
    with pytest.raises(KafkaOperationError, match="mock cluster does not implement DescribeConf"):
        cleanup_policies(servers, ["described"], timeout=2)
    assert topic_config_values(servers, ["described"], "max.message.bytes", timeout=2) == {}
    assert broker_config_value(servers, "transaction.max.timeout.ms", timeout=2) is None
    with pytest.raises(KafkaOperationError, match="mock cluster does not implement CreateTopics"):
        create_topics_tolerating_existing(servers, [TopicSpec("created")], timeout=2)
