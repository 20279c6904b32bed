"""Ctrl-C and unreachable brokers, as a user meets them: the console script in a process of its
own, SIGINT sent at a point the test waits for (a connection accepted, a line printed, a record
arrived), never after a sleep.

The contract: a one-shot command interrupted by SIGINT says what it had done and exits 130; the
servers (`run`, `upload`, `poll`, `simulator`, `embedded-kafka`) exit 0 on SIGINT.
"""

from __future__ import annotations

import re
import socket
import threading
from collections.abc import Iterator

import orjson
import pytest
from confluent_kafka import Consumer, Producer, TopicPartition

from connector.devtools.processes import free_port, port_accepts
from connector.poller import read_cursor
from testkit.brokers import ControllableBroker
from testkit.kafka import headers_of, unique_name
from testkit.processes import ConnectorProcess
from testkit.waiting import wait_for
from tests.fixtures.brokers import NewTopic, ReadTopic
from tests.fixtures.console import Console
from tests.fixtures.simulator import SimulatorHandle

pytestmark = pytest.mark.integration

INTERRUPTED = 130
PROMPT_EXIT_SECONDS = 10.0
"""A command ends this soon after Ctrl-C (its blocking Kafka calls are made in 1 s steps)."""


class SilentBroker:
    """A TCP port that accepts connections and never answers: a Kafka client waits on it."""

    def __init__(self) -> None:
        self._socket = socket.create_server(("127.0.0.1", 0))
        self.address = f"127.0.0.1:{self._socket.getsockname()[1]}"
        self.accepted: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                connection, _ = self._socket.accept()
            except OSError:
                return
            self.accepted.append(connection)

    def close(self) -> None:
        self._socket.close()
        for connection in self.accepted:
            connection.close()


@pytest.fixture
def silent_broker() -> Iterator[SilentBroker]:
    broker = SilentBroker()
    yield broker
    broker.close()


def settings_env(bootstrap: str, **more: str) -> dict[str, str]:
    return {
        "KAFKA_BOOTSTRAP_SERVERS": bootstrap,
        "TOLOKA_API_KEY": "key-for-commands-that-load-every-setting",
        "TOLOKA_APP_PROJECT_ID": "interrupts",
        **more,
    }


def interrupted_while_waiting_on(
    console: Console, silent_broker: SilentBroker, *argv: str
) -> ConnectorProcess:
    process = console.start(*argv, env=settings_env(silent_broker.address))
    wait_for(lambda: silent_broker.accepted, f"{argv[0]} connecting to Kafka", 30)
    process.interrupt()
    assert process.exit_code(PROMPT_EXIT_SECONDS) == INTERRUPTED, process.output()
    return process


def test_an_interrupted_status_exits_130_saying_nothing_changed(
    console: Console, silent_broker: SilentBroker
) -> None:
    status = interrupted_while_waiting_on(console, silent_broker, "status")
    assert status.output().strip().splitlines()[-1] == (
        "status: interrupted before it could report (it only reads: nothing was changed)"
    )


def test_an_interrupted_check_exits_130_saying_what_it_checked(
    console: Console, silent_broker: SilentBroker
) -> None:
    check = interrupted_while_waiting_on(console, silent_broker, "check")
    assert check.output().strip().splitlines()[-1] == (
        "interrupted: 0 check(s) done (above), the others not run"
    )


def test_tail_against_an_unreachable_broker_is_one_line_and_exit_1(console: Console) -> None:
    nowhere = f"127.0.0.1:{free_port()}"
    result = console.run("tail", "toloka.results", env=settings_env(nowhere), timeout=60)
    assert result.returncode == 1
    assert result.stdout == ""
    [line] = result.stderr.splitlines()
    assert line.startswith(f"toloka-connector tail: cannot reach Kafka at {nowhere} within 10s (")
    assert line.endswith("check KAFKA_BOOTSTRAP_SERVERS (and KAFKA_SECURITY_PROTOCOL, "
                         "KAFKA_SASL_*, KAFKA_SSL_* where the cluster needs them)")  # fmt: skip


