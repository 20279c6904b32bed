"""The uploader against the session's broker and the Apps API simulator over TCP.

Real clients only: records go through the broker, uploads through HTTP to the simulator process,
which counts creations per input `id` (so a duplicate upload is visible). Each test waits for
conditions with deadlines; none sleeps to synchronise.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import orjson
import pytest
from confluent_kafka import Consumer, KafkaError, KafkaException, Message, Producer, TopicPartition

from connector.app.clients import build_client
from connector.app.runner import where
from connector.config import load_settings
from connector.devtools.brokers.base import Capability
from connector.lifecycle import StopRequest
from connector.metrics import Metrics
from connector.uploader import Uploader
from connector.uploader.role import build_uploader
from testkit.brokers import ControllableBroker
from testkit.kafka import unique_name
from testkit.waiting import wait_for
from tests.fixtures.brokers import NewTopic, ReadTopic, require
from tests.fixtures.simulator import SimulatorHandle

pytestmark = pytest.mark.integration

PARTITIONS = 4
MAX_RECORD_BYTES = 2048
BAD_KINDS = {0: "invalid_json", 1: "not_an_object", 2: "invalid_item", 3: "too_large"}
"""Record i is bad of this kind when i % 50 is the key: 2 % of each kind, 8 % in all."""
COORDINATOR_NOT_READY = {KafkaError.NOT_COORDINATOR, KafkaError.COORDINATOR_LOAD_IN_PROGRESS,
                         KafkaError.COORDINATOR_NOT_AVAILABLE}  # fmt: skip


def record_value(i: int) -> bytes:
    kind = BAD_KINDS.get(i % 50)
    if kind == "invalid_json":
        return b'{"id": "item-%d", "text": ' % i
    if kind == "not_an_object":
        return b'["item-%d"]' % i
    if kind == "invalid_item":
        return orjson.dumps({"id": f"item-{i}", "text": i})
    if kind == "too_large":
        return orjson.dumps({"id": f"item-{i}", "text": "x" * MAX_RECORD_BYTES})
    return orjson.dumps({"id": f"item-{i}", "text": f"text number {i}"})


def good_keys(count: int) -> set[str]:
    return {f"item-{i}" for i in range(count) if i % 50 not in BAD_KINDS}


def produce(bootstrap: str, topic: str, count: int, start: int = 0) -> None:
    """Records start..start+count-1, record i to partition i % PARTITIONS, with a `seq` header."""
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 20,
                         "enable.idempotence": True})  # fmt: skip
    for i in range(start, start + count):
        producer.produce(topic, value=record_value(i), key=b"key-%d" % i,
                         partition=i % PARTITIONS, headers=[("seq", str(i).encode())])  # fmt: skip
        producer.poll(0)
    assert producer.flush(30) == 0


def end_offsets(count: int) -> dict[int, int]:
    """Where each partition ends after `produce(…, count)` on a new topic."""
    return {p: len(range(p, count, PARTITIONS)) for p in range(PARTITIONS)}


def committed(
    bootstrap: str, group: str, topic: str, partitions: int = PARTITIONS
) -> dict[int, int]:
    """The group's committed offsets of the topic's `partitions` first partitions; {} while the
    group coordinator is not available yet."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group})
    try:
        chosen = [TopicPartition(topic, p) for p in range(partitions)]
        found = consumer.committed(chosen, timeout=10)
    except KafkaException as failure:
        if failure.args[0].code() in COORDINATOR_NOT_READY:
            return {}
        raise
    finally:
        consumer.close()
    return {tp.partition: tp.offset for tp in found}


def created_keys(simulator: SimulatorHandle, project: str | None = None) -> Counter[str]:
    """How many items exist per input `id` in `project` (default: the simulator's first), from
    the API's own listing."""
    counts: Counter[str] = Counter()
    after: str | None = None
    url = simulator.items_url if project is None else (
        f"{simulator.base_url}/app-projects/{project}/items"
    )  # fmt: skip
    with simulator.client() as http:
        while True:
            params = {"sort": "id", "limit": "1000", **({"after_id": after} if after else {})}
            page = http.get(url, params=params).raise_for_status().json()
            counts.update(item["input_data"]["id"] for item in page["content"])
            if not page["has_more"]:
                return counts
            after = page["content"][-1]["id"]


