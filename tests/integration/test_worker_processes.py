"""`--workers N`: N uploader processes of one group under one `run`, with one metrics endpoint,
against the session's broker and the simulator over TCP.

What an operator relies on: every record is uploaded exactly once with both processes holding
partitions; the parent's /metrics adds the processes up; SIGTERM to the parent drains and
commits in every process; a worker killed with SIGKILL ends the run with exit 1 naming it; a
parent killed with SIGKILL leaves no worker behind (the worker drains and exits).
"""

from __future__ import annotations

import os
import re
import signal
from pathlib import Path

import orjson
import pytest
from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient
from prometheus_client.parser import text_string_to_metric_families

from connector.devtools.brokers.base import Capability
from testkit.brokers import ControllableBroker
from testkit.kafka import high_watermarks, unique_name
from testkit.processes import ConnectorProcess
from testkit.waiting import wait_for
from tests.fixtures.brokers import NewTopic, require
from tests.fixtures.console import Console
from tests.fixtures.simulator import SimulatorHandle

pytestmark = pytest.mark.integration

PARTITIONS = 4
RECORDS = 400


class Deployment:
    """One pipeline's topics and settings for `run --workers N`."""

    def __init__(
        self, broker: ControllableBroker, simulator: SimulatorHandle, new_topic: NewTopic
    ) -> None:
        self.bootstrap = broker.bootstrap_servers
        self.simulator = simulator
        self.input = new_topic(PARTITIONS, prefix="workers-in")
        self.group = unique_name("workers")
        self.env = {
            "TOLOKA_API_KEY": simulator.api_key,
            "TOLOKA_BASE_URL": simulator.base_url,
            "TOLOKA_APP_PROJECT_ID": simulator.project_id,
            "KAFKA_BOOTSTRAP_SERVERS": self.bootstrap,
            "CONNECTOR_INPUT_TOPIC": self.input,
            "CONNECTOR_OUTPUT_TOPIC": new_topic(1, prefix="workers-out"),
            "CONNECTOR_DLQ_TOPIC": new_topic(1, prefix="workers-dlq"),
            "CONNECTOR_STATE_TOPIC": new_topic(1, compacted=True, prefix="workers-state"),
            "CONNECTOR_GROUP_ID": self.group,
            "CONNECTOR_LEADER_TIMEOUT_SECONDS": "3",
            "CONNECTOR_IDLE_POLL_INTERVAL_SECONDS": "0.3",
        }

    def produce(self, count: int) -> None:
        """Items item-0 … item-(count-1), spread evenly over the partitions."""
        producer = Producer({"bootstrap.servers": self.bootstrap, "enable.idempotence": True})
        for i in range(count):
            value = orjson.dumps({"id": f"item-{i}", "text": f"text {i}"})
            producer.produce(self.input, value=value, partition=i % PARTITIONS)
            producer.poll(0)
        assert producer.flush(30) == 0

    def members_partitions(self) -> list[set[int]]:
        """The input partitions each member of the group holds ([] before the group forms)."""
        admin = AdminClient({"bootstrap.servers": self.bootstrap})
        try:
            group = admin.describe_consumer_groups([self.group], request_timeout=5)[self.group]
            members = group.result().members
        except KafkaException:
            return []
        return [
            {tp.partition for tp in member.assignment.topic_partitions if tp.topic == self.input}
            for member in members
            if member.assignment is not None
        ]

    def committed(self) -> dict[int, int]:
        consumer = Consumer({"bootstrap.servers": self.bootstrap, "group.id": self.group})
        try:
            partitions = [TopicPartition(self.input, p) for p in range(PARTITIONS)]
            return {tp.partition: tp.offset for tp in consumer.committed(partitions, timeout=10)}
        finally:
            consumer.close()


def metric(process: ConnectorProcess, name: str) -> float | None:
    """The value of sample `name` on the process's /metrics (None before it answers)."""
    response = process.get("/metrics")
    if response is None or response.status_code != 200:
        return None
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            if sample.name == name:
                return sample.value
    return None


def worker_pid(process: ConnectorProcess) -> int:
    """The pid of worker 2, from the line the parent logs when it starts it."""
    process.wait_for_output("uploader worker 2 started (pid ")
    found = re.search(r"uploader worker 2 started \(pid (\d+)\)", process.output())
    assert found is not None
    return int(found.group(1))