def test_an_interrupted_tail_exits_130_saying_how_many_records_it_printed(
    kafka_broker: ControllableBroker, new_topic: NewTopic, console: Console
) -> None:
    topic = new_topic(2)
    producer = Producer({"bootstrap.servers": kafka_broker.bootstrap_servers})
    for n in range(3):
        producer.produce(topic, orjson.dumps({"n": n}), partition=n % 2)
    assert producer.flush(30) == 0
    tail = console.start(
        "tail", topic, "--follow", env=settings_env(kafka_broker.bootstrap_servers)
    )
    wait_for(lambda: tail.output().count('"topic"') == 3, "three records printed", 30)
    tail.interrupt()
    assert tail.exit_code(PROMPT_EXIT_SECONDS) == INTERRUPTED
    assert tail.output().strip().splitlines()[-1] == "tail: interrupted after 3 record(s)"


DEAD_LETTERS = 100_000


def test_an_interrupted_replay_says_exactly_what_it_replayed_and_where_to_go_on(
    kafka_broker: ControllableBroker, new_topic: NewTopic, read_topic: ReadTopic, console: Console
) -> None:
    dlq, input_topic = new_topic(1, prefix="replay-dlq"), new_topic(3, prefix="replay-in")
    producer = Producer({"bootstrap.servers": kafka_broker.bootstrap_servers, "linger.ms": 50})
    for n in range(DEAD_LETTERS):
        producer.produce(dlq, b'{"text": "t"}', f"k{n}".encode(),
                         headers=[("error-reason", b"rejected")])  # fmt: skip
        producer.poll(0)
    assert producer.flush(60) == 0
    env = settings_env(
        kafka_broker.bootstrap_servers, CONNECTOR_DLQ_TOPIC=dlq, CONNECTOR_INPUT_TOPIC=input_topic
    )
    replay = console.start("replay-dlq", env=env)
    wait_for(lambda: records_in(kafka_broker, input_topic) > 0, "the first replayed record", 60)
    replay.interrupt()
    assert replay.exit_code(PROMPT_EXIT_SECONDS) == INTERRUPTED, replay.output()
    said = re.search(r"interrupted: replayed (\d+) record\(s\) before it stopped", replay.output())
    assert said is not None, replay.output()
    replayed = int(said[1])
    assert 0 < replayed < DEAD_LETTERS, "interrupted in the middle"
    assert len(read_topic(input_topic)) == replayed, "what it says is what it did"
    assert f"to continue where it stopped: replay-dlq --from-offset {replayed}" in replay.output()

    rest = console.run("replay-dlq", "--from-offset", str(replayed), env=env, timeout=300)
    assert rest.returncode == 0, rest.stderr
    origins = sorted(
        int(headers_of(record)["replayed-from"].rsplit("/", 1)[1])
        for record in read_topic(input_topic, timeout=120)
    )
    assert origins == list(range(DEAD_LETTERS)), "every dead letter replayed exactly once"


def records_in(broker: ControllableBroker, topic: str) -> int:
    consumer = Consumer({"bootstrap.servers": broker.bootstrap_servers, "group.id": unique_name()})
    try:
        partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        return sum(
            consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1]
            for p in partitions
        )
    finally:
        consumer.close()


def test_an_interrupted_reset_cursor_says_the_cursor_was_not_changed(
    kafka_broker: ControllableBroker,
    simulator: SimulatorHandle,
    new_topic: NewTopic,
    console: Console,
) -> None:
    state = new_topic(compacted=True, prefix="reset-state")
    simulator.set_knobs(latency=60)  # the item lookup of --to-item hangs
    env = {
        **settings_env(kafka_broker.bootstrap_servers, CONNECTOR_STATE_TOPIC=state),
        "TOLOKA_API_KEY": simulator.api_key,
        "TOLOKA_BASE_URL": simulator.base_url,
        "TOLOKA_APP_PROJECT_ID": simulator.project_id,
    }
    reset = console.start("reset-cursor", "--to-item", "some-item", "--force", env=env)
    reset.wait_for_output("current cursor: none")
    reset.interrupt()
    assert reset.exit_code(PROMPT_EXIT_SECONDS) == INTERRUPTED
    assert reset.output().strip().splitlines()[-1] == (
        "reset-cursor: interrupted before writing: the cursor was not changed"
    )
    config = {"bootstrap.servers": kafka_broker.bootstrap_servers}
    assert read_cursor(config, state, simulator.project_id) is None


