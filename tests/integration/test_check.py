"""`toloka-connector check` against a real broker and the simulator over TCP."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from connector.contract.leadership import leadership_topic
from connector.kafka.admin import TopicSpec, existing_topics, topic_config_values
from connector.uploader.dead_letters import HEADERS_ALLOWANCE_BYTES
from testkit.brokers import ControllableBroker
from testkit.kafka import unique_name
from tests.fixtures.brokers import NewTopic, require
from tests.fixtures.simulator import SimulatorHandle

pytestmark = pytest.mark.integration


def check(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "connector", "check", *args],
        env={**os.environ, **env}, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip


def environ(
    broker: ControllableBroker, simulator: SimulatorHandle, **topics: str
) -> dict[str, str]:
    return {
        "TOLOKA_API_KEY": simulator.api_key,
        "TOLOKA_BASE_URL": simulator.base_url,
        "TOLOKA_APP_PROJECT_ID": simulator.project_id,
        "KAFKA_BOOTSTRAP_SERVERS": broker.bootstrap_servers,
        "CONNECTOR_API_MAX_ATTEMPTS": "1",
        **{f"CONNECTOR_{name.upper()}": value for name, value in topics.items()},
    }


def test_all_well_prints_masked_settings_and_exits_0(
    kafka_broker: ControllableBroker, new_topic: NewTopic, simulator: SimulatorHandle
) -> None:
    state = new_topic(compacted=True)
    env = environ(
        kafka_broker, simulator, input_topic=new_topic(), output_topic=new_topic(),
        dlq_topic=new_topic(), state_topic=state,
    )  # fmt: skip
    result = check(env)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "TOLOKA_API_KEY = **********" in result.stdout
    assert simulator.api_key not in result.stdout + result.stderr
    assert "input_spec {id: string?, text: string}" in result.stdout
    # The poller creates its leadership topic itself where the account may: only a warning.
    leader = leadership_topic(state, simulator.project_id)
    assert f"WARN  topic {leader}: missing: the poller creates it" in result.stdout
    assert "all checks passed" in result.stdout


def test_missing_topics_and_a_wrong_key_are_each_reported(
    kafka_broker: ControllableBroker, simulator: SimulatorHandle
) -> None:
    missing = unique_name("missing")
    env = {
        **environ(kafka_broker, simulator, input_topic=missing),
        "TOLOKA_API_KEY": "wrong-key-Zq81",
    }
    result = check(env)
    assert result.returncode == 1
    assert f"FAIL  topic {missing}: missing" in result.stdout
    assert "FAIL  app project reachable: get_project: HTTP 401" in result.stdout
    assert "wrong-key-Zq81" not in result.stdout + result.stderr


def test_create_topics_creates_the_missing_ones(
    kafka_broker: ControllableBroker, simulator: SimulatorHandle
) -> None:
    require(kafka_broker, "admin_create_topics")
    names = {kind: unique_name(kind) for kind in ("input_topic", "output_topic", "dlq_topic")}
    state = unique_name("state")
    env = environ(kafka_broker, simulator, state_topic=state, **names)
    result = check(env, "--create-topics")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "ok    topics created" in result.stdout
    leader = leadership_topic(state, simulator.project_id)
    assert leader in existing_topics(kafka_broker.bootstrap_servers)
    again = check(env)
    assert again.returncode == 0
    assert f"ok    topic {leader}" in again.stdout
    assert "WARN" not in again.stdout


def test_unreachable_kafka_fails_clearly(simulator: SimulatorHandle) -> None:
    result = check(
        {
            "TOLOKA_API_KEY": simulator.api_key,
            "TOLOKA_BASE_URL": simulator.base_url,
            "TOLOKA_APP_PROJECT_ID": simulator.project_id,
            "KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:1",
            "KAFKA_SOCKET_CONNECTION_SETUP_TIMEOUT_MS": "1000",
        }
    )
    assert result.returncode == 1
    assert "FAIL  Kafka reachable" in result.stdout
    assert "ok    app project reachable" in result.stdout


def test_a_state_topic_that_is_not_compacted_fails_the_check_and_says_why(
    kafka_broker: ControllableBroker, new_topic: NewTopic, simulator: SimulatorHandle
) -> None:
    require(kafka_broker, "admin_create_topics")  # the mock cluster has no DescribeConfigs
    state = new_topic(prefix="plain-state")
    env = environ(
        kafka_broker, simulator, input_topic=new_topic(), output_topic=new_topic(),
        dlq_topic=new_topic(), state_topic=state,
    )  # fmt: skip
    result = check(env)
    assert result.returncode == 1
    assert (
        f"FAIL  topic {state}: topic {state} (CONNECTOR_STATE_TOPIC) is not compacted "
        "(cleanup.policy=delete)"
    ) in result.stdout
    assert "1 check(s) failed" in result.stdout


def test_a_transaction_timeout_above_the_brokers_maximum_fails(
    kafka_broker: ControllableBroker, new_topic: NewTopic, simulator: SimulatorHandle
) -> None:
    require(kafka_broker, "admin_create_topics")  # DescribeConfigs, like CreateTopics
    env = {
        **environ(
            kafka_broker, simulator, input_topic=new_topic(), output_topic=new_topic(),
            dlq_topic=new_topic(), state_topic=new_topic(compacted=True),
        ),
        # the broker's default transaction.max.timeout.ms is 900,000 (15 min)
        "CONNECTOR_LEADER_TIMEOUT_SECONDS": "2000",
        "CONNECTOR_TRANSACTION_TIMEOUT_SECONDS": "1000",
    }  # fmt: skip
    result = check(env)
    assert result.returncode == 1, result.stdout + result.stderr
    assert (
        "FAIL  CONNECTOR_TRANSACTION_TIMEOUT_SECONDS: 1000s is above the broker's "
        "transaction.max.timeout.ms (900000)"
    ) in result.stdout


INPUT_LIMIT = 2_000_000


def check_with_large_input(
    kafka_broker: ControllableBroker, simulator: SimulatorHandle, *, dlq_sized: bool = False
) -> tuple[str, str, subprocess.CompletedProcess[str]]:
    """`check --create-topics` where the input topic takes records of up to INPUT_LIMIT bytes,
    and the dead-letter topic exists with the same limit (`dlq_sized`) or not at all; the
    input and dead-letter topics' names and the finished check."""
    require(kafka_broker, "admin_create_topics")  # and DescribeConfigs
    input_topic, dlq_topic = unique_name("input"), unique_name("dlq")
    limit = {"max.message.bytes": str(INPUT_LIMIT)}
    made = [input_topic, *([dlq_topic] if dlq_sized else [])]
    kafka_broker.create_topics([TopicSpec(topic, config=limit) for topic in made])
    env = environ(kafka_broker, simulator, input_topic=input_topic, dlq_topic=dlq_topic,
                  output_topic=unique_name("output"), state_topic=unique_name("state"))  # fmt: skip
    result = check(env, "--create-topics")
    assert result.returncode == 0, result.stdout + result.stderr
    return input_topic, dlq_topic, result