def gone(pid: int) -> bool:
    """No such process, or only its exit status is left (a zombie nobody reaped yet)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return True
    return stat.rsplit(")", 1)[1].split()[0] == "Z"


@pytest.fixture
def deployment(
    kafka_broker: ControllableBroker, simulator: SimulatorHandle, new_topic: NewTopic
) -> Deployment:
    return Deployment(kafka_broker, simulator, new_topic)


def test_two_uploader_processes_share_the_partitions_upload_once_and_drain(
    kafka_broker: ControllableBroker, deployment: Deployment, console: Console
) -> None:
    require(kafka_broker, Capability.TRANSACTIONS)  # `run` leads a poller
    require(kafka_broker, Capability.COOPERATIVE_REBALANCING)
    process = console.start("run", "--workers", "2", env=deployment.env)
    pid = worker_pid(process)
    # The settings reach the worker over a pipe: no secret on its command line.
    assert deployment.simulator.api_key not in Path(f"/proc/{pid}/cmdline").read_text()

    def both_hold_partitions() -> list[set[int]] | None:
        process.check_alive()
        held = deployment.members_partitions()
        return held if len(held) == 2 and all(held) else None

    held = wait_for(both_hold_partitions, "two group members holding input partitions", 90)
    assert set().union(*held) == set(range(PARTITIONS))
    shares = sorted(sorted(partitions) for partitions in held)
    deployment.produce(RECORDS)

    consumed = "toloka_connector_records_consumed_total"
    wait_for(lambda: metric(process, consumed) == RECORDS,
             f"the parent's /metrics to count {RECORDS} records consumed", 90,
             guard=process.check_alive)  # fmt: skip
    # Each process read only its own partitions (the same shares as before: no rebalance gave
    # one process everything), so the parent's figure is their sum.
    assert sorted(sorted(partitions) for partitions in deployment.members_partitions()) == shares
    assert metric(process, "toloka_connector_items_uploaded_total") == RECORDS
    wait_for(process.ready, "/readyz to say every process is ready", 30)
    readiness = process.get("/readyz")
    assert readiness is not None
    assert readiness.json()["roles"]["uploader worker 2"]["ready"]

    stats = deployment.simulator.stats()
    assert stats["items_created"] == RECORDS
    assert deployment.simulator.duplicates() == {}

    assert process.terminate() == 0, process.log_tail(40)
    assert gone(pid)
    assert "uploader worker 2 stopped cleanly" in process.output()
    assert deployment.simulator.api_key not in process.output()
    # Every process committed what it did before it exited.
    assert deployment.committed() == high_watermarks(deployment.bootstrap, deployment.input)


def test_a_worker_killed_with_sigkill_ends_the_run_with_exit_1_naming_it(
    kafka_broker: ControllableBroker, deployment: Deployment, console: Console
) -> None:
    process = console.start("upload", "--workers", "2", env=deployment.env)
    pid = worker_pid(process)
    process.wait_for_output("uploader worker 2 starting")
    os.kill(pid, signal.SIGKILL)
    assert process.exit_code() == 1
    last = process.output().strip().splitlines()[-1]
    assert last == "toloka-connector upload: uploader worker 2: was killed by SIGKILL", last


def test_a_parent_killed_with_sigkill_leaves_no_worker_behind(
    kafka_broker: ControllableBroker, deployment: Deployment, console: Console
) -> None:
    process = console.start("upload", "--workers", "2", env=deployment.env)
    pid = worker_pid(process)
    process.wait_for_output("uploader worker 2 starting")
    os.kill(process.pid, signal.SIGKILL)  # the parent alone, not its process group
    process.process.wait(30)
    wait_for(lambda: gone(pid), f"worker pid {pid} to exit after its parent died", 60)
    assert "the parent process is gone: draining and stopping" in process.output()
    assert "uploader worker 2 stopped cleanly" in process.output()


def test_ctrl_c_in_a_terminal_drains_every_process_and_exits_0(
    kafka_broker: ControllableBroker, deployment: Deployment, console: Console
) -> None:
    """SIGINT reaches the parent and the worker at once (a terminal signals the whole group)."""
    process = console.start("upload", "--workers", "2", env=deployment.env)
    pid = worker_pid(process)
    process.wait_for_output("uploader worker 2 starting")
    process.interrupt(group=True)
    assert process.exit_code() == 0, process.log_tail(40)
    assert gone(pid)
    assert "uploader worker 2 stopped cleanly" in process.output()


def test_a_worker_sent_sigterm_alone_drains_and_the_run_ends_cleanly(
    kafka_broker: ControllableBroker, deployment: Deployment, console: Console
) -> None:
    """SIGTERM asks for a drain wherever it comes from: the run stops, with exit 0."""
    process = console.start("upload", "--workers", "2", env=deployment.env)
    pid = worker_pid(process)
    process.wait_for_output("uploader worker 2 starting")
    os.kill(pid, signal.SIGTERM)
    assert process.exit_code() == 0, process.log_tail(40)
    assert "uploader worker 2 stopped cleanly" in process.output()