def test_an_interrupted_produce_samples_says_how_many_it_produced(
    kafka_broker: ControllableBroker, new_topic: NewTopic, read_topic: ReadTopic, console: Console
) -> None:
    topic = new_topic(2, prefix="samples")
    env = settings_env(kafka_broker.bootstrap_servers, CONNECTOR_INPUT_TOPIC=topic)
    produce = console.start("produce-samples", "--count", "1000", "--rate", "50", env=env)
    wait_for(lambda: records_in(kafka_broker, topic) > 0, "the first sample", 30)
    produce.interrupt()
    assert produce.exit_code(PROMPT_EXIT_SECONDS) == INTERRUPTED
    said = re.search(r"interrupted: (\d+) of 1000 record\(s\) produced", produce.output())
    assert said is not None, produce.output()
    assert int(said[1]) == len(read_topic(topic)) > 0


def test_produce_samples_puts_items_the_simulator_app_takes_and_a_few_malformed_ones(
    kafka_broker: ControllableBroker, new_topic: NewTopic, read_topic: ReadTopic, console: Console
) -> None:
    topic = new_topic(2, prefix="samples")
    env = settings_env(kafka_broker.bootstrap_servers, CONNECTOR_INPUT_TOPIC=topic)
    result = console.run("produce-samples", "--count", "300", "--prefix", "s", env=env)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"produced 300 record(s) to {topic} at ")
    assert "(3 malformed on purpose: 1 invalid_item, 1 invalid_json, 1 not_an_object)" in (
        result.stdout
    )
    values = [record.value() or b"" for record in read_topic(topic)]
    items = [orjson.loads(v) for v in values if v.startswith(b'{"id":"s-')]
    assert len(items) == 297
    assert all(set(item) == {"id", "text"} and item["text"] for item in items)
    missing = console.run(
        "produce-samples", env={**env, "CONNECTOR_INPUT_TOPIC": unique_name("nope")}
    )
    assert missing.returncode == 1
    assert missing.stderr.endswith("does not exist\n"), "a producer would have created it"


def test_ctrl_c_stops_the_demo_in_order_says_what_it_did_and_exits_130(console: Console) -> None:
    demo = console.start("demo", "--items", "5000", "--rate", "200", "--metrics-port", "0")
    demo.wait_for_output("] produced ")
    where = re.search(r"broker (\S+), simulator (\S+), metrics", demo.output())
    assert where is not None
    demo.interrupt(group=True)  # a terminal's Ctrl-C reaches the whole process group
    assert demo.exit_code(30) == INTERRUPTED, demo.output()[-3000:]
    output = demo.output()
    assert "verdict             interrupted (Ctrl-C): the counts above are what was done" in output
    counted = re.search(r"produced\s+(\d+) of 5000 items \((\d+) valid, (\d+) malformed\)", output)
    assert counted is not None
    assert 0 < int(counted[1]) == int(counted[2]) + int(counted[3]) < 5000
    assert len(output.splitlines()) < 40, "no flood of warnings while it stops"
    broker_port = int(where[1].split(",")[0].rsplit(":", 1)[1])
    simulator_port = int(where[2].split(":")[2].split("/")[0])
    assert not port_accepts(broker_port), "the demo stopped its broker"
    assert not port_accepts(simulator_port), "the demo stopped its simulator"


def test_a_demo_that_times_out_counts_only_what_it_produced(console: Console) -> None:
    result = console.run(
        "demo", "--items", "1000", "--rate", "100", "--timeout", "2", "--json", "--metrics-port",
        "0", timeout=120,
    )  # fmt: skip
    assert result.returncode == 1, "not every item was accounted for"
    summary = orjson.loads(result.stdout)
    assert summary["ok"] is False
    assert summary["interrupted"] is False
    assert 0 < summary["produced"] < summary["items"] == 1000
    assert summary["produced_malformed"] >= 0
    assert summary["produced_valid"] + summary["produced_malformed"] == summary["produced"]
    assert summary["produced_malformed"] == sum(summary["expected_dead_letters_by_reason"].values())


@pytest.mark.parametrize(
    ("argv", "ready_line"),
    [
        (("simulator", "--port", "0"), "/api/app/v0"),
        (("embedded-kafka", "--kind", "mock"), "broker running"),
    ],
)
def test_the_servers_exit_0_on_ctrl_c(
    console: Console, argv: tuple[str, ...], ready_line: str
) -> None:
    server = console.start(*argv)
    server.wait_for_output(ready_line)
    server.interrupt()
    assert server.exit_code(PROMPT_EXIT_SECONDS) == 0
    assert "Traceback" not in server.output()
