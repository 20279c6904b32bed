"""`/readyz` and `/healthz` of `toloka-connector run|upload|poll` tell the truth, and an outage is
two log lines, not thousands. Each test runs the console script against the session's broker and
the simulator over TCP, and reads the endpoints and the log as an operator would.

Readiness reasons covered here: Kafka unreachable (at start-up, and an outage that ends), a
missing topic, a state topic that is not compacted, a project the API does not know (a start-up
error), an uploader with records waiting and no progress, a leading poller whose listings fail.
The transaction stall of a leader is covered with fakes in tests/unit/test_poller_leadership.py.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import orjson
import pytest
from confluent_kafka import Producer

from connector.devtools.brokers.base import Capability
from connector.devtools.processes import free_port
from connector.kafka.admin import TopicSpec, existing_topics
from connector.kafka.topic_watch import TopicNeed, TopicWatch
from testkit.brokers import ControllableBroker
from testkit.kafka import unique_name
from testkit.processes import ConnectorProcess
from testkit.waiting import wait_for
from tests.fixtures.brokers import NewTopic, ReadTopic, require
from tests.fixtures.console import Console
from tests.fixtures.simulator import SimulatorHandle

pytestmark = pytest.mark.integration

# Statistics every second instead of the uploader's default five: the same signals, sooner.
FAST_STATISTICS = {"KAFKA_STATISTICS_INTERVAL_MS": "1000"}


def environ(
    broker: ControllableBroker | str, simulator: SimulatorHandle, new_topic: NewTopic | None = None
) -> dict[str, str]:
    bootstrap = broker if isinstance(broker, str) else broker.bootstrap_servers
    topics = (
        {}
        if new_topic is None
        else {
            "CONNECTOR_INPUT_TOPIC": new_topic(2, prefix="in"),
            "CONNECTOR_OUTPUT_TOPIC": new_topic(1, prefix="out"),
            "CONNECTOR_DLQ_TOPIC": new_topic(1, prefix="dlq"),
            "CONNECTOR_STATE_TOPIC": new_topic(compacted=True, prefix="state"),
        }
    )
    return {
        "TOLOKA_API_KEY": simulator.api_key,
        "TOLOKA_BASE_URL": simulator.base_url,
        "TOLOKA_APP_PROJECT_ID": simulator.project_id,
        "KAFKA_BOOTSTRAP_SERVERS": bootstrap,
        "CONNECTOR_GROUP_ID": unique_name("probes"),
        "CONNECTOR_LEADER_TIMEOUT_SECONDS": "3",
        "CONNECTOR_IDLE_POLL_INTERVAL_SECONDS": "0.3",
        **FAST_STATISTICS,
        **topics,
    }


def probe(process: ConnectorProcess, path: str) -> tuple[int, dict[str, Any]] | None:
    response = process.get(path)
    if response is None:
        return None
    body: dict[str, Any] = orjson.loads(response.content)
    return response.status_code, body


def wait_for_probe(
    process: ConnectorProcess,
    path: str,
    status: int,
    condition: Callable[[str], bool] = lambda _message: True,
    timeout: float = 60.0,
) -> str:
    """The probe's message once it answers `status` and the message meets `condition`."""
    seen: list[str] = []

    def answered() -> bool:
        found = probe(process, path)
        if found is None:
            return process.process.poll() is not None
        seen.append(str(found[1]["message"]))
        return found[0] == status and condition(seen[-1])

    wait_for(answered, f"{path} answering {status}", timeout)
    assert process.process.poll() is None, process.output()[-3000:]
    return seen[-1]


def log_lines(process: ConnectorProcess, text: str) -> list[str]:
    return [line for line in process.output().splitlines() if text in line]


def test_run_with_kafka_unreachable_is_not_ready_says_why_once_and_stays_alive(
    simulator: SimulatorHandle, console: Console
) -> None:
    nowhere = f"127.0.0.1:{free_port()}"
    run = console.start("run", env=environ(nowhere, simulator))
    message = wait_for_probe(run, "/readyz", 503, lambda m: "Kafka unreachable" in m)
    for role in ("uploader", "poller"):
        assert f"{role} NOT ready: Kafka unreachable for" in message
    assert f"no broker reachable at {nowhere}" in message
    assert "Connection refused" in message
    assert "check KAFKA_BOOTSTRAP_SERVERS" in message
    run.wait_for_output("kafka: starting -> down")
    # By now librdkafka has failed to connect hundreds of times: none of it is logged.
    assert log_lines(run, "kafka: ") == [log_lines(run, "kafka: starting -> down")[0]]
    assert log_lines(run, "FAIL [rdkafka") == []
    assert len(run.output().splitlines()) < 10, run.output()
    status, _ = probe(run, "/healthz") or (0, {})
    assert status == 200, "an unreachable dependency is no reason to restart the process"
    run.interrupt()
    assert run.exit_code() == 0