def test_create_topics_sizes_the_dead_letter_topic_for_any_input_record_with_its_headers(
    kafka_broker: ControllableBroker, simulator: SimulatorHandle
) -> None:
    _, dlq_topic, _ = check_with_large_input(kafka_broker, simulator)
    limits = topic_config_values(
        kafka_broker.bootstrap_servers, [dlq_topic], "max.message.bytes", 10
    )
    assert limits == {dlq_topic: str(INPUT_LIMIT + HEADERS_ALLOWANCE_BYTES)}


def test_a_dead_letter_topic_too_small_for_the_largest_input_record_is_a_warning(
    kafka_broker: ControllableBroker, simulator: SimulatorHandle
) -> None:
    input_topic, dlq_topic, result = check_with_large_input(kafka_broker, simulator, dlq_sized=True)
    input_limit = INPUT_LIMIT
    warnings = [line for line in result.stdout.splitlines() if line.startswith("WARN")]
    assert warnings == [
        f"WARN  topic {dlq_topic}: max.message.bytes={input_limit} leaves no room for the "
        f"headers of a dead letter of the largest input record ({input_topic} takes up to "
        f"{input_limit} bytes): such a record would stop the uploader; raise it to "
        f"{input_limit + HEADERS_ALLOWANCE_BYTES}"
    ]
    assert "all checks passed (1 warning(s) above)" in result.stdout
