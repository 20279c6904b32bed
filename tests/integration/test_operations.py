"""`status`, `reset-cursor` and `replay-dlq` against the session's broker and the simulator over
TCP, run through `connector.cli.main` as a user runs them.

The state is made by the connector's own code: cursors by a real poller (PollerThread) or by
`write_cursor`, dead letters by the uploader's DeadLetterWriter from records read back from the
input topic; the uploader group's offsets are committed with a plain commit, as the uploader does.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import orjson
import pytest
from confluent_kafka import Consumer, Message, Producer, TopicPartition

from connector.cli import main
from connector.clock import SystemClock
from connector.contract.cursor import Cursor, initial_cursor
from connector.devtools.brokers.base import Capability
from connector.kafka.admin import TopicSpec
from connector.metrics import Metrics
from connector.poller import read_cursor, write_cursor
from connector.uploader.dead_letters import DeadLetterWriter
from connector.uploader.decode import Refusal
from testkit.brokers import ControllableBroker
from testkit.kafka import unique_name
from testkit.processes import toloka_connector
from testkit.waiting import wait_for
from tests.fixtures.brokers import NewTopic, ReadTopic, require
from tests.fixtures.simulator import SimulatorHandle
from tests.integration.poller_harness import PollerSetup, PollerThread

pytestmark = pytest.mark.integration

INPUT_PARTITIONS = 3
LISTINGS = "toloka_connector_poll_page_items_count"


@dataclass
class Outcome:
    code: int
    out: str
    err: str


Cli = Callable[..., Outcome]


@dataclass
class Deployment:
    setup: PollerSetup
    input_topic: str
    dlq_topic: str
    group: str

    @property
    def bootstrap(self) -> str:
        return self.setup.bootstrap_servers

    def cursor(self) -> Cursor | None:
        return read_cursor(
            {"bootstrap.servers": self.bootstrap},
            self.setup.state_topic,
            self.setup.simulator.project_id,
            group_id=self.group,
        )

    def produce_inputs(self, per_partition: dict[int, int]) -> None:
        producer = Producer({"bootstrap.servers": self.bootstrap, "enable.idempotence": True})
        for partition, count in per_partition.items():
            for n in range(count):
                producer.produce(
                    self.input_topic,
                    key=f"key-{partition}-{n}".encode(),
                    value=orjson.dumps({"id": f"{partition}-{n}", "text": "t"}),
                    partition=partition,
                    headers=[("origin", b"test"), ("seq", str(n).encode())],
                )
        assert producer.flush(30) == 0

    def commit(self, offsets: dict[int, int]) -> None:
        """Commit as the uploader group does (plain commit: the mock stores those too)."""
        consumer = Consumer({"bootstrap.servers": self.bootstrap, "group.id": self.group})
        try:
            consumer.commit(
                offsets=[TopicPartition(self.input_topic, p, o) for p, o in offsets.items()],
                asynchronous=False,
            )
        finally:
            consumer.close()

    def dead_letter(self, refused: list[tuple[Message, str]]) -> None:
        """Dead letters as the uploader writes them."""
        producer = Producer({"bootstrap.servers": self.bootstrap, "enable.idempotence": True})
        writer = DeadLetterWriter(producer, self.dlq_topic, Metrics(), SystemClock(),
                                  max_pending_bytes=1 << 30, timeout_seconds=60)  # fmt: skip
        for message, reason in refused:
            writer.write(message, Refusal(reason, f"refused as {reason}"), None,
                         message.partition() or 0, lambda: None)  # fmt: skip
        assert producer.flush(30) == 0
        assert writer.unacknowledged == 0


@pytest.fixture
def deployment(
    kafka_broker: ControllableBroker, simulator: SimulatorHandle, new_topic: NewTopic
) -> Deployment:
    input_topic = new_topic(INPUT_PARTITIONS, prefix="ops-in")
    dlq_topic = new_topic(1, prefix="ops-dlq")
    group = unique_name("ops-group")
    setup = PollerSetup(
        simulator,
        kafka_broker.bootstrap_servers,
        output_topic=new_topic(3, prefix="ops-out"),
        state_topic=new_topic(compacted=True, prefix="ops-state"),
        overrides={
            "CONNECTOR_INPUT_TOPIC": input_topic,
            "CONNECTOR_DLQ_TOPIC": dlq_topic,
            "CONNECTOR_GROUP_ID": group,
            # Generous: "a poller is active" must hold on a loaded machine; a reset hands over
            # at once anyway (its cursor has no holder).
            "CONNECTOR_LEADER_TIMEOUT_SECONDS": "10",
        },
    )
    return Deployment(setup, input_topic, dlq_topic, group)


@pytest.fixture
def cli(
    deployment: Deployment, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> Cli:
    for variable, value in deployment.setup.environ().items():
        monkeypatch.setenv(variable, value)

    def run(*argv: str) -> Outcome:
        capsys.readouterr()
        code = main(list(argv))
        out, err = capsys.readouterr()
        return Outcome(code, out, err)

    return run


@pytest.fixture
def pollers() -> Iterator[Callable[[PollerSetup], PollerThread]]:
    started: list[PollerThread] = []

    def start(setup: PollerSetup) -> PollerThread:
        started.append(PollerThread(setup.settings()))
        return started[-1]

    yield start
    for poller in started:
        if poller.thread.is_alive():
            poller.stop()


def published_in_finish_order(setup: PollerSetup) -> list[dict[str, Any]]:
    items = [orjson.loads(m.value() or b"{}") for m in setup.published()]
    return sorted(items, key=lambda item: (item["finished_at"], item["id"]))


# --- status ------------------------------------------------------------------------------------


def test_status_shows_cursor_leader_lag_and_dead_letters(
    deployment: Deployment,
    cli: Cli,
    pollers: Callable[[PollerSetup], PollerThread],
    read_topic: ReadTopic,
) -> None:
    deployment.produce_inputs({0: 3, 1: 2, 2: 2})
    deployment.commit({0: 3, 1: 1})  # partition 2: nothing committed yet
    inputs = read_topic(deployment.input_topic)
    deployment.dead_letter(
        [(inputs[0], "rejected"), (inputs[1], "rejected"), (inputs[2], "invalid_json")]
    )
    last_id = deployment.setup.simulator.seed(5)["last_id"]
    poller = pollers(deployment.setup)
    wait_for(
        lambda: (cursor := deployment.cursor()) is not None and cursor.after_id == last_id,
        what="the poller's cursor at the last seeded item",
    )

    shown = cli("status", "--json")
    assert (shown.code, shown.err) == (0, "")
    status = orjson.loads(shown.out)
    assert status["cursor"]["after_id"] == last_id
    assert status["leader"]["alive"] is True
    assert status["leader"]["holder"]
    lag = status["uploader_lag"]
    assert lag["total"] == 3
    assert [(p["partition"], p["committed"], p["lag"]) for p in lag["partitions"]] == [
        (0, 3, 0),
        (1, 1, 1),
        (2, None, 2),
    ]
    assert status["dead_letters"] == {"topic": deployment.dlq_topic, "total": 3}
    poller.stop()

    text = cli("status", "--by-reason")
    assert text.code == 0
    assert f"after item {last_id}" in text.out
    assert "uploader lag: 3 records" in text.out
    assert (
        f"dead letters: 3 on {deployment.dlq_topic}\n  invalid_json: 1\n  rejected: 2" in text.out
    )


def test_status_and_replay_exit_1_with_one_line_for_a_missing_topic(cli: Cli) -> None:
    for command in ("status", "replay-dlq"):
        outcome = cli(command, "--dlq-topic", unique_name("missing"))
        assert outcome.code == 1
        assert outcome.err.count("\n") == 1
        assert "does not exist" in outcome.err


# --- reset-cursor --------------------------------------------------------------------------------


def state_records(deployment: Deployment, read_topic: ReadTopic) -> int:
    return len(read_topic(deployment.setup.state_topic, "read_uncommitted"))


def test_reset_to_item_then_a_poller_publishes_exactly_the_items_after_it(
    deployment: Deployment,
    cli: Cli,
    pollers: Callable[[PollerSetup], PollerThread],
    read_topic: ReadTopic,
) -> None:
    setup = deployment.setup
    setup.simulator.seed(20)
    items = sorted(setup.listed(), key=lambda item: (item["finished_at"], item["id"]))
    project = setup.simulator.project_id
    earliest = initial_cursor(project, "earliest", now=0.0, late_window_seconds=60, holder=None)
    write_cursor({"bootstrap.servers": deployment.bootstrap}, setup.state_topic, earliest)
    anchor = items[5]

    before = state_records(deployment, read_topic)
    dry = cli("reset-cursor", "--to-item", anchor["id"], "--dry-run")
    assert (dry.code, dry.err) == (0, "")
    assert f"new cursor:     after item {anchor['id']}" in dry.out
    assert "dry run: nothing written" in dry.out
    assert state_records(deployment, read_topic) == before

    moved = cli("reset-cursor", "--to-item", anchor["id"])
    assert (moved.code, moved.err) == (0, "")
    cursor = deployment.cursor()
    assert cursor is not None
    assert cursor.after_id == anchor["id"]

    poller = pollers(setup)
    wait_for(lambda: len(setup.published()) >= 14, what="the 14 items after the anchor")
    # One look-back scan more (due every second; listings every half second when idle): it
    # lists from just past the anchor, so it must publish nothing new.
    listings = poller.metric(LISTINGS)
    wait_for(lambda: poller.metric(LISTINGS) >= listings + 4, what="further listings")
    poller.stop()
    assert setup.published_ids() == Counter({item["id"]: 1 for item in items[6:]})

    latest = cli("reset-cursor", "--latest", "--force")
    assert latest.code == 0
    cursor = deployment.cursor()
    assert cursor is not None
    assert cursor.after_id is None
    assert cursor.finished_at is not None
    assert cursor.finished_at.isoformat() > items[-1]["finished_at"]


def test_reset_without_a_cursor_is_refused(cli: Cli) -> None:
    nobody = unique_name("nobody")
    outcome = cli("reset-cursor", "--latest", "--toloka-app-project-id", nobody)
    assert outcome.code == 1
    assert "refused: there is no cursor to reset" in outcome.err
    dry = cli("reset-cursor", "--latest", "--toloka-app-project-id", nobody, "--dry-run")
    assert (dry.code, dry.err) == (0, "")
    assert "the reset would be refused: there is no cursor to reset" in dry.out


def test_a_reset_whose_transaction_fails_exits_1_with_one_line(
    kafka_broker: ControllableBroker, deployment: Deployment
) -> None:
    """The cursor's transaction aborts (the state topic takes no record that large): the
    command ends with its one line and exits 1, never with a traceback."""
    require(kafka_broker, Capability.TRANSACTIONS)
    require(kafka_broker, Capability.ADMIN_CREATE_TOPICS)
    tiny = unique_name("ops-state-tiny")
    # Room for the transaction's markers (about 80 bytes), none for a cursor record (over 300):
    # a topic that refused the markers too would leave the transaction open for good.
    limit = {"max.message.bytes": "200"}
    kafka_broker.create_topics([TopicSpec(tiny, compacted=True, config=limit)])
    env = deployment.setup.environ(
        CONNECTOR_STATE_TOPIC=tiny,
        CONNECTOR_TRANSACTION_TIMEOUT_SECONDS="5",  # at most half the leader timeout
        TOLOKA_APP_PROJECT_ID=unique_name("ops-tiny-project"),  # a transactional id of its own
    )
    reset = toloka_connector("reset-cursor", "--latest", "--force", env=env)
    assert reset.returncode == 1, reset.stderr
    assert "Traceback" not in reset.stderr
    # (librdkafka's own ERROR line about the failed transaction may come before it)
    assert reset.stderr.strip().splitlines()[-1].startswith("toloka-connector reset-cursor: ")
    assert "cursor written" not in reset.stdout


def test_reset_refuses_while_a_poller_leads_and_force_fences_it(
    kafka_broker: ControllableBroker,
    deployment: Deployment,
    cli: Cli,
    pollers: Callable[[PollerSetup], PollerThread],
) -> None:
    require(kafka_broker, Capability.TRANSACTIONS)
    setup = deployment.setup
    setup.simulator.seed(30)
    poller = pollers(setup)
    wait_for(lambda: len(setup.published()) >= 30, what="the seeded items published")
    items = published_in_finish_order(setup)
    ids = [item["id"] for item in items]
    moment = items[10]["finished_at"]  # the API's format: UTC without an offset

    refused = cli("reset-cursor", "--to-time", moment)
    assert refused.code == 1
    assert "refused: a poller is active" in refused.err
    # A dry run answers the question: it would be refused. That is no failure of the dry run.
    asked = toloka_connector("reset-cursor", "--to-time", moment, "--dry-run", env=setup.environ())
    assert (asked.returncode, asked.stderr) == (0, ""), asked.stderr
    assert "nothing written; the reset would be refused: a poller is active" in asked.stdout
    dry = cli("reset-cursor", "--to-time", moment, "--force", "--dry-run")
    assert dry.code == 0
    cursor = deployment.cursor()
    assert cursor is not None
    assert cursor.after_id == ids[-1]

    forced = cli("reset-cursor", "--to-time", moment, "--force")
    # (stderr carries the fenced poller's own log lines: it runs in this process)
    assert forced.code == 0, forced.err
    assert "fenced" in forced.out
    wait_for(lambda: sum(setup.published_ids().values()) >= 50, what="items from T again")
    listings = poller.metric(LISTINGS)
    wait_for(lambda: poller.metric(LISTINGS) >= listings + 4, what="further listings")
    poller.stop()
    expected = Counter({item_id: 1 for item_id in ids[:10]})
    expected.update({item_id: 2 for item_id in ids[10:]})
    assert setup.published_ids() == expected
    # Fenced, stepped down, took over again from the new cursor.
    assert poller.metric("toloka_connector_poller_takeovers_total") == 2


# --- replay-dlq --------------------------------------------------------------------------------


def test_replay_puts_back_the_originals_of_the_selected_reasons(
    deployment: Deployment, cli: Cli, read_topic: ReadTopic
) -> None:
    deployment.produce_inputs({0: 5})
    originals = read_topic(deployment.input_topic)
    reasons = ["rejected", "invalid_item", "invalid_json", "rejected", "not_an_object"]
    deployment.dead_letter(list(zip(originals, reasons, strict=True)))

    dry = cli("replay-dlq", "--dry-run")
    assert (dry.code, dry.err) == (0, "")
    assert "would replay 3 record(s)" in dry.out
    assert f"would replay {deployment.dlq_topic}/0/1 (invalid_item) key=key-0-1" in dry.out
    assert len(read_topic(deployment.input_topic)) == 5

    replayed = cli("replay-dlq")
    assert (replayed.code, replayed.err) == (0, "")
    assert "replayed 3 record(s)\n  invalid_item: 1\n  rejected: 2" in replayed.out
    dlq = deployment.dlq_topic
    again = replays(read_topic(deployment.input_topic))
    assert sorted(again) == [f"{dlq}/0/{n}" for n in (0, 1, 3)]
    for n in (0, 1, 3):
        [record] = again[f"{dlq}/0/{n}"]
        original = originals[n]
        assert record.key() == original.key()
        assert record.value() == original.value()
        assert record.headers() == [
            *(original.headers() or []),
            ("replayed-from", f"{dlq}/0/{n}".encode()),
        ]

    chosen = cli(
        "replay-dlq", "--reason", "invalid_json", "--reason", "not_an_object", "--max", "1"
    )
    assert chosen.code == 0
    assert "replayed 1 record(s)\n  invalid_json: 1" in chosen.out
    again = replays(read_topic(deployment.input_topic))
    assert sorted(again) == [f"{dlq}/0/{n}" for n in (0, 1, 2, 3)]
    assert [m.value() for m in again[f"{dlq}/0/2"]] == [originals[2].value()]


def replays(records: list[Message]) -> dict[str, list[Message]]:
    """Replayed records by the dead letter they came from."""
    found: dict[str, list[Message]] = {}
    for record in records:
        origin = dict(record.headers() or []).get("replayed-from")
        if isinstance(origin, bytes):
            found.setdefault(origin.decode(), []).append(record)
    return found