@pytest.mark.slow
def test_a_kafka_outage_is_one_line_when_it_begins_and_one_when_it_ends(
    kafka_broker: ControllableBroker,
    simulator: SimulatorHandle,
    new_topic: NewTopic,
    console: Console,
) -> None:
    if not kafka_broker.supports(Capability.PROCESS_CONTROL):
        require(kafka_broker, Capability.FAULT_INJECTION)
    run = console.start("run", env=environ(kafka_broker, simulator, new_topic))
    wait_for_probe(run, "/readyz", 200)
    cluster_down(kafka_broker)
    try:
        message = wait_for_probe(run, "/readyz", 503, lambda m: "Kafka unreachable" in m)
        assert f"no broker reachable at {kafka_broker.bootstrap_servers}" in message
    finally:
        cluster_up(kafka_broker)  # the fixture brings a stopped process back, not a mock's
    wait_for_probe(run, "/readyz", 200)
    assert [
        line.split(": kafka: ")[1][:12] for line in log_lines(run, "connector.state: kafka: ")
    ] == [
        "up -> down (",
        "down -> up (",
    ]
    assert log_lines(run, "FAIL [rdkafka") == []
    run.interrupt()
    assert run.exit_code() == 0


MOCK_BROKER_IDS = (1, 2, 3)


def cluster_down(broker: ControllableBroker) -> None:
    """Every broker stops answering: the process of real Kafka, the mock's brokers one by one."""
    if broker.supports(Capability.PROCESS_CONTROL):
        broker.stop()
    else:
        for broker_id in MOCK_BROKER_IDS:
            broker.broker_down(broker_id)


def cluster_up(broker: ControllableBroker) -> None:
    if broker.supports(Capability.PROCESS_CONTROL):
        broker.ensure_running()
    else:
        for broker_id in MOCK_BROKER_IDS:
            broker.broker_up(broker_id)


def test_poll_with_a_missing_state_topic_is_not_ready_and_does_not_create_it(
    kafka_broker: ControllableBroker,
    simulator: SimulatorHandle,
    new_topic: NewTopic,
    console: Console,
) -> None:
    env = environ(kafka_broker, simulator, new_topic)
    missing = env["CONNECTOR_STATE_TOPIC"] = unique_name("no-state")
    poll = console.start("poll", env=env)
    message = wait_for_probe(poll, "/readyz", 503, lambda m: "does not exist" in m)
    assert message.startswith(
        f"poller NOT ready: compacted topic {missing} (CONNECTOR_STATE_TOPIC) does not exist"
    )
    assert "check --create-topics" in message
    assert len(log_lines(poll, f"WARNING connector.kafka.topic_watch: compacted topic {missing}"))
    assert missing not in existing_topics(kafka_broker.bootstrap_servers)
    poll.interrupt()
    assert poll.exit_code() == 0


def test_upload_with_a_missing_input_topic_is_not_ready_and_names_the_setting(
    kafka_broker: ControllableBroker,
    simulator: SimulatorHandle,
    new_topic: NewTopic,
    console: Console,
) -> None:
    env = environ(kafka_broker, simulator, new_topic)
    missing = env["CONNECTOR_INPUT_TOPIC"] = unique_name("no-input")
    upload = console.start("upload", env=env)
    message = wait_for_probe(upload, "/readyz", 503, lambda m: "does not exist" in m)
    assert message.startswith(
        f"uploader NOT ready: topic {missing} (CONNECTOR_INPUT_TOPIC) does not exist: create it"
    )
    upload.interrupt()
    assert upload.exit_code() == 0