class Pipeline:
    """Topics, group and settings for one uploader test."""

    def __init__(
        self, broker: ControllableBroker, simulator: SimulatorHandle, new_topic: NewTopic
    ) -> None:
        self.broker = broker
        self.simulator = simulator
        self.topic = new_topic(PARTITIONS, prefix="uploader-in")
        self.dlq = new_topic(1, prefix="uploader-dlq")
        self.group = unique_name("uploader")

    def environ(self, **settings: str) -> dict[str, str]:
        environ = {
            "TOLOKA_API_KEY": self.simulator.api_key,
            "TOLOKA_BASE_URL": self.simulator.base_url,
            "TOLOKA_APP_PROJECT_ID": self.simulator.project_id,
            "KAFKA_BOOTSTRAP_SERVERS": self.broker.bootstrap_servers,
            # A killed member must leave the group soon (6 s is the usual broker minimum).
            "KAFKA_SESSION_TIMEOUT_MS": "6000",
            "KAFKA_HEARTBEAT_INTERVAL_MS": "500",
            "CONNECTOR_INPUT_TOPIC": self.topic,
            "CONNECTOR_DLQ_TOPIC": self.dlq,
            "CONNECTOR_GROUP_ID": self.group,
            "CONNECTOR_METRICS_PORT": "0",
            "CONNECTOR_MAX_RECORD_BYTES": str(MAX_RECORD_BYTES),
            "CONNECTOR_API_BACKOFF_BASE_SECONDS": "0.05",
            "CONNECTOR_API_BACKOFF_CAP_SECONDS": "2",
        }
        environ.update({f"CONNECTOR_{name.upper()}": value for name, value in settings.items()})
        return environ

    def produce(self, count: int, start: int = 0) -> None:
        produce(self.broker.bootstrap_servers, self.topic, count, start)

    def committed(self) -> dict[int, int]:
        return committed(self.broker.bootstrap_servers, self.group, self.topic)


