"""Several app projects in one process (`[[pipelines]]`): on a real broker and the simulator over
TCP, one `run` process serves two projects, and each gets exactly its own items uploaded, its own
records dead-lettered, its own results published, and its own metrics."""

from __future__ import annotations

import re
import uuid
from collections import Counter
from collections.abc import Callable, Collection
from functools import partial
from pathlib import Path

import orjson
import pytest
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient

from connector.demo.samples import sample_records
from testkit.brokers import ControllableBroker
from testkit.kafka import headers_of
from testkit.leaderships import pipelines_environ
from testkit.processes import ConnectorProcess, toloka_connector
from testkit.waiting import wait_for
from tests.fixtures.brokers import NewTopic, ReadTopic, require
from tests.fixtures.simulator import SimulatorHandle, fresh_project_ids
from tests.integration.test_uploader import committed, created_keys

pytestmark = pytest.mark.integration

PROJECTS = ("texts", "captions")
GOOD = 30
BAD = {"invalid_json": b'{"id": "broken", ', "invalid_item": b'{"id": "no-text", "text": 5}'}


def good_records(project: str) -> list[bytes]:
    return [orjson.dumps({"id": f"{project}-{n}", "text": f"text {n}"}) for n in range(GOOD)]


def holds(read_topic: ReadTopic, topic: str, count: int) -> Callable[[], bool]:
    """Whether `topic` holds at least `count` records (read_committed)."""
    return lambda: len(read_topic(topic)) >= count


