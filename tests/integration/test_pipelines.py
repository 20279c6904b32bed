"""Several app projects in one process (`[[pipelines]]`): on a real broker and the simulator over
TCP, one `run` process serves two projects, and each gets exactly its own items uploaded, its own
records dead-lettered, its own results published, and its own metrics."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from functools import partial
from pathlib import Path

import orjson
import pytest
from confluent_kafka import Producer

from connector.demo.samples import sample_records
from testkit.brokers import ControllableBroker
from testkit.kafka import headers_of
from testkit.leaderships import pipelines_environ
from testkit.processes import ConnectorProcess, toloka_connector
from testkit.waiting import wait_for
from tests.fixtures.brokers import NewTopic, ReadTopic, require
from tests.fixtures.simulator import SimulatorHandle, fresh_project_ids

pytestmark = pytest.mark.integration

PROJECTS = ("texts", "captions")
GOOD = 30
BAD = {"invalid_json": b'{"id": "broken", ', "invalid_item": b'{"id": "no-text", "text": 5}'}


def good_records(project: str) -> list[bytes]:
    return [orjson.dumps({"id": f"{project}-{n}", "text": f"text {n}"}) for n in range(GOOD)]


def holds(read_topic: ReadTopic, topic: str, count: int) -> Callable[[], bool]:
    """Whether `topic` holds at least `count` records (read_committed)."""
    return lambda: len(read_topic(topic)) >= count


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
    simulator_factory: Callable[..., SimulatorHandle],
    new_topic: NewTopic,
    read_topic: ReadTopic,
    tmp_path: Path,
) -> None:
    require(kafka_broker, "transactions")
    projects = fresh_project_ids(*PROJECTS)
    sim = simulator_factory(project_id=projects[0], also_serve=projects[1:], processing_delay=0.2)
    topics = {
        project: {"input": new_topic(2), "output": new_topic(2), "dlq": new_topic(1)}
        for project in projects
    }
    environ = pipelines_environ(
        sim, kafka_broker.bootstrap_servers, new_topic(compacted=True), "pipelines"
    )
    config = pipelines_file(tmp_path / "connector.toml", topics)
    connector = ConnectorProcess(["run", "--config", str(config)], environ, tmp_path / "run.log")
    try:
        producer = Producer({"bootstrap.servers": kafka_broker.bootstrap_servers})
        for project in projects:
            for value in [*good_records(project), *BAD.values()]:
                producer.produce(topics[project]["input"], value=value)
        assert producer.flush(30) == 0
        for project in projects:
            output, dlq = topics[project]["output"], topics[project]["dlq"]
            wait_for(
                holds(read_topic, output, GOOD),
                f"{project}: results",
                90,
                guard=connector.check_alive,
            )
            wait_for(holds(read_topic, dlq, len(BAD)), f"{project}: dead letters", 30)
        wait_for(connector.ready, "readiness", 30)
        # Each project's end-to-end times and outstanding items are its own.
        end_to_end = [
            f'toloka_connector_end_to_end_seconds_count{{app_project="{p}"}} {GOOD}.0'
            for p in projects
        ]
        wait_for(partial(_all_in_metrics, connector, end_to_end), "end-to-end times", 30)
        metrics = connector.get("/metrics")
        readiness = connector.get("/readyz")
    finally:
        exit_code = connector.terminate()
    assert exit_code == 0, connector.log_tail(40)
    for project in projects:
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
    for project in projects:
        assert f'toloka_connector_items_uploaded_total{{app_project="{project}"}} {GOOD}.0' in text
        for reason in BAD:
            line = (
                f'toloka_connector_dead_letters_total{{app_project="{project}",reason="{reason}"}}'
            )
            assert f"{line} 1.0" in text
        assert f'toloka_connector_role_ready{{app_project="{project}",role="uploader"}} 1.0' in text
        assert f'toloka_connector_items_outstanding{{app_project="{project}"}} 0.0' in text
    message = readiness.json()["message"]
    assert all(f"uploader of {p} ready" in message for p in projects), message


def test_check_checks_every_pipelines_topics_and_project(
    kafka_broker: ControllableBroker, simulator: SimulatorHandle, tmp_path: Path
) -> None:
    """Each pipeline's topics are created and checked, each project is looked up: a project the
    API does not know fails the check, naming it."""
    require(kafka_broker, "admin_create_topics")
    prefix = f"check-{uuid.uuid4().hex[:8]}"
    topics = {
        project: {kind: f"{prefix}.{project}.{kind}" for kind in ("input", "output", "dlq")}
        for project in (simulator.project_id, "ghost-project")
    }
    config = pipelines_file(tmp_path / "connector.toml", topics)
    result = toloka_connector(
        "check", "--config", str(config), "--create-topics",
        env={
            "TOLOKA_API_KEY": simulator.api_key,
            "TOLOKA_BASE_URL": simulator.base_url,
            "KAFKA_BOOTSTRAP_SERVERS": kafka_broker.bootstrap_servers,
            "CONNECTOR_STATE_TOPIC": f"{prefix}.state",
            "CONNECTOR_API_MAX_ATTEMPTS": "1",
        },
    )  # fmt: skip
    out = result.stdout
    assert result.returncode == 1, out + result.stderr
    for names in topics.values():
        for topic in names.values():
            assert f"ok    topic {topic}" in out, out
    assert f"ok    app project reachable: {simulator.project_id}" in out, out
    [failed] = [line for line in out.splitlines() if line.startswith("FAIL")]
    assert "app project reachable" in failed
    assert "ghost-project" in failed
    assert "pipeline #2:\n  TOLOKA_APP_PROJECT_ID = ghost-project" in out
    assert "1 check(s) failed" in out


def test_the_demo_runs_two_projects_through_one_process() -> None:
    """`demo --projects 2`: two simulated app projects, one pipeline each with topics of its
    own, every item accounted for in its own project (the demo's own broker)."""
    demo = toloka_connector(
        "demo", "--projects", "2", "--items", "100", "--rate", "0", "--json",
        "--metrics-port", "0", env={}, timeout=180,
    )  # fmt: skip
    assert demo.returncode == 0, demo.stderr[-3000:]
    summary = orjson.loads(demo.stdout)
    assert summary["ok"]
    # The samples are dealt out to the projects in turn.
    samples = sample_records(100, seed=7)
    expected = {
        project: {
            "published": sum(r.expected == "valid" for r in samples[n::2]),
            "dead_letters": sum(r.expected != "valid" for r in samples[n::2]),
        }
        for n, project in enumerate(("demo-project", "demo-project-2"))
    }
    assert summary["by_app_project"] == expected


def test_a_shared_input_topic_is_routed_by_the_app_project_header(
    kafka_broker: ControllableBroker,
    simulator_factory: Callable[..., SimulatorHandle],
    new_topic: NewTopic,
    read_topic: ReadTopic,
    tmp_path: Path,
) -> None:
    """Two pipelines read one input topic (route_by_header): each uploads exactly the records
    whose toloka-app-project-id header names its project; a record without a header naming one
    of them is dead-lettered once, `unrouted`, to the first pipeline's dead-letter topic."""
    require(kafka_broker, "transactions")
    projects = fresh_project_ids(*PROJECTS)
    sim = simulator_factory(project_id=projects[0], also_serve=projects[1:], processing_delay=0.2)
    shared = new_topic(3)
    topics = {
        project: {"input": shared, "output": new_topic(2), "dlq": new_topic(1)}
        for project in projects
    }
    config = pipelines_file(tmp_path / "connector.toml", topics)
    config.write_text(
        config.read_text().replace("[connector]\n", "[connector]\nroute_by_header = true\n")
    )
    environ = pipelines_environ(
        sim, kafka_broker.bootstrap_servers, new_topic(compacted=True), "routing"
    )
    unrouted: list[list[tuple[str, str | bytes | None]]] = [
        [], [("toloka-app-project-id", b"videos")], [("other", b"texts")]
    ]  # fmt: skip
    producer = Producer({"bootstrap.servers": kafka_broker.bootstrap_servers})
    for n in range(GOOD):  # interleaved on every partition
        for project in projects:
            value = orjson.dumps({"id": f"{project}-{n}", "text": f"text {n}"})
            producer.produce(
                shared, value=value, headers=[("toloka-app-project-id", project.encode())]
            )
    for n, headers in enumerate(unrouted):
        producer.produce(
            shared, value=orjson.dumps({"id": f"lost-{n}", "text": "t"}), headers=headers
        )
    assert producer.flush(30) == 0
    connector = ConnectorProcess(["run", "--config", str(config)], environ, tmp_path / "run.log")
    try:
        for project in projects:
            output = topics[project]["output"]
            wait_for(
                holds(read_topic, output, GOOD),
                f"{project}: results",
                90,
                guard=connector.check_alive,
            )
        first_dlq = topics[projects[0]]["dlq"]
        wait_for(holds(read_topic, first_dlq, len(unrouted)), "unrouted dead letters", 30)
        wait_for(connector.ready, "readiness", 30)
    finally:
        exit_code = connector.terminate()
    assert exit_code == 0, connector.log_tail(40)
    for project in projects:
        items = [orjson.loads(r.value() or b"") for r in read_topic(topics[project]["output"])]
        assert sorted(item["input_data"]["id"] for item in items) == sorted(
            f"{project}-{n}" for n in range(GOOD)
        )
        assert {item["app_project_id"] for item in items} == {project}
    dead = read_topic(topics[projects[0]]["dlq"])
    assert sorted(orjson.loads(r.value() or b"")["id"] for r in dead) == [
        f"lost-{n}" for n in range(len(unrouted))
    ]
    assert {headers_of(r)["error-reason"] for r in dead} == {"unrouted"}
    assert read_topic(topics[projects[1]]["dlq"], timeout=2) == []
    # status reads the lag of the pipeline's own group: all of the shared topic done.
    status = toloka_connector(
        "status", "--config", str(config), "--app-project", projects[1], env=environ
    )
    assert status.returncode == 0, status.stderr
    group = f"{environ['CONNECTOR_GROUP_ID']}.{projects[1]}"
    assert f"uploader lag: 0 records on {shared} (group {group})" in status.stdout, status.stdout


def _all_in_metrics(connector: ConnectorProcess, lines: list[str]) -> bool:
    metrics = connector.get("/metrics")
    return metrics is not None and all(line in metrics.text for line in lines)