class InProcess:
    """An uploader role in a thread of the test process, built as the `upload` command does."""

    def __init__(self, environ: dict[str, str]) -> None:
        settings = load_settings(environ=environ)
        self.metrics = Metrics()
        self.client = build_client(
            settings, self.metrics, in_flight=settings.uploader.max_in_flight
        )
        self.role: Uploader = build_uploader(settings, self.client, self.metrics)
        self.stop = StopRequest()
        self.failure: BaseException | None = None
        self.thread = threading.Thread(target=self._run, name="test-uploader", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        try:
            self.role.run(self.stop)
        except BaseException as failure:
            self.failure = failure

    def sample(self, name: str) -> float:
        return self.metrics.sample(f"toloka_connector_{name}") or 0.0

    def dead_letters(self) -> float:
        family = "toloka_connector_dead_letters_total"
        return sum(self.metrics.sample(family, {"reason": reason}) or 0.0
                   for reason in BAD_KINDS.values())  # fmt: skip

    def finish(self, timeout: float = 60.0) -> None:
        self.stop.set()
        self.thread.join(timeout)
        self.client.close()
        assert not self.thread.is_alive(), "the uploader did not stop"
        if self.failure is not None:
            raise self.failure


@pytest.fixture
def pipeline(
    kafka_broker: ControllableBroker, simulator: SimulatorHandle, new_topic: NewTopic
) -> Pipeline:
    return Pipeline(kafka_broker, simulator, new_topic)


@pytest.fixture
def in_process() -> Iterator[Callable[[dict[str, str]], InProcess]]:
    started: list[InProcess] = []

    def start(environ: dict[str, str]) -> InProcess:
        started.append(InProcess(environ))
        return started[-1]

    yield start
    for uploader in started:
        uploader.stop.set()
        uploader.thread.join(60)
        uploader.client.close()


@pytest.fixture
def upload_process(tmp_path: Path) -> Iterator[Callable[[dict[str, str]], subprocess.Popen[bytes]]]:
    """Starts `python -m connector upload` with the given environment; logs go to tmp_path."""
    started: list[subprocess.Popen[bytes]] = []

    def start(environ: dict[str, str]) -> subprocess.Popen[bytes]:
        log = (tmp_path / f"upload-{len(started)}.log").open("wb")
        process = subprocess.Popen(
            [sys.executable, "-m", "connector", "upload"],
            env={**os.environ, **environ}, stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
        started.append(process)
        return process

    yield start
    for process in started:
        if process.poll() is None:
            process.kill()
            process.wait()


def dead_letter_reasons(letters: list[Message], source_topic: str) -> list[tuple[int, str]]:
    """(seq, error-reason) of each dead letter, checking its source headers on the way."""
    reasons: list[tuple[int, str]] = []
    for letter in letters:
        raw = letter.headers() or []
        headers = {
            name: value.decode() if isinstance(value, bytes) else str(value)
            for name, value in (raw.items() if isinstance(raw, dict) else raw)
        }
        seq = int(headers["seq"])
        assert letter.value() == record_value(seq)
        assert letter.key() == b"key-%d" % seq
        assert int(headers["source-partition"]) == seq % PARTITIONS
        assert int(headers["source-offset"]) == seq // PARTITIONS
        assert headers["source-topic"] == source_topic
        reasons.append((seq, headers["error-reason"]))
    return reasons


@pytest.mark.slow
def test_bad_records_are_dead_lettered_and_good_ones_created_once_despite_api_faults(
    pipeline: Pipeline, in_process: Callable[[dict[str, str]], InProcess], read_topic: ReadTopic
) -> None:
    count = 10_000
    # About 130 bulk requests: each fault kind is all but certain to happen several times.
    pipeline.simulator.set_knobs(
        fault_scope="write", latency=0.002, latency_jitter=0.01, retry_after=1,
        http_429_ratio=0.06, http_500_ratio=0.06, http_502_ratio=0.06, http_503_ratio=0.06,
    )  # fmt: skip
    pipeline.produce(count)
    uploader = in_process(pipeline.environ(batch_max_items="100"))
    wait_for(lambda: pipeline.committed() == end_offsets(count), "offsets committed to the end")
    uploader.finish()

    created = created_keys(pipeline.simulator)
    assert set(created) == good_keys(count)
    assert set(created.values()) == {1}, "an item was created twice"
    expected = {i: BAD_KINDS[i % 50] for i in range(count) if i % 50 in BAD_KINDS}
    letters = dead_letter_reasons(read_topic(pipeline.dlq), pipeline.topic)
    assert dict(letters) == expected
    assert len(letters) == len(expected), "a record was dead-lettered twice"
    requests = pipeline.simulator.stats()["requests_by_status"]
    assert {"429", "500", "502", "503"} <= set(requests), requests  # the faults did happen
    assert uploader.sample("items_uploaded_total") == len(good_keys(count))


def test_a_killed_uploader_is_continued_from_the_committed_offsets(
    pipeline: Pipeline,
    upload_process: Callable[[dict[str, str]], subprocess.Popen[bytes]],
    read_topic: ReadTopic,
) -> None:
    require(pipeline.broker, "evicts_killed_members")
    count = 10_000
    pipeline.simulator.set_knobs(latency=0.01)
    pipeline.produce(count)
    environ = pipeline.environ(batch_max_items="100", max_in_flight="2")
    first = upload_process(environ)
    wait_for(lambda: sum(pipeline.committed().values()) >= 3000, "a third committed")
    first.send_signal(signal.SIGKILL)
    first.wait(30)
    committed_at_kill = pipeline.committed()
    assert sum(committed_at_kill.values()) > 0

    second = upload_process(environ)
    wait_for(lambda: pipeline.committed() == end_offsets(count), "offsets committed to the end")
    second.send_signal(signal.SIGTERM)
    assert second.wait(60) == 0

    created = created_keys(pipeline.simulator)
    assert set(created) == good_keys(count)
    letters = Counter(dead_letter_reasons(read_topic(pipeline.dlq), pipeline.topic))
    assert {seq for seq, _ in letters} == {i for i in range(count) if i % 50 in BAD_KINDS}
    # Only records the first process finished and had not committed may be handled twice.
    repeated = [int(key.removeprefix("item-")) for key, n in created.items() if n > 1]
    repeated += [seq for (seq, _), n in letters.items() if n > 1]
    assert max([*created.values(), *letters.values()]) <= 2
    for seq in repeated:
        assert seq // PARTITIONS >= committed_at_kill[seq % PARTITIONS], seq
    duplicates = sum(n > 1 for n in created.values())
    at_kill = sum(committed_at_kill.values())
    print(f"\nrestart after SIGKILL: {duplicates} of {len(created)} items uploaded twice, "
          f"{len(repeated) - duplicates} records dead-lettered twice; "
          f"{at_kill} of {count} records committed at the kill")  # fmt: skip


@pytest.mark.parametrize("strategy", ["cooperative-sticky", "range"])
def test_two_uploaders_in_one_group_share_the_partitions(
    pipeline: Pipeline, in_process: Callable[[dict[str, str]], InProcess], strategy: str
) -> None:
    # cooperative-sticky is the default; an eager strategy a user chose (KAFKA_PARTITION_
    # ASSIGNMENT_STRATEGY, e.g. for a broker that cannot finish cooperative rebalances) is used.
    if strategy == "cooperative-sticky":
        require(pipeline.broker, "cooperative_rebalancing")
    environ = {
        **pipeline.environ(batch_max_items="100"),
        "KAFKA_PARTITION_ASSIGNMENT_STRATEGY": strategy,
    }
    first = in_process(environ)
    wait_for(lambda: len(first.role.assignment()) == PARTITIONS, "the first uploader assigned")
    second = in_process(environ)
    wait_for(
        lambda: (
            bool(second.role.assignment())
            and first.role.assignment() | second.role.assignment() == set(range(PARTITIONS))
        ),
        "the partitions shared",
    )
    assert not first.role.assignment() & second.role.assignment()
    count = 4000
    pipeline.produce(count)
    wait_for(lambda: pipeline.committed() == end_offsets(count), "offsets committed to the end")
    created = created_keys(pipeline.simulator)
    assert set(created) == good_keys(count)
    assert set(created.values()) == {1}
    assert first.sample("items_uploaded_total") > 0
    assert second.sample("items_uploaded_total") > 0
    first.finish()
    second.finish()


def test_sigterm_drains_in_flight_uploads_commits_them_and_exits_0(
    pipeline: Pipeline, upload_process: Callable[[dict[str, str]], subprocess.Popen[bytes]]
) -> None:
    count = 4000
    pipeline.simulator.set_knobs(latency=0.3)
    pipeline.produce(count)
    process = upload_process(pipeline.environ(batch_max_items="50", drain_timeout_seconds="20"))
    wait_for(lambda: pipeline.simulator.stats()["items_created"] >= 300, "uploads under way")
    process.send_signal(signal.SIGTERM)
    assert process.wait(40) == 0

    # Drained: exactly the good records below the committed offsets exist, nothing more.
    positions = pipeline.committed()
    below_commit = {f"item-{i}" for i in range(count)
                    if i // PARTITIONS < positions[i % PARTITIONS]} & good_keys(count)  # fmt: skip
    created = created_keys(pipeline.simulator)
    assert set(created) == below_commit
    assert set(created.values()) == {1}
    assert 0 < len(below_commit) < len(good_keys(count))


@pytest.mark.slow
def test_a_stop_during_an_intent_commit_to_a_paused_broker_fits_its_budget_from_the_request(
    pipeline: Pipeline, in_process: Callable[[dict[str, str]], InProcess]
) -> None:
    """Seen: a stop that came while the uploader waited for an upload intent's commit (the
    broker not answering: up to 5 s) got its whole drain after that wait, and then the final
    commit and the group leave, which the broker did not answer either: the stop overran the
    budget ("did not finish draining in time", exit 1). Its deadlines count from the request:
    the wait ends with the drain (0.5 s), then the final commit (1 s) and the leave (5 s) fit
    the 8.5 s budget (before: the wait's 5 s, then those 6.5 s)."""
    require(pipeline.broker, Capability.PROCESS_CONTROL)
    budget = 8.5
    uploader = in_process(pipeline.environ(
        upload_reconcile="true", linger_ms="1500", batch_max_items="1000",
        drain_timeout_seconds="0.5", shutdown_timeout_seconds=f"{budget:g}",
    ))  # fmt: skip
    wait_for(lambda: len(uploader.role.assignment()) == PARTITIONS, "the partitions assigned")
    pipeline.produce(20)
    wait_for(lambda: uploader.sample("records_consumed_total") == 20, "the records read")
    pipeline.broker.pause()
    try:
        # The batch closes when its linger ends and waits for its partitions' intents.
        wait_for(lambda: "may_send" in where(uploader.thread), "the intent's commit waiting",
                 timeout=30)  # fmt: skip
        uploader.stop.set()
        assert uploader.stop.requested_at is not None
        uploader.thread.join(max(0.0, uploader.stop.requested_at + budget - time.monotonic()))
        assert not uploader.thread.is_alive(), "the stop overran its budget"
    finally:
        pipeline.broker.resume()
    assert uploader.sample("items_uploaded_total") == 0, "nothing was sent without its intent"


def test_throughput_of_one_uploader_against_a_zero_latency_api(
    pipeline: Pipeline,
    in_process: Callable[[dict[str, str]], InProcess],
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Not a timed assertion: prints the rate so that it can be reported and compared."""
    count = 50_000
    pipeline.produce(count)
    started = time.monotonic()
    uploader = in_process(pipeline.environ(batch_max_items="1000", max_in_flight="4"))
    wait_for(lambda: uploader.sample("records_consumed_total") > 0, "the first records read")
    consuming = time.monotonic()
    dead_letters = count - len(good_keys(count))
    wait_for(
        lambda: (
            uploader.sample("items_uploaded_total") == count - dead_letters
            and uploader.dead_letters() == dead_letters
        ),
        "every record uploaded or dead-lettered",
    )
    done = time.monotonic()
    wait_for(lambda: pipeline.committed() == end_offsets(count), "offsets committed to the end")
    uploader.finish()
    created = pipeline.simulator.stats()["items_created"]
    assert created == len(good_keys(count))
    with capsys.disabled():
        steady, overall = count / (done - consuming), count / (done - started)
        print(f"\nuploader throughput: {count} records ({created} items, {count - created} dead "
              f"letters): {steady:,.0f} records/s from the first record read to the last one done "
              f"({done - consuming:.2f}s); {overall:,.0f} records/s with start-up and "
              "group join")  # fmt: skip