def test_poll_with_a_state_topic_that_is_not_compacted_says_so_at_startup_and_in_readiness(
    kafka_broker: ControllableBroker,
    simulator: SimulatorHandle,
    new_topic: NewTopic,
    console: Console,
) -> None:
    require(kafka_broker, Capability.ADMIN_CREATE_TOPICS)  # the mock has no DescribeConfigs
    env = environ(kafka_broker, simulator, new_topic)
    plain = env["CONNECTOR_STATE_TOPIC"] = new_topic(1, prefix="plain-state")
    poll = console.start("poll", env=env)
    message = wait_for_probe(poll, "/readyz", 503, lambda m: "not compacted" in m)
    expected = (
        f"topic {plain} (CONNECTOR_STATE_TOPIC) is not compacted (cleanup.policy=delete): it "
        "grows with every cursor record, and a take-over, which reads it whole, will eventually "
        "time out; set cleanup.policy=compact on it"
    )
    assert message.startswith(f"poller NOT ready: {expected}")
    assert len(log_lines(poll, f"WARNING connector.kafka.topic_watch: {expected}")) == 1
    poll.interrupt()
    assert poll.exit_code() == 0


def test_the_topic_watch_sees_a_missing_topic_created_and_says_so(
    kafka_broker: ControllableBroker, caplog: pytest.LogCaptureFixture
) -> None:
    topic = unique_name("late-topic")
    watch = TopicWatch(
        {"bootstrap.servers": kafka_broker.bootstrap_servers},
        [TopicNeed(topic, "CONNECTOR_OUTPUT_TOPIC")],
    )
    caplog.set_level("INFO", logger="connector.kafka.topic_watch")
    assert watch.check()
    assert watch.problems([topic]) == [
        f"topic {topic} (CONNECTOR_OUTPUT_TOPIC) does not exist: create it (toloka-connector "
        "check --create-topics creates the connector's topics)"
    ]
    assert watch.check()
    kafka_broker.create_topics([TopicSpec(topic)])
    assert watch.check()
    assert watch.problems([topic]) == []
    assert [r.levelname for r in caplog.records] == ["WARNING", "INFO"], "one line per change"


def test_poll_with_a_project_the_api_does_not_know_exits_1_and_writes_nothing(
    kafka_broker: ControllableBroker,
    simulator: SimulatorHandle,
    new_topic: NewTopic,
    read_topic: ReadTopic,
    console: Console,
) -> None:
    env = {**environ(kafka_broker, simulator, new_topic), "TOLOKA_APP_PROJECT_ID": "no-such"}
    poll = console.start("poll", env=env)
    assert poll.exit_code() == 1
    last = poll.output().strip().splitlines()[-1]
    assert last.startswith("toloka-connector poll: poller: the app project or its app does not")
    assert "check TOLOKA_APP_PROJECT_ID and TOLOKA_BASE_URL" in last
    assert read_topic(env["CONNECTOR_STATE_TOPIC"]) == []


def test_liveness_holds_while_the_api_is_down_at_startup(
    kafka_broker: ControllableBroker,
    simulator: SimulatorHandle,
    new_topic: NewTopic,
    console: Console,
) -> None:
    simulator.set_knobs(http_503_ratio=1.0)
    env = {
        **environ(kafka_broker, simulator, new_topic),
        "CONNECTOR_LIVENESS_TIMEOUT_SECONDS": "1",
        "CONNECTOR_DRAIN_TIMEOUT_SECONDS": "0.5",  # liveness must outlast a drain
        "CONNECTOR_API_BACKOFF_BASE_SECONDS": "0.1",
        "CONNECTOR_API_BACKOFF_CAP_SECONDS": "0.2",
    }
    run = console.start("run", env=env)

    def both_waiting_past_the_limit() -> bool:
        found = probe(run, "/healthz")
        assert run.process.poll() is None, run.output()[-3000:]
        roles = {} if found is None else found[1]["roles"]
        return len(roles) == 2 and all(
            role["heartbeat_age_seconds"] > 1.5 for role in roles.values()
        )

    wait_for(both_waiting_past_the_limit, "both loops waiting longer than the liveness limit")
    status, body = probe(run, "/healthz") or (0, {})
    assert status == 200, body
    assert [role["stuck"] for role in body["roles"].values()] == [False, False]
    message = body["message"]
    assert "uploader waiting on the Toloka API (the app's input_spec)" in message
    assert "poller waiting on the Toloka API (the app project)" in message
    ready = wait_for_probe(run, "/readyz", 503)
    assert "uploader NOT ready: reading the app's input_spec from the Toloka API" in ready
    assert "poller NOT ready: reading the app project from the Toloka API" in ready
    simulator.set_knobs(http_503_ratio=0.0)
    wait_for_probe(run, "/readyz", 200)
    run.interrupt()
    assert run.exit_code() == 0


