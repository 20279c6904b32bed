"""Several app projects in one process (`[[pipelines]]`): on a real broker and the simulator over
TCP, one `run` process serves two projects, and each gets exactly its own items uploaded, its own
records dead-lettered, its own results published, and its own metrics."""

from __future__ import annotations

import uuid
from pathlib import Path

import orjson
import pytest
from confluent_kafka import Producer

from testkit.brokers import ControllableBroker
from testkit.kafka import headers_of
from testkit.processes import ConnectorProcess
from testkit.waiting import wait_for
from tests.fixtures.brokers import NewTopic, ReadTopic, require
from tests.fixtures.simulator import DEFAULT_API_KEY, SimulatorHandle

pytestmark = pytest.mark.integration

PROJECTS = ("texts", "captions")
GOOD = 30
BAD = {"invalid_json": b'{"id": "broken", ', "invalid_item": b'{"id": "no-text", "text": 5}'}


def good_records(project: str) -> list[bytes]:
    return [orjson.dumps({"id": f"{project}-{n}", "text": f"text {n}"}) for n in range(GOOD)]


def pipelines_file(path: Path, topics: dict[str, dict[str, str]]) -> Path:
    tables = [
        "[[pipelines]]\n"
        f'app_project_id = "{project}"\n'
        f'input_topic = "{names["input"]}"\n'
        f'output_topic = "{names["output"]}"\n'
        f'dlq_topic = "{names["dlq"]}"\n'
        f"batch_max_items = {10 + index}\n"
        for index, (project, names) in enumerate(topics.items())
    ]
    path.write_text("[connector]\nlinger_ms = 20\n\n" + "\n".join(tables))
    return path


def test_two_pipelines_in_one_run_process_each_get_exactly_their_own_work(
    kafka_broker: ControllableBroker,
    simulator_factory: object,
    new_topic: NewTopic,
    read_topic: ReadTopic,
    tmp_path: Path,
) -> None:
    require(kafka_broker, "transactions")
    start = simulator_factory
    assert callable(start)
    sim: SimulatorHandle = start(
        project_id=PROJECTS[0], also_serve=PROJECTS[1:], processing_delay=0.2
    )
    topics = {
        project: {"input": new_topic(2), "output": new_topic(2), "dlq": new_topic(1)}
        for project in PROJECTS
    }
    environ = {
        "TOLOKA_API_KEY": DEFAULT_API_KEY,
        "TOLOKA_BASE_URL": sim.base_url,
        "KAFKA_BOOTSTRAP_SERVERS": kafka_broker.bootstrap_servers,
        "CONNECTOR_STATE_TOPIC": new_topic(compacted=True),
        "CONNECTOR_GROUP_ID": f"pipelines-{uuid.uuid4().hex[:8]}",
        "CONNECTOR_LEADER_TIMEOUT_SECONDS": "3",
        "CONNECTOR_POLL_INTERVAL_SECONDS": "0.2",
        "CONNECTOR_IDLE_POLL_INTERVAL_SECONDS": "0.3",
    }
    config = pipelines_file(tmp_path / "connector.toml", topics)
    connector = ConnectorProcess(["run", "--config", str(config)], environ, tmp_path / "run.log")
    try:
        producer = Producer({"bootstrap.servers": kafka_broker.bootstrap_servers})
        for project in PROJECTS:
            for value in [*good_records(project), *BAD.values()]:
                producer.produce(topics[project]["input"], value=value)
        assert producer.flush(30) == 0
        for project in PROJECTS:
            output, dlq = topics[project]["output"], topics[project]["dlq"]
            wait_for(lambda: len(read_topic(output)) >= GOOD, f"{project}: results", 90)  # noqa: B023
            wait_for(lambda: len(read_topic(dlq)) >= len(BAD), f"{project}: dead letters", 30)  # noqa: B023
        wait_for(connector.ready, "readiness", 30)
        metrics = connector.get("/metrics")
        readiness = connector.get("/readyz")
    finally:
        exit_code = connector.terminate()
    assert exit_code == 0, connector.log_tail(40)
    for project in PROJECTS:
        results = read_topic(topics[project]["output"])
        items = [orjson.loads(record.value() or b"") for record in results]
        # Exactly this project's items, each once, created in this project.
        assert sorted(item["input_data"]["id"] for item in items) == sorted(
            f"{project}-{n}" for n in range(GOOD)
        )
        assert {item["app_project_id"] for item in items} == {project}
        assert {headers_of(r)["toloka-app-project-id"] for r in results} == {project}
        dead = read_topic(topics[project]["dlq"])
        assert sorted(headers_of(r)["error-reason"] for r in dead) == sorted(BAD)
        assert {headers_of(r)["source-topic"] for r in dead} == {topics[project]["input"]}
    assert metrics is not None
    assert readiness is not None
    text = metrics.text
    for project in PROJECTS:
        assert f'toloka_connector_items_uploaded_total{{app_project="{project}"}} {GOOD}.0' in text
        for reason in BAD:
            line = (
                f'toloka_connector_dead_letters_total{{app_project="{project}",reason="{reason}"}}'
            )
            assert f"{line} 1.0" in text
        assert f'toloka_connector_role_ready{{app_project="{project}",role="uploader"}} 1.0' in text
    message = readiness.json()["message"]
    assert all(f"uploader of {p} ready" in message for p in PROJECTS), message