def pipelines_file(
    path: Path, topics: dict[str, dict[str, str]], routed: Collection[str] = ()
) -> Path:
    """One table per project of `topics`; those of `routed` set `route_by_header`."""
    tables = [
        "[[pipelines]]\n"
        f'app_project_id = "{project}"\n'
        f'input_topic = "{names["input"]}"\n'
        f'output_topic = "{names["output"]}"\n'
        f'dlq_topic = "{names["dlq"]}"\n'
        f"batch_max_items = {10 + index}\n"
        + ("route_by_header = true\n" if project in routed else "")
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
    # status reads the lag of the one group: all of the shared topic done.
    status = toloka_connector(
        "status", "--config", str(config), "--app-project", projects[1], env=environ
    )
    assert status.returncode == 0, status.stderr
    group = environ["CONNECTOR_GROUP_ID"]
    assert f"uploader lag: 0 records on {shared} (group {group})" in status.stdout, status.stdout


def _all_in_metrics(connector: ConnectorProcess, lines: list[str]) -> bool:
    metrics = connector.get("/metrics")
    return metrics is not None and all(line in metrics.text for line in lines)


# --- one consumer group: two pipelines routed on a shared topic, one plain -------------------

UNROUTED: list[list[tuple[str, str | bytes | None]]] = [
    [], [("toloka-app-project-id", b"videos")], [("other", b"texts")]
]  # fmt: skip


class SharedTopicDeployment:
    """Pipelines `routed` (two) reading one shared input topic by header, and `plain` reading
    a topic of its own, all in one settings file; records produced by `produce`."""

    def __init__(
        self,
        kafka_broker: ControllableBroker,
        simulator_factory: Callable[..., SimulatorHandle],
        new_topic: NewTopic,
        tmp_path: Path,
    ) -> None:
        *self.routed, self.plain = fresh_project_ids("texts", "captions", "images")
        self.projects = [*self.routed, self.plain]
        self.sim = simulator_factory(
            project_id=self.projects[0], also_serve=self.projects[1:], processing_delay=0.2
        )
        self.bootstrap = kafka_broker.bootstrap_servers
        self.shared = new_topic(3)
        self.topics = {
            project: {
                "input": self.shared if project in self.routed else new_topic(2),
                "output": new_topic(2),
                "dlq": new_topic(1),
            }
            for project in self.projects
        }
        self.config = pipelines_file(tmp_path / "connector.toml", self.topics, self.routed)
        self.environ = pipelines_environ(
            self.sim, self.bootstrap, new_topic(compacted=True), "one-group"
        )
        self.group = self.environ["CONNECTOR_GROUP_ID"]
        self.tmp_path = tmp_path
        self.ends: dict[str, Counter[int]] = {}

    def produce(self, count: int) -> None:
        """`count` records per project (on the shared topic interleaved, on every partition)
        and the unrouted ones."""
        producer = Producer({"bootstrap.servers": self.bootstrap})
        for n in range(count):
            for project in self.projects:
                value = orjson.dumps({"id": f"{project}-{n}", "text": f"text {n}"})
                topic = self.topics[project]["input"]
                partition = n % (3 if topic == self.shared else 2)
                producer.produce(topic, value=value, partition=partition,
                                 headers=[("toloka-app-project-id", project.encode())])  # fmt: skip
                self.ends.setdefault(topic, Counter())[partition] += 1
        for n, unrouted in enumerate(UNROUTED):
            value = orjson.dumps({"id": f"lost-{n}", "text": "t"})
            producer.produce(self.shared, value=value, headers=unrouted, partition=n % 3)
            self.ends[self.shared][n % 3] += 1
        assert producer.flush(30) == 0

    def start(self, name: str, **settings: str) -> ConnectorProcess:
        argv = ["run", "--config", str(self.config)]
        environ = {**self.environ, **settings}
        return ConnectorProcess(argv, environ, self.tmp_path / f"{name}.log")

    def created_once(self, count: int) -> None:
        """Each project holds exactly its `count` items, each once."""
        for project in self.projects:
            created = created_keys(self.sim, project)
            assert created == Counter(f"{project}-{n}" for n in range(count)), project

    def committed_to_the_end(self) -> bool:
        """The one group has committed every input topic to its end."""
        return all(
            committed(self.bootstrap, self.group, topic, len(ends)) == dict(ends)
            for topic, ends in self.ends.items()
        )

    def uploader_groups(self) -> set[str]:
        """The consumer groups on the broker the uploaders of this deployment may read in: the
        one group, and the `<group>.<app project>` of each routed pipeline."""
        admin = AdminClient({"bootstrap.servers": self.bootstrap})
        listed = admin.list_consumer_groups(request_timeout=10).result()
        names = {g.group_id for g in listed.valid}
        return {name for name in names
                if name == self.group or name.startswith(f"{self.group}.")}  # fmt: skip


@pytest.fixture
def deployment(
    kafka_broker: ControllableBroker,
    simulator_factory: Callable[..., SimulatorHandle],
    new_topic: NewTopic,
    tmp_path: Path,
) -> SharedTopicDeployment:
    require(kafka_broker, "transactions")
    return SharedTopicDeployment(kafka_broker, simulator_factory, new_topic, tmp_path)


def test_one_consumer_group_reads_every_input_topic_and_a_shared_topic_once(
    deployment: SharedTopicDeployment, read_topic: ReadTopic
) -> None:
    """Two pipelines routed on a shared topic and a plain one in one process: one consumer
    group (CONNECTOR_GROUP_ID) reads every input topic, each record is uploaded once to its
    project, the unrouted ones are dead-lettered once, and the group's offsets reach the end of
    every topic."""
    deployment.produce(GOOD)
    connector = deployment.start("run")
    try:
        wait_for(deployment.committed_to_the_end, "the group committed every topic to its end",
                 90, guard=connector.check_alive)  # fmt: skip
        wait_for(connector.ready, "readiness", 30)
        groups = deployment.uploader_groups()
        metrics = connector.get("/metrics")
    finally:
        exit_code = connector.terminate()
    assert exit_code == 0, connector.log_tail(40)
    assert groups == {deployment.group}
    deployment.created_once(GOOD)
    first_dlq, *others = (deployment.topics[p]["dlq"] for p in deployment.projects)
    dead = read_topic(first_dlq)
    assert sorted(orjson.loads(r.value() or b"")["id"] for r in dead) == [
        f"lost-{n}" for n in range(len(UNROUTED))
    ]
    assert {headers_of(r)["error-reason"] for r in dead} == {"unrouted"}
    assert all(read_topic(dlq, timeout=2) == [] for dlq in others)
    assert metrics is not None
    for project in deployment.projects:  # the unrouted records are the first pipeline's
        consumed = GOOD + (len(UNROUTED) if project == deployment.projects[0] else 0)
        line = f'toloka_connector_records_consumed_total{{app_project="{project}"}}'
        assert f"{line} {consumed}.0" in metrics.text


def assigned_partitions(connector: ConnectorProcess) -> int:
    """The input partitions the process's uploaders say they own (a shared topic's once per
    pipeline reading it), from /readyz."""
    readiness = connector.get("/readyz")
    message = "" if readiness is None else readiness.json()["message"]
    return sum(int(n) for n in re.findall(r"(\d+) input partitions assigned", message))


@pytest.mark.slow
def test_a_killed_process_loses_and_repeats_nothing_and_two_processes_share_the_partitions(
    deployment: SharedTopicDeployment, kafka_broker: ControllableBroker
) -> None:
    """kill -9 of the one process with uploads under way and nothing committed since: two
    processes started then share the one group's partitions and upload every item of every
    project once (what the killed one sent is reconciled through the upload intents)."""
    require(kafka_broker, "evicts_killed_members")
    count = 300
    deployment.produce(count)
    # The killed member must leave the group soon: with the default 45 s session the two new
    # members wait that long for the group to rebalance without it.
    evicted_soon = {"KAFKA_SESSION_TIMEOUT_MS": "6000", "KAFKA_HEARTBEAT_INTERVAL_MS": "500"}
    first = deployment.start("first", CONNECTOR_COMMIT_INTERVAL_MS="3600000", **evicted_soon)
    wait_for(lambda: deployment.sim.stats()["items_created"] >= 150, "uploads under way",
             guard=first.check_alive)  # fmt: skip
    first.kill()
    created_at_kill = deployment.sim.stats()["items_created"]
    committed_at_kill = sum(
        max(offset, 0)
        for topic, ends in deployment.ends.items()
        for offset in committed(deployment.bootstrap, deployment.group, topic, len(ends)).values()
    )
    assert created_at_kill > committed_at_kill, "nothing uncommitted at the kill: proves nothing"
    second, third = (deployment.start(name, **evicted_soon) for name in ("second", "third"))
    try:
        for connector in (second, third):
            owned = partial(assigned_partitions, connector)  # a count: 0 is falsy
            wait_for(owned, f"{connector} owns input partitions", 60, guard=connector.check_alive)
        wait_for(deployment.committed_to_the_end, "the group committed every topic to its end",
                 120, guard=second.check_alive)  # fmt: skip
    finally:
        exits = [second.terminate(), third.terminate()]
    assert exits == [0, 0], second.log_tail(20) + third.log_tail(20)
    deployment.created_once(count)


def test_the_first_start_after_the_upgrade_continues_from_each_pipelines_old_group(
    deployment: SharedTopicDeployment,
) -> None:
    """An earlier version read each routed pipeline's topic in `<group>.<app project>`: the one
    group starts from those groups' offsets, and each pipeline uploads only what its old group
    had not passed yet, once; the old groups are left as they were."""
    deployment.produce(GOOD)
    texts, captions = deployment.routed
    # Each shared partition holds texts-n, captions-n, … for n = p, p + 3, …, then unrouted.
    old = {texts: 10, captions: 4}  # texts-n for n < 15, captions-n for n < 6 were done
    for project, offset in old.items():
        consumer = Consumer({"bootstrap.servers": deployment.bootstrap,
                             "group.id": f"{deployment.group}.{project}"})  # fmt: skip
        try:
            consumer.commit(offsets=[TopicPartition(deployment.shared, p, offset)
                                     for p in range(3)], asynchronous=False)  # fmt: skip
        finally:
            consumer.close()
    connector = deployment.start("run")
    try:
        wait_for(deployment.committed_to_the_end, "the group committed every topic to its end",
                 90, guard=connector.check_alive)  # fmt: skip
    finally:
        exit_code = connector.terminate()
    assert exit_code == 0, connector.log_tail(40)
    expected = {texts: range(15, GOOD), captions: range(6, GOOD), deployment.plain: range(GOOD)}
    for project, numbers in expected.items():
        created = created_keys(deployment.sim, project)
        assert created == Counter(f"{project}-{n}" for n in numbers), project
    for project, offset in old.items():
        group = f"{deployment.group}.{project}"
        assert committed(deployment.bootstrap, group, deployment.shared, 3) == dict.fromkeys(
            range(3), offset
        )
    assert any(connector.lines("start from the offsets of the groups an earlier version"))