def test_an_uploader_with_records_waiting_and_no_progress_is_not_ready(
    kafka_broker: ControllableBroker,
    simulator: SimulatorHandle,
    new_topic: NewTopic,
    console: Console,
) -> None:
    env = {**environ(kafka_broker, simulator, new_topic), "CONNECTOR_PROGRESS_TIMEOUT_SECONDS": "2"}
    upload = console.start("upload", env=env)
    wait_for_probe(upload, "/readyz", 200)
    simulator.set_knobs(latency=120)  # every bulk request hangs, none fails
    producer = Producer({"bootstrap.servers": kafka_broker.bootstrap_servers})
    for n in range(10):
        producer.produce(env["CONNECTOR_INPUT_TOPIC"], orjson.dumps({"id": str(n), "text": "t"}))
    assert producer.flush(30) == 0
    message = wait_for_probe(upload, "/readyz", 503)
    assert message.startswith("uploader NOT ready: no record uploaded or dead-lettered for ")
    assert "uploads in flight" in message
    upload.kill()


def test_a_leading_poller_whose_listings_fail_is_not_ready_until_one_is_answered(
    kafka_broker: ControllableBroker,
    simulator: SimulatorHandle,
    new_topic: NewTopic,
    console: Console,
) -> None:
    env = {
        **environ(kafka_broker, simulator, new_topic),
        "CONNECTOR_PROGRESS_TIMEOUT_SECONDS": "1",
        "CONNECTOR_API_MAX_ATTEMPTS": "1",
    }
    poll = console.start("poll", env=env)
    wait_for_probe(poll, "/readyz", 200, lambda m: "leader" in m)
    simulator.set_knobs(http_500_ratio=1.0, fault_scope="read")
    message = wait_for_probe(poll, "/readyz", 503)
    assert message.startswith("poller NOT ready: leader; no listing answered for ")
    assert "HTTP 500" in message
    simulator.set_knobs(http_500_ratio=0.0)
    wait_for_probe(poll, "/readyz", 200)
    poll.interrupt()
    assert poll.exit_code() == 0


def retries_seen(process: ConnectorProcess) -> float:
    """Every request the connector tried again, from its own metrics."""
    response = process.get("/metrics")
    if response is None:
        return 0.0
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in response.text.splitlines()
        if line.startswith("toloka_connector_api_retries_total{")
    )


def test_an_api_outage_is_a_few_lines_however_many_requests_fail(
    kafka_broker: ControllableBroker,
    simulator: SimulatorHandle,
    new_topic: NewTopic,
    console: Console,
) -> None:
    """Both roles list and upload through an outage: each failed attempt is DEBUG; the outage is
    said when it begins and ends, and each batch and the listing say their first failure (seen:
    77 WARNING lines a minute, more with more requests in flight)."""
    env = {**environ(kafka_broker, simulator, new_topic), "CONNECTOR_LINGER_MS": "50",
           "CONNECTOR_BATCH_MAX_ITEMS": "5", "CONNECTOR_API_BACKOFF_CAP_SECONDS": "0.2",
           "CONNECTOR_API_BACKOFF_BASE_SECONDS": "0.05"}  # fmt: skip
    run = console.start("run", env=env)
    wait_for_probe(run, "/readyz", 200)
    simulator.set_knobs(http_503_ratio=1.0)
    producer = Producer({"bootstrap.servers": kafka_broker.bootstrap_servers})
    for n in range(40):
        producer.produce(env["CONNECTOR_INPUT_TOPIC"], orjson.dumps({"id": str(n), "text": "t"}))
    assert producer.flush(30) == 0
    before = len(run.output().splitlines())
    wait_for(lambda: retries_seen(run) >= 60, what="60 requests tried again in the outage")
    simulator.set_knobs(http_503_ratio=0.0)
    wait_for_probe(run, "/readyz", 200)
    lines = run.output().splitlines()[before:]
    said = [line for line in lines if " WARNING " in line or " ERROR " in line]
    # The listing's first failure and the first failure of each batch in flight (4 at most by
    # default): a handful, not one per request.
    assert len(said) <= 8, "\n".join(said)
    outage = [line.split(": toloka-api: ")[1][:12] for line in lines if ": toloka-api: " in line]
    assert outage == ["up -> down (", "down -> up ("]
    run.interrupt()
    assert run.exit_code() == 0
