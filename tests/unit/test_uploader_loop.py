"""The uploader role end to end on fakes: a scripted consumer, producer and API client.

Offsets are committed only up to the first record that is neither uploaded nor dead-lettered,
dead letters gate the commit until acknowledged, an outage pauses the partitions and recovers,
revocation and shutdown drain within their deadline. The role runs in a thread; tests wait for
conditions with deadlines, never for fixed times.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import orjson
import pytest
from confluent_kafka import KafkaError, KafkaException, TopicPartition
from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroSerializer
from confluent_kafka.serialization import MessageField, SerializationContext
from pydantic import SecretStr

from connector import stop_budget
from connector.clock import Clock, SystemClock
from connector.config import SchemaRegistrySettings, Settings, load_settings
from connector.contract.dead_letters import INVALID_SCHEMA
from connector.contract.upload_intents import UploadIntent, decode_intent, encode_intent
from connector.devtools.registry.server import RegistrySimulator
from connector.errors import (
    AuthenticationError,
    DeadLetterStuckError,
    NotFoundError,
    RegistryCredentialsError,
    ServerError,
    StartupError,
    TolokaApiError,
    ValidationFailedError,
)
from connector.formats.decoding import DECODERS
from connector.kafka import bounded
from connector.kafka.clients import Headers
from connector.lifecycle import Readiness, Role, StopRequest
from connector.metrics import Metrics
from connector.schema_registry.client import registry_client
from connector.stop_budget import CLOSE_SECONDS, MIN_COMMIT_SECONDS, MIN_FLUSH_SECONDS
from connector.toloka.client import BulkCreateResult
from connector.toloka.models import App, AppProject, FieldSpec, ItemPage
from connector.toloka.pacing import InFlightLimit
from connector.uploader.assignment import MIN_READ_CALL_SECONDS
from connector.uploader.dead_letters import HEADERS_ALLOWANCE_BYTES
from connector.uploader.decode import (
    ItemDecoder,
    RegistryItemDecoder,
    decode_item,
)
from connector.uploader.intake import CONSUME_MAX_MESSAGES
from connector.uploader.lag import LagReporter
from connector.uploader.migration import PreviousGroups
from connector.uploader.role import Uploader, consumer_config, producer_config
from connector.uploader.shared import SharedLoop
from testkit.clocks import FakeClock
from testkit.waiting import wait_for

TOPIC = "items"
DLQ = "items.dlq"
DEADLINE_SECONDS = 10.0


# --- fakes ---------------------------------------------------------------------------------


class FakeMessage:
    def __init__(self, partition: int, offset: int, value: bytes | None,
                 key: bytes | None = None, headers: Headers | None = None,
                 topic: str = TOPIC) -> None:  # fmt: skip
        self._topic = topic
        self._partition = partition
        self._offset = offset
        self._value = value
        self._key = key
        self._headers = headers

    def topic(self) -> str:
        return self._topic

    def partition(self) -> int:
        return self._partition

    def offset(self) -> int:
        return self._offset

    def key(self) -> bytes | None:
        return self._key

    def value(self) -> bytes | None:
        return self._value

    def headers(self) -> Headers | None:
        return self._headers

    def timestamp(self) -> tuple[int, int]:
        return (1, 1_700_000_000_000 + self._offset)

    def error(self) -> KafkaError | None:
        return None


class FakeConsumer:
    """One topic, every partition assigned at subscribe; rebalances requested by the test are
    delivered inside the next `consume`, like librdkafka does."""

    def __init__(
        self, partitions: Mapping[int, Sequence[bytes | None]], topic: str = TOPIC
    ) -> None:
        self.topic = topic
        self.log: dict[int, list[FakeMessage]] = {
            p: [FakeMessage(p, offset, value, key=b"k%d" % offset, headers=[("origin", b"test")],
                            topic=topic)
                for offset, value in enumerate(values)]
            for p, values in partitions.items()
        }  # fmt: skip
        self.position = dict.fromkeys(partitions, 0)
        self.commits: dict[int, int] = {}
        self.metadata: dict[int, str] = {}
        """Partition → the metadata of its last commit."""
        self.sync_commits: list[dict[int, int]] = []
        self.assigned: set[int] = set()
        self.paused: set[int] = set()
        self.pauses = 0
        self.consume_calls = 0
        self.closed = False
        self._callbacks: dict[str, Any] = {}
        self._rebalances: list[tuple[str, list[int], threading.Event]] = []

    def subscribe(self, topics: list[str], on_assign: Any = None, on_revoke: Any = None,
                  on_lost: Any = None) -> None:  # fmt: skip
        assert topics == [self.topic]
        self._callbacks = {"assign": on_assign, "revoke": on_revoke, "lost": on_lost}
        self.rebalance("assign", list(self.log))

    def rebalance(self, kind: str, partitions: list[int]) -> threading.Event:
        done = threading.Event()
        self._rebalances.append((kind, partitions, done))
        return done

    def _partitions(self, numbers: list[int]) -> list[TopicPartition]:
        return [TopicPartition(self.topic, p) for p in numbers]

    def consume(self, num_messages: int = 1, timeout: float = -1) -> list[FakeMessage]:
        self.consume_calls += 1
        while self._rebalances:
            kind, numbers, done = self._rebalances.pop(0)
            self._callbacks[kind](self, self._partitions(numbers))
            if kind == "assign":
                self.assigned |= set(numbers)
                for p in numbers:
                    self.position[p] = self.commits.get(p, 0)
            else:
                self.assigned -= set(numbers)
                self.paused -= set(numbers)
            done.set()
        batch: list[FakeMessage] = []
        for p in sorted(self.assigned - self.paused):
            take = self.log[p][self.position[p] : self.position[p] + num_messages - len(batch)]
            self.position[p] += len(take)
            batch += take
        if not batch and timeout > 0:
            time.sleep(min(timeout, 0.002))  # stands for the broker's fetch wait
        return batch

    def committed(self, partitions: list[TopicPartition], timeout: float) -> list[TopicPartition]:
        return [TopicPartition(self.topic, tp.partition, self.commits.get(tp.partition, -1001))
                for tp in partitions]  # fmt: skip

    def pause(self, partitions: list[TopicPartition]) -> None:
        self.paused |= {tp.partition for tp in partitions}
        self.pauses += 1

    def resume(self, partitions: list[TopicPartition]) -> None:
        self.paused -= {tp.partition for tp in partitions}

    def commit(self, *, offsets: list[TopicPartition], asynchronous: bool = True) -> Any:
        positions = {tp.partition: tp.offset for tp in offsets}
        assert all(tp.topic == self.topic for tp in offsets)
        for p, offset in positions.items():
            assert offset >= self.commits.get(p, 0), "a commit went backwards"
        self.commits.update(positions)
        self.metadata.update({tp.partition: tp.metadata or "" for tp in offsets})
        if not asynchronous:
            self.sync_commits.append(positions)
            return offsets
        return None

    def close(self) -> None:
        if self.assigned:  # like librdkafka: close() revokes what is still assigned
            self._callbacks["revoke"](self, self._partitions(sorted(self.assigned)))
        self.closed = True


class FakeConsumers:
    """One consumer over the topics of several `FakeConsumer`s, as librdkafka's is over every
    topic it subscribes to."""

    def __init__(self, *consumers: FakeConsumer) -> None:
        self.of = {consumer.topic: consumer for consumer in consumers}

    def subscribe(self, topics: list[str], on_assign: Any = None, on_revoke: Any = None,
                  on_lost: Any = None) -> None:  # fmt: skip
        assert topics == sorted(self.of)
        for consumer in self.of.values():
            consumer.subscribe([consumer.topic], on_assign, on_revoke, on_lost)

    def consume(self, num_messages: int = 1, timeout: float = -1) -> list[FakeMessage]:
        batch = [m for c in self.of.values() for m in c.consume(num_messages, 0)]
        if not batch and timeout > 0:
            time.sleep(min(timeout, 0.002))  # stands for the broker's fetch wait
        return batch

    def _each(self, partitions: list[TopicPartition], call: str, **kwargs: Any) -> None:
        for topic, consumer in self.of.items():
            chosen = [tp for tp in partitions if tp.topic == topic]
            if chosen:
                getattr(consumer, call)(chosen, **kwargs)

    def pause(self, partitions: list[TopicPartition]) -> None:
        self._each(partitions, "pause")

    def resume(self, partitions: list[TopicPartition]) -> None:
        self._each(partitions, "resume")

    def commit(self, *, offsets: list[TopicPartition], asynchronous: bool = True) -> Any:
        for topic, consumer in self.of.items():
            chosen = [tp for tp in offsets if tp.topic == topic]
            if chosen:
                consumer.commit(offsets=chosen, asynchronous=asynchronous)
        return None if asynchronous else offsets

    def close(self) -> None:
        for consumer in self.of.values():
            consumer.close()


class FakeProducer:
    def __init__(self) -> None:
        self.delivered: list[dict[str, Any]] = []
        self.queued: list[tuple[dict[str, Any], Any]] = []
        self.hold = False
        self.failures: list[int] = []
        """Error codes for the next deliveries."""

    def produce(self, topic: str, *, value: Any = None, key: Any = None, headers: Any = None,
                on_delivery: Any = None) -> None:  # fmt: skip
        record = {"topic": topic, "value": value, "key": key, "headers": dict(headers or [])}
        self.queued.append((record, on_delivery))

    def poll(self, timeout: float = 0) -> int:
        if self.hold:
            return 0
        served = 0
        while self.queued:
            record, callback = self.queued.pop(0)
            error = KafkaError(self.failures.pop(0)) if self.failures else None
            if error is None:
                self.delivered.append(record)
            callback(error, None)
            served += 1
        return served

    def flush(self, timeout: float = 0) -> int:
        self.poll()
        return len(self.queued)


class FakeApi:
    """Bulk create that records every created item (by its "n"), with knobs for refusals,
    outages and requests that hang until released."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.created: dict[str, int] = {}
        self.requests = 0
        self.down = False
        self.hang_on: set[str] = set()
        self.release = threading.Event()
        self.stopped = threading.Event()
        self.startup_errors: list[TolokaApiError] = []

    def get_project(self) -> AppProject:
        if self.startup_errors:
            raise self.startup_errors.pop(0)
        return AppProject(id="project-1", app_id="app-1")

    def get_app(self, app_id: str) -> App:
        return App(id=app_id, input_spec={"n": FieldSpec(type="string", required=True),
                                          "text": FieldSpec(type="string")})  # fmt: skip

    def bulk_create_raw(
        self, body: bytes, count: int, *, retry_ambiguous: bool = True
    ) -> BulkCreateResult:
        items = orjson.loads(body)["items"]
        with self.lock:
            self.requests += 1
        if self.hang_on & {item["n"] for item in items}:
            self.release.wait()
        if self.down:
            raise ServerError("service unavailable", status=503)
        refused = {f"input_data.{i}.text": {"code": "VALUE_NOT_ALLOWED", "message": "refused"}
                   for i, item in enumerate(items) if item.get("text") == "refuse me"}  # fmt: skip
        if refused:
            raise ValidationFailedError("Validation failed", status=400, code="VALIDATION_ERROR",
                                        request_id="req-42", payload=refused)  # fmt: skip
        with self.lock:
            for item in items:
                self.created[item["n"]] = self.created.get(item["n"], 0) + 1
        return BulkCreateResult([f"id-{item['n']}" for item in items], 0)

    def stop_retrying(self) -> None:
        self.stopped.set()

    def list_items(self, **_query: object) -> ItemPage:
        raise AssertionError("these tests upload at least once: nothing is reconciled")


def settings(**overrides: str) -> Settings:
    environ = {
        "TOLOKA_API_KEY": "secret-key",
        "TOLOKA_APP_PROJECT_ID": "project-1",
        "CONNECTOR_INPUT_TOPIC": TOPIC,
        "CONNECTOR_DLQ_TOPIC": DLQ,
        "CONNECTOR_LINGER_MS": "0",
        "CONNECTOR_COMMIT_INTERVAL_MS": "0",
        "CONNECTOR_DRAIN_TIMEOUT_SECONDS": "5",
        "CONNECTOR_API_BACKOFF_BASE_SECONDS": "0.001",
        "CONNECTOR_API_BACKOFF_CAP_SECONDS": "0.005",
        # Reconciliation (exactly-once uploads) is tested in test_uploader_reconcile.py.
        "CONNECTOR_UPLOAD_RECONCILE": "false",
    }
    environ.update({name if name.isupper() else f"CONNECTOR_{name.upper()}": value
                    for name, value in overrides.items()})  # fmt: skip
    return load_settings(environ=environ)


class Running:
    """An Uploader running in a thread on the fakes."""

    def __init__(self, consumer: FakeConsumer, api: FakeApi | None = None,
                 producer: FakeProducer | None = None, in_flight_limit: InFlightLimit | None = None,
                 decode: ItemDecoder = decode_item, clock: Clock | None = None,
                 **overrides: str) -> None:  # fmt: skip
        self.consumer = consumer
        self.producer = producer or FakeProducer()
        self.api = api or FakeApi()
        self.metrics = Metrics()
        self.role = Uploader(
            settings(**overrides), self.api, self.metrics,
            consumer_factory=lambda _on_stats: self.consumer,
            producer_factory=lambda: self.producer, in_flight_limit=in_flight_limit,
            decode=decode, clock=clock,
        )  # fmt: skip
        self.stop = StopRequest(clock)
        self.failure: BaseException | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        try:
            self.role.run(self.stop)
        except BaseException as failure:
            self.failure = failure

    def finish(self) -> None:
        self.stop.set()
        self.thread.join(DEADLINE_SECONDS)
        assert not self.thread.is_alive(), "run() did not return"
        if self.failure is not None:
            raise self.failure

    def check_running(self) -> None:
        """Raise the role's failure when it ended (a guard while waiting on it)."""
        if self.failure is not None:
            raise AssertionError(f"the uploader ended: {self.failure!r}") from self.failure

    def iterations_later(self, count: int) -> None:
        target = self.consumer.consume_calls + count
        wait_for(lambda: self.consumer.consume_calls >= target, f"{count} loop iterations")

    def dead_letters(self) -> dict[str, dict[str, Any]]:
        return {r["headers"]["source-partition"].decode() + ":"
                + r["headers"]["source-offset"].decode(): r
                for r in self.producer.delivered}  # fmt: skip


@pytest.fixture
def running() -> Iterator[list[Running]]:
    started: list[Running] = []
    yield started
    for run in started:
        run.api.release.set()
        run.stop.set()
        run.thread.join(DEADLINE_SECONDS)


def item(n: str, text: str = "ok") -> bytes:
    return orjson.dumps({"n": n, "text": text})


# --- tests -----------------------------------------------------------------------------------


def test_every_record_ends_uploaded_or_dead_lettered_and_offsets_reach_the_end(
    running: list[Running],
) -> None:
    bad = {
        3: (b'{"n": "x", "text": ', "invalid_json"),
        7: (b"[1, 2, 3]", "not_an_object"),
        11: (b'{"text": "no n"}', "invalid_item"),
        13: (b'{"n":"big","text":"' + b"x" * 300 + b'"}', "too_large"),
        17: (item("refused", "refuse me"), "rejected"),
    }
    values = {p: [bad[o][0] if o in bad and p == 1 else item(f"{p}:{o}") for o in range(25)]
              for p in range(3)}  # fmt: skip
    run = Running(FakeConsumer(values), batch_max_items="4", max_record_bytes="200")
    running.append(run)
    wait_for(lambda: run.consumer.commits == {0: 25, 1: 25, 2: 25}, "commits to the end")
    good = {f"{p}:{o}" for p in range(3) for o in range(25) if not (p == 1 and o in bad)}
    assert run.api.created == dict.fromkeys(good, 1)
    letters = run.dead_letters()
    assert sorted(letters) == sorted(f"1:{o}" for o in bad)
    for offset, (value, reason) in bad.items():
        letter = letters[f"1:{offset}"]
        assert letter["topic"] == DLQ
        assert letter["value"] == value
        assert letter["key"] == b"k%d" % offset
        assert letter["headers"]["origin"] == b"test"
        assert letter["headers"]["error-reason"] == reason.encode()
        assert letter["headers"]["source-topic"] == TOPIC.encode()
        assert b"secret-key" not in letter["headers"]["error-message"]
    assert letters["1:17"]["headers"]["api-request-id"] == b"req-42"
    assert letters["1:17"]["headers"]["error-message"] == b"text: VALUE_NOT_ALLOWED: refused"
    assert "api-request-id" not in letters["1:3"]["headers"]
    assert run.role.readiness().ready
    run.finish()
    assert run.consumer.closed
    sample = run.metrics.sample
    assert sample("toloka_connector_dead_letters_total", {"reason": "too_large"}) == 1
    assert sample("toloka_connector_records_consumed_total") == 75
    assert sample("toloka_connector_items_uploaded_total") == 70


class RoutedPipelines:
    """Pipelines `texts` and `captions` routing one topic by header, their uploaders running
    one loop on the fakes; records at even offsets name texts, odd ones captions, every third
    one (`unrouted`) none."""

    def __init__(
        self, offsets: int, *, unrouted: bool, previous_groups: PreviousGroups | None = None,
        decode: ItemDecoder = decode_item, value: Callable[[str], bytes] = item,
        fake_consumer: FakeConsumer | None = None, stop: threading.Event | None = None,
        **overrides: str,
    ) -> None:  # fmt: skip
        self.consumer = fake_consumer or FakeConsumer(
            {0: [value(f"0:{o}") for o in range(offsets)]}
        )
        for message in self.consumer.log[0]:
            offset = message.offset()
            name = b"texts" if offset % 2 == 0 else b"captions"
            named = not unrouted or offset % 3 != 2
            message._headers = [("toloka-app-project-id", name)] if named else []
        self.producer, self.apis, self.views = FakeProducer(), [FakeApi(), FakeApi()], Metrics()
        pipelines = [
            settings(
                route_by_header="true",
                dlq_topic=f"{project}.dlq",
                TOLOKA_APP_PROJECT_ID=project,
                **overrides,
            )
            for project in ("texts", "captions")
        ]
        self.statistics: list[Callable[[str], None]] = []

        def consumer(on_statistics: Callable[[str], None]) -> FakeConsumer:
            self.statistics.append(on_statistics)
            return self.consumer

        loop = SharedLoop(
            pipelines,
            consumer,
            lambda: self.producer,
            SystemClock(),
            previous_groups=previous_groups,
        )
        self.roles = [
            Uploader(
                pipeline,
                api,
                self.views.for_project(pipeline.project.app_project_id),
                loop=loop,
                index=index,
                decode=decode,
            )
            for index, (pipeline, api) in enumerate(zip(pipelines, self.apis, strict=True))
        ]
        self.stop = stop or threading.Event()
        self.failures: list[BaseException] = []
        self.threads = [
            threading.Thread(target=self._run, args=(role,), daemon=True) for role in self.roles
        ]
        for thread in self.threads:
            thread.start()

    def _run(self, role: Uploader) -> None:
        try:
            role.run(self.stop)
        except BaseException as failure:
            self.failures.append(failure)

    def report_lag(self, lag: int) -> None:
        """librdkafka's statistics: `lag` records behind on partition 0."""
        stats = {"topics": {TOPIC: {"partitions": {"0": {"consumer_lag": lag}}}}}
        self.statistics[0](orjson.dumps(stats).decode())

    def finish(self) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(DEADLINE_SECONDS)
        assert not any(thread.is_alive() for thread in self.threads)

    def created(self) -> list[list[str]]:
        return [sorted(api.created, key=lambda n: int(n[2:])) for api in self.apis]


@pytest.fixture
def routed() -> Iterator[list[RoutedPipelines]]:
    started: list[RoutedPipelines] = []
    yield started
    for run in started:
        run.stop.set()


def test_pipelines_routed_on_one_topic_each_take_their_records_from_one_consumer(
    routed: list[RoutedPipelines],
) -> None:
    """Two pipelines route one topic by header in one loop: each uploads the records its
    header names to its own project and counts only those as consumed; the unrouted ones are
    dead-lettered once, by the first, to its dead-letter topic; the partition is committed
    once every record is done, by whichever lane."""
    run = RoutedPipelines(10, unrouted=True)
    routed.append(run)
    wait_for(lambda: run.consumer.commits == {0: 10}, "commits to the end")
    assert all(role.readiness().ready for role in run.roles)
    run.finish()
    assert run.created() == [["0:0", "0:4", "0:6"], ["0:1", "0:3", "0:7", "0:9"]]
    assert sorted((r["topic"], r["headers"]["source-offset"]) for r in run.producer.delivered) == [
        ("texts.dlq", b"2"), ("texts.dlq", b"5"), ("texts.dlq", b"8")
    ]  # fmt: skip
    consumed = {project: run.views.sample("toloka_connector_records_consumed_total",
                                          {"app_project": project})
                for project in ("texts", "captions")}  # fmt: skip
    assert consumed == {"texts": 6, "captions": 4}


def test_a_pipeline_with_nothing_to_do_on_a_shared_topic_is_ready_while_another_progresses(
    routed: list[RoutedPipelines],
) -> None:
    """The records behind on a shared topic may all be another pipeline's: a pipeline with
    none of its own is stalled only when no pipeline on the topic makes progress."""
    run = RoutedPipelines(0, unrouted=False, progress_timeout_seconds="0.3")
    routed.append(run)
    wait_for(lambda: run.roles[1].assignment() == {0}, "the partition assigned")
    started = time.monotonic()
    wait_for(lambda: time.monotonic() - started > 0.5, "longer than the progress timeout")
    message = FakeMessage(0, 0, item("0:0"), headers=[("toloka-app-project-id", b"texts")])
    run.consumer.log[0].append(message)
    wait_for(lambda: run.consumer.commits == {0: 1}, "the texts record uploaded")
    run.report_lag(5)  # more texts records behind
    texts, captions = (role.readiness() for role in run.roles)
    assert texts.ready, texts
    assert captions.ready, captions
    run.finish()


def test_a_shared_topics_gauges_and_commits_are_reported_once_not_per_pipeline(
    routed: list[RoutedPipelines],
) -> None:
    """Summed over app_project (as a dashboard does), the topic's lag, paused partitions and
    commits count once: they are the topic's, reported under its first pipeline."""
    run = RoutedPipelines(10, unrouted=False)
    routed.append(run)
    wait_for(lambda: run.consumer.commits == {0: 10}, "commits to the end")
    run.report_lag(5)

    def each(name: str, labels: dict[str, str] | None = None) -> list[float | None]:
        return [
            run.views.sample(name, {"app_project": project, **(labels or {})})
            for project in ("texts", "captions")
        ]

    lag = each("toloka_connector_consumer_lag_messages", {"topic": TOPIC, "partition": "0"})
    assert lag == [5, None]
    run.finish()
    texts, captions = each("toloka_connector_offset_commits_total")
    assert texts
    assert not captions


def test_the_first_start_in_the_one_group_continues_where_each_pipelines_old_group_was(
    routed: list[RoutedPipelines],
) -> None:
    """Upgrading from a group per routed pipeline: the one group, without offsets yet, is
    committed at the lowest old offset before the partition is read, and each pipeline passes
    over its records below its own old group's offset (uploaded before)."""
    old = {"toloka-connector.texts": 6, "toloka-connector.captions": 3}
    asked: list[str] = []

    def read_previous(group: str, partitions: list[TopicPartition]) -> list[TopicPartition]:
        asked.append(group)
        return [TopicPartition(tp.topic, tp.partition, old[group]) for tp in partitions]

    run = RoutedPipelines(12, unrouted=False, previous_groups=PreviousGroups(read_previous))
    routed.append(run)
    wait_for(lambda: run.consumer.commits == {0: 12}, "commits to the end")
    run.finish()
    assert sorted(asked) == sorted(old)
    assert run.consumer.sync_commits[0] == {0: 3}  # before the partition was read
    assert run.created() == [["0:6", "0:8", "0:10"], ["0:3", "0:5", "0:7", "0:9", "0:11"]]


def test_commit_stops_before_the_earliest_unfinished_upload(running: list[Running]) -> None:
    api = FakeApi()
    api.hang_on = {"0:5"}
    values = {p: [item(f"{p}:{o}") for o in range(20)] for p in range(2)}
    run = Running(FakeConsumer(values), api, batch_max_items="1", max_in_flight="3")
    running.append(run)
    wait_for(lambda: run.consumer.commits.get(1) == 20, "partition 1 committed")
    wait_for(lambda: len(api.created) == 39, "every other item created")
    run.iterations_later(5)  # commits are attempted on every iteration (interval 0)
    assert run.consumer.commits[0] == 5
    api.release.set()
    wait_for(lambda: run.consumer.commits.get(0) == 20, "partition 0 committed")
    run.finish()


def test_commit_waits_for_the_dead_letter_to_be_acknowledged(running: list[Running]) -> None:
    consumer = FakeConsumer({0: [item("a"), b"not json", item("b"), item("c")]})
    producer = FakeProducer()
    producer.hold = True
    run = Running(consumer, producer=producer)
    running.append(run)
    wait_for(lambda: len(run.api.created) == 3, "the good items created")
    wait_for(lambda: consumer.commits.get(0) == 1, "the first record committed")
    run.iterations_later(5)
    assert consumer.commits[0] == 1
    run.producer.hold = False
    wait_for(lambda: consumer.commits.get(0) == 4, "commit past the dead letter")
    run.finish()


def test_a_failed_dead_letter_delivery_is_produced_again(running: list[Running]) -> None:
    consumer = FakeConsumer({0: [b"{}", item("a")]})
    producer = FakeProducer()
    producer.failures = [KafkaError._MSG_TIMED_OUT]
    run = Running(consumer, producer=producer)
    running.append(run)
    wait_for(lambda: consumer.commits.get(0) == 2, "commit past the dead letter")
    assert len(run.producer.delivered) == 1
    run.finish()


def test_an_outage_pauses_the_partitions_reports_not_ready_and_recovers(
    running: list[Running],
) -> None:
    api = FakeApi()
    api.down = True
    values = {p: [item(f"{p}:{o}") for o in range(30)] for p in range(2)}
    run = Running(FakeConsumer(values), api, batch_max_items="5", max_in_flight="2")
    running.append(run)
    wait_for(lambda: run.consumer.paused == {0, 1}, "partitions paused")
    wait_for(lambda: not run.role.readiness().ready, "not ready")
    requests = api.requests
    wait_for(lambda: api.requests > requests + 10, "the outage being retried")
    consumed = sum(run.consumer.position.values())
    # In flight, as many waiting, the open batch and one consume() call: 2·2·5 + 5 + 500.
    assert consumed <= 2 * 2 * 5 + 5 + 500
    assert run.metrics.sample("toloka_connector_paused_partitions") == 2
    api.down = False
    wait_for(lambda: run.consumer.commits == {0: 30, 1: 30}, "commits to the end")
    wait_for(lambda: run.role.readiness().ready, "ready again")
    assert run.consumer.paused == set()
    assert set(api.created.values()) == {1}
    assert len(api.created) == 60
    run.finish()


class TwoTopics:
    """Pipelines `texts` and `images` on topics of their own, 30 records each, in one loop on
    the fakes; `overrides` are each pipeline's settings."""

    def __init__(self, *overrides: dict[str, str], images_api: FakeApi | None = None,
                 consumers: type[FakeConsumers] = FakeConsumers) -> None:  # fmt: skip
        self.texts, self.images = (
            FakeConsumer({0: [item(f"{t[0]}{o}") for o in range(30)]}, topic=t)
            for t in ("texts", "images")
        )
        consumer, producer = consumers(self.texts, self.images), FakeProducer()
        self.consumer = consumer
        self.producer = producer
        self.apis = [FakeApi(), images_api or FakeApi()]
        pipelines = [
            settings(
                input_topic=topic,
                dlq_topic=f"{topic}.dlq",
                batch_max_items="5",
                TOLOKA_APP_PROJECT_ID=topic,
                **more,
            )
            for topic, more in zip(("texts", "images"), overrides or ({}, {}), strict=True)
        ]
        loop = SharedLoop(pipelines, lambda _stats: consumer, lambda: producer, SystemClock())
        self.roles = [
            Uploader(
                pipeline,
                api,
                Metrics(app_project=pipeline.project.app_project_id),
                loop=loop,
                index=index,
            )
            for index, (pipeline, api) in enumerate(zip(pipelines, self.apis, strict=True))
        ]
        self.stop = threading.Event()
        self.failures: list[BaseException] = []
        self.threads = [
            threading.Thread(target=self._run, args=(role,), daemon=True) for role in self.roles
        ]

    def _run(self, role: Uploader) -> None:
        try:
            role.run(self.stop)
        except BaseException as failure:
            self.failures.append(failure)

    def start(self) -> TwoTopics:
        for thread in self.threads:
            thread.start()
        return self

    def finish(self) -> None:
        self.stop.set()
        for thread in self.threads:
            if thread.is_alive():
                thread.join(DEADLINE_SECONDS)


@pytest.fixture
def two_topics() -> Iterator[list[TwoTopics]]:
    started: list[TwoTopics] = []
    yield started
    for run in started:
        run.finish()


def test_an_outage_of_one_pipelines_api_pauses_only_its_topic(
    two_topics: list[TwoTopics],
) -> None:
    """Two pipelines on topics of their own in one loop: while one's API is down, its topic's
    partitions pause and it is not ready; the other uploads all its records meanwhile."""
    run = TwoTopics()
    two_topics.append(run)
    texts, images, roles, apis = run.texts, run.images, run.roles, run.apis
    apis[0].down = True
    run.start()
    wait_for(lambda: texts.paused == {0}, "the texts partition paused")
    wait_for(lambda: images.commits == {0: 30}, "every images record uploaded")
    assert images.paused == set()
    assert not roles[0].readiness().ready
    assert roles[1].readiness().ready
    apis[0].down = False
    wait_for(lambda: texts.commits == {0: 30}, "every texts record uploaded after it")
    run.finish()
    assert [len(api.created) for api in apis] == [30, 30]


class AssignedWhileStopping(FakeConsumers):
    """librdkafka's one assignment of every subscribed topic's partitions, delivered in the
    first `consume` once the stop was requested (`stop`, set by the test)."""

    def __init__(self, *consumers: FakeConsumer) -> None:
        super().__init__(*consumers)
        self.stop = threading.Event()
        self.on_assign: Any = None

    def subscribe(self, topics: list[str], on_assign: Any = None, on_revoke: Any = None,
                  on_lost: Any = None) -> None:  # fmt: skip
        assert topics == sorted(self.of)
        self.on_assign = on_assign

    def consume(self, num_messages: int = 1, timeout: float = -1) -> list[FakeMessage]:
        assign, self.on_assign = self.on_assign, None
        if assign is not None:
            self.stop.set()
            assign(self, [TopicPartition(topic, 0) for topic in sorted(self.of)])
        return []


def test_an_assignment_while_stopping_is_left_to_the_next_owner_in_one_line(
    two_topics: list[TwoTopics], caplog: pytest.LogCaptureFixture
) -> None:
    """Seen: one assignment logged "assigned while stopping" once per topic it held."""
    caplog.set_level(logging.INFO)
    run = TwoTopics(consumers=AssignedWhileStopping)
    two_topics.append(run)
    assert isinstance(run.consumer, AssignedWhileStopping)
    run.consumer.stop = run.stop
    run.start()
    for thread in run.threads:
        thread.join(DEADLINE_SECONDS)
    assert not run.failures
    lines = [r.getMessage() for r in caplog.records if "while stopping" in r.getMessage()]
    assert lines == ["input partitions images[0], texts[0] assigned while stopping: left to "
                     "their next owner"], lines  # fmt: skip


def test_upload_intents_are_committed_only_on_the_topics_of_pipelines_that_reconcile(
    two_topics: list[TwoTopics],
) -> None:
    """A pipeline with CONNECTOR_UPLOAD_RECONCILE=false keeps plain commits, whatever another
    pipeline of the process does."""
    run = TwoTopics({"upload_reconcile": "true"}, {}).start()
    two_topics.append(run)
    wait_for(lambda: run.texts.commits == {0: 30} and run.images.commits == {0: 30},
             "every record uploaded")  # fmt: skip
    run.finish()
    assert decode_intent(run.texts.metadata[0]) is not None
    assert run.images.metadata == {0: ""}


def test_one_commit_records_the_intents_of_every_partition_read_before_the_first_request(
    running: list[Running],
) -> None:
    """The first batch holds one partition's records; the intents of the others read with it are
    committed with its own, so the batches after it need no synchronous commit of their own."""
    partitions = {p: [item(f"{p}:{o}") for o in range(5)] for p in range(4)}
    run = Running(FakeConsumer(partitions), upload_reconcile="true", batch_max_items="5")
    running.append(run)
    wait_for(lambda: len(run.api.created) == 20, "every record uploaded", guard=run.check_running)
    intent_commits = list(run.consumer.sync_commits)
    run.finish()
    assert intent_commits == [{0: 0, 1: 0, 2: 0, 3: 0}]
    assert all(decode_intent(run.consumer.metadata[p]) is not None for p in partitions)


def test_a_failed_upload_names_the_pipeline_and_topic_of_its_lane(
    two_topics: list[TwoTopics],
) -> None:
    """The first pipeline's role runs the loop: what fails in another's lane says whose."""
    run = TwoTopics(images_api=BuggyApi())
    run.images.log[0].append(FakeMessage(0, 30, item("bug"), topic="images"))
    two_topics.append(run.start())
    wait_for(lambda: run.failures, "the loop failed")
    assert "pipeline images (input topic images)" in str(run.failures[0])
    assert "a bug in the upload path" in str(run.failures[0])


def test_a_stuck_dead_letter_names_its_input_topic_and_partition_and_pipeline(
    two_topics: list[TwoTopics],
) -> None:
    run = TwoTopics({}, {"dlq_timeout_seconds": "1"})
    run.images.log[0].append(FakeMessage(0, 30, b"not json", topic="images"))
    run.producer.failures = [KafkaError.TOPIC_AUTHORIZATION_FAILED] * 100_000
    two_topics.append(run.start())
    wait_for(lambda: run.failures, "the loop failed")
    assert isinstance(run.failures[0], DeadLetterStuckError)
    assert "from input partition images[0] of pipeline images" in str(run.failures[0])


def test_a_short_backlog_keeps_its_grace_beside_an_idle_pipeline_of_another_topic(
    two_topics: list[TwoTopics],
) -> None:
    """Pausing purges librdkafka's prefetch: a backlog shorter than BACKLOG_PAUSE_SECONDS only
    skips `consume()` while no other topic's records flow, here the idle `images` pipeline's."""
    run = TwoTopics({"max_in_flight": "1"}, {})
    two_topics.append(run)
    run.images.log[0].clear()
    run.apis[0].hang_on = {"t0"}
    run.start()
    wait_for(lambda: run.apis[0].requests == 1, "the first texts batch in flight, the rest wait")
    started = time.monotonic()
    wait_for(lambda: time.monotonic() - started > 0.3, "a backlog of 0.3 s")
    run.apis[0].release.set()
    wait_for(lambda: run.texts.commits == {0: 30}, "every texts record uploaded")
    assert run.texts.pauses == 0


def test_no_more_bulk_requests_are_in_flight_than_the_adaptive_limit_says(
    running: list[Running],
) -> None:
    api = FakeApi()
    api.hang_on = {"0:0"}
    limit = InFlightLimit(4)
    limit.throttled(limit.sent())
    limit.throttled(limit.sent())  # two 429s: 4 → 2 → 1
    consumer = FakeConsumer({0: [item(f"0:{o}") for o in range(8)]})
    run = Running(consumer, api, batch_max_items="1", in_flight_limit=limit)
    running.append(run)
    wait_for(lambda: api.requests == 1, "the first request")
    run.iterations_later(5)
    assert api.requests == 1  # max_in_flight is 4, the limit 1
    for _ in range(2 * limit.current):
        limit.succeeded()  # two rounds of successes: 2
    wait_for(lambda: api.created.keys() == {f"0:{o}" for o in range(1, 8)},
             "the rest, one at a time beside the stuck one")  # fmt: skip
    api.release.set()
    wait_for(lambda: consumer.commits == {0: 8}, "everything committed")
    assert set(api.created.values()) == {1}
    run.finish()


def test_revocation_commits_what_is_done_and_abandons_a_stuck_upload(
    running: list[Running],
) -> None:
    api = FakeApi()
    api.hang_on = {"1:3"}
    values = {p: [item(f"{p}:{o}") for o in range(10)] for p in range(2)}
    consumer = FakeConsumer(values)
    run = Running(consumer, api, batch_max_items="1", drain_timeout_seconds="0.2")
    running.append(run)
    wait_for(lambda: consumer.commits.get(0) == 10 and consumer.commits.get(1) == 3,
               "everything but the stuck upload committed")  # fmt: skip
    revoked = consumer.rebalance("revoke", [1])
    wait_for(revoked.is_set, "revocation handled")
    assert consumer.sync_commits[-1] == {1: 3}
    assert 1 not in consumer.assigned
    api.release.set()  # the abandoned upload succeeds after the hand-over
    wait_for(lambda: api.created.get("1:3") == 1, "the abandoned upload finishing")
    run.iterations_later(3)
    assert consumer.commits[1] == 3  # its completion does not count any more
    # The partition comes back: its records are read again from the committed offset.
    consumer.rebalance("assign", [1])
    wait_for(lambda: consumer.commits.get(1) == 10, "partition 1 committed after return")
    assert api.created["1:3"] == 2  # the documented cost of abandoning an upload
    run.finish()


def test_a_batch_handed_ahead_to_a_busy_request_thread_is_not_sent_once_revoked(
    running: list[Running],
) -> None:
    """A request thread starts the next batch handed to it as soon as it is free: one that was
    still waiting when its partition went is taken back and dropped, never sent."""
    api = FakeApi()
    api.hang_on = {"0:0"}
    consumer = FakeConsumer({0: [item(f"0:{o}") for o in range(3)]})
    run = Running(consumer, api, batch_max_items="1", max_in_flight="1",
                  drain_timeout_seconds="0.2")  # fmt: skip
    running.append(run)
    wait_for(lambda: consumer.position[0] == 3 and api.requests == 1, "every record read")
    run.iterations_later(3)  # "0:1" handed to the busy thread, "0:2" waits for room
    revoked = consumer.rebalance("revoke", [0])
    wait_for(revoked.is_set, "revocation handled")
    api.release.set()  # the abandoned upload succeeds after the hand-over
    wait_for(lambda: api.created.get("0:0") == 1, "the abandoned upload finishing")
    run.iterations_later(3)
    assert api.requests == 1
    assert api.created == {"0:0": 1}
    run.finish()


def test_shutdown_drains_commits_and_gives_up_on_a_stuck_upload(running: list[Running]) -> None:
    api = FakeApi()
    api.hang_on = {"0:2"}
    consumer = FakeConsumer({0: [item(f"0:{o}") for o in range(6)]})
    run = Running(consumer, api, batch_max_items="1", drain_timeout_seconds="0.3")
    running.append(run)
    wait_for(lambda: len(api.created) == 5, "the other uploads")
    run.finish()  # returns although the upload never ends by itself
    assert api.stopped.is_set()
    assert consumer.closed
    assert consumer.sync_commits[0] == {0: 2}


class UnansweringConsumer(FakeConsumer):
    """A group coordinator that stops answering: synchronous commits and the close wait for
    it (librdkafka's wait has no bound) until `answer` is set."""

    def __init__(self, partitions: Mapping[int, Sequence[bytes | None]]) -> None:
        super().__init__(partitions)
        self.answer = threading.Event()
        self.silent = False

    def commit(self, *, offsets: list[TopicPartition], asynchronous: bool = True) -> Any:
        if self.silent and not asynchronous:
            self.answer.wait()
        return super().commit(offsets=offsets, asynchronous=asynchronous)

    def close(self) -> None:
        if self.silent:
            self.answer.wait()
        super().close()


def test_a_stop_ends_in_its_budget_when_the_coordinator_stops_answering(
    running: list[Running], monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Seen after a broker restart: the final commit waited for an answer longer than the
    whole shutdown budget (librdkafka's synchronous commit has no timeout), and `run` exited 1,
    "did not finish draining in time"."""
    monkeypatch.setattr(bounded, "LEAVE_GROUP_SECONDS", 0.2)
    consumer = UnansweringConsumer({0: [item(f"0:{o}") for o in range(5)]})
    run = Running(consumer, FakeApi(), drain_timeout_seconds="0.3")
    running.append(run)
    wait_for(lambda: consumer.commits.get(0) == 5, "every upload committed in the background")
    consumer.silent = True
    try:
        run.finish()  # before: waited for the commit for good
        warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
        assert any("offset commit failed: offset commit: no answer from Kafka within" in w
                   for w in warnings), warnings  # fmt: skip
        assert any("did not leave its group within 0.2s" in w for w in warnings), warnings
    finally:
        consumer.answer.set()


@pytest.fixture
def short_group_leave(monkeypatch: pytest.MonkeyPatch) -> float:
    """Leaving the group takes 0.2 s at most (not 5): the stop after a drain takes 3.2 s."""
    monkeypatch.setattr(bounded, "LEAVE_GROUP_SECONDS", 0.2)
    after = MIN_FLUSH_SECONDS + MIN_COMMIT_SECONDS + 0.2 + CLOSE_SECONDS
    monkeypatch.setattr(stop_budget, "AFTER_DRAIN_SECONDS", after)
    return after


def test_a_stop_fits_a_shutdown_budget_just_above_the_drain_timeout(
    running: list[Running], short_group_leave: float
) -> None:
    """Seen: settings accepted (the shutdown budget above the drain timeout) and yet `run`
    exited 1, "did not finish draining in time": a drain that used its whole timeout (an upload
    that never ends) was followed by a final commit and a group leave the coordinator did not
    answer. The runner gives the role its budget from the stop on; the drain ends early enough
    for the rest to fit."""
    budget = 4.0
    api = FakeApi()
    api.hang_on = {"0:2"}
    consumer = UnansweringConsumer({0: [item(f"0:{o}") for o in range(5)]})
    run = Running(consumer, api, batch_max_items="1", drain_timeout_seconds="3.5",
                  shutdown_timeout_seconds=f"{budget:g}")  # fmt: skip
    running.append(run)
    wait_for(lambda: len(api.created) == 4, "the other uploads")
    consumer.silent = True
    try:
        run.stop.set()
        run.thread.join(budget)  # what the runner does (`run_roles`)
        assert not run.thread.is_alive(), "the stop overran the shutdown budget"
    finally:
        consumer.answer.set()


def test_a_stop_during_a_revocations_drain_ends_that_drain_within_its_budget(
    running: list[Running], short_group_leave: float
) -> None:
    """A stop that comes while a revocation drains (an upload that never ends) does not wait
    for that drain's own timeout and then drain again: both end by the stop's deadline."""
    budget = 5.0
    api = FakeApi()
    api.hang_on = {"0:2"}
    consumer = FakeConsumer({0: [item(f"0:{o}") for o in range(5)]})
    run = Running(consumer, api, batch_max_items="1", drain_timeout_seconds="4",
                  shutdown_timeout_seconds=f"{budget:g}")  # fmt: skip
    running.append(run)
    wait_for(lambda: len(api.created) == 4, "the other uploads")
    consumer.rebalance("revoke", [0])
    wait_for(lambda: api.requests >= 5 and consumer.consume_calls > 0, "the revocation's drain")
    wait_for(lambda: not consumer._rebalances, "the revocation begun")
    run.stop.set()
    run.thread.join(budget)
    assert not run.thread.is_alive(), "the revocation's drain and the stop's overran the budget"
    assert consumer.sync_commits[-1] == {0: 2}


def within_budget_of_the_request(run: Running, budget: float) -> None:
    """Wait for the role as the runner does: `budget` from when the stop was requested."""
    assert run.stop.requested_at is not None
    run.thread.join(max(0.0, run.stop.requested_at + budget - time.monotonic()))
    assert not run.thread.is_alive(), "the stop overran its budget, counted from its request"


class EnteredCommits(UnansweringConsumer):
    """An unanswering coordinator that says when a synchronous commit has begun to wait."""

    def __init__(self, partitions: Mapping[int, Sequence[bytes | None]]) -> None:
        super().__init__(partitions)
        self.waiting = threading.Event()

    def commit(self, *, offsets: list[TopicPartition], asynchronous: bool = True) -> Any:
        if self.silent and not asynchronous:
            self.waiting.set()
        return super().commit(offsets=offsets, asynchronous=asynchronous)


def test_a_stop_during_an_upload_intents_commit_fits_its_budget_from_the_request(
    running: list[Running], short_group_leave: float
) -> None:
    """Seen: a stop that came while the loop waited for an upload intent's commit (up to 5 s,
    the coordinator not answering) got its drain only after that wait, and the stop overran
    the budget. The commit's wait ends by the stop's deadline."""
    budget = 4.0
    consumer = EnteredCommits({0: [item(f"0:{o}") for o in range(3)]})
    consumer.silent = True
    run = Running(consumer, FakeApi(), upload_reconcile="true", drain_timeout_seconds="3",
                  shutdown_timeout_seconds=f"{budget:g}")  # fmt: skip
    running.append(run)
    try:
        wait_for(consumer.waiting.is_set, "the intent's commit waiting", guard=run.check_running)
        run.stop.set()
        within_budget_of_the_request(run, budget)
        assert consumer.sync_commits == [], "nothing was answered"
    finally:
        consumer.answer.set()


class RefusingThenSilent(UnansweringConsumer):
    """A group coordinator that refuses synchronous commits while `refusing` (counted), then,
    once `silent`, answers none."""

    def __init__(self, partitions: Mapping[int, Sequence[bytes | None]]) -> None:
        super().__init__(partitions)
        self.refusing = True
        self.refused = 0

    def commit(self, *, offsets: list[TopicPartition], asynchronous: bool = True) -> Any:
        if self.refusing and not asynchronous:
            self.refused += 1
            raise KafkaException(KafkaError(KafkaError.REBALANCE_IN_PROGRESS))
        return super().commit(offsets=offsets, asynchronous=asynchronous)


def test_a_stop_during_a_revocations_drain_sends_no_batch_whose_intent_is_not_committed(
    running: list[Running], short_group_leave: float
) -> None:
    """An upload intent's commit made during a revocation's drain is made inside the rebalance
    callback, where librdkafka waits for it without a bound: once a stop came, the batches
    whose intents are not committed yet are left to the next owner (their offsets are not
    committed either), and the drain does not wait for them."""
    budget = 4.0
    consumer = RefusingThenSilent({0: [item(f"0:{o}") for o in range(3)]})
    run = Running(consumer, FakeApi(), upload_reconcile="true", drain_timeout_seconds="3",
                  shutdown_timeout_seconds=f"{budget:g}")  # fmt: skip
    running.append(run)
    try:
        wait_for(lambda: consumer.refused > 0, "the intent refused", guard=run.check_running)
        consumer.rebalance("revoke", [0])
        wait_for(lambda: not consumer._rebalances, "the revocation begun")
        refused = consumer.refused
        wait_for(lambda: consumer.refused > refused, "the revocation's drain retrying the intent")
        run.stop.set()
        consumer.silent, consumer.refusing = True, False
        within_budget_of_the_request(run, budget)
        assert run.api.created == {}, "a batch without its intent committed was sent"
        assert consumer.sync_commits == [], "nothing was answered"
    finally:
        consumer.answer.set()


class SlowFlushProducer(FakeProducer):
    """A broker that acknowledges nothing while `hold`: a flush waits its whole timeout."""

    def __init__(self) -> None:
        super().__init__()
        self.flushing = threading.Event()

    def flush(self, timeout: float = 0) -> int:
        if self.hold and self.queued:
            self.flushing.set()
            threading.Event().wait(timeout)  # stands for the broker's silence
        return super().flush(timeout)


def test_a_stop_during_a_revocations_dead_letter_flush_ends_it_by_the_stops_deadline(
    running: list[Running], short_group_leave: float
) -> None:
    """A revocation flushes its partitions' dead letters until its own drain deadline (the
    drain timeout from the revocation); a stop that comes during that flush ends it by the
    stop's deadline, not the revocation's."""
    budget = 5.0
    producer = SlowFlushProducer()
    producer.hold = True
    consumer = FakeConsumer({0: [item("0:0"), b"not json", item("0:2")]})
    run = Running(consumer, FakeApi(), producer, drain_timeout_seconds="4",
                  shutdown_timeout_seconds=f"{budget:g}")  # fmt: skip
    running.append(run)
    wait_for(lambda: producer.queued and consumer.commits.get(0) == 1, "the dead letter waiting",
             guard=run.check_running)  # fmt: skip
    consumer.rebalance("revoke", [0])
    wait_for(producer.flushing.is_set, "the revocation's flush", guard=run.check_running)
    run.stop.set()
    within_budget_of_the_request(run, budget)
    assert consumer.sync_commits[-1] == {0: 1}, "the hand-over stops before the dead letter"


class SlowHandOver(UnansweringConsumer):
    """A coordinator that takes `seconds` (on the fake clock) to answer a revocation's commit,
    made inside the callback, and the stop requested as it begins; after it, silent."""

    def __init__(self, partitions: Mapping[int, Sequence[bytes | None]], clock: FakeClock,
                 seconds: float) -> None:  # fmt: skip
        super().__init__(partitions)
        self.clock = clock
        self.seconds = seconds
        self.stop: threading.Event = threading.Event()
        self.revoking = False

    def commit(self, *, offsets: list[TopicPartition], asynchronous: bool = True) -> Any:
        if not (self.revoking and not asynchronous):
            return super().commit(offsets=offsets, asynchronous=asynchronous)
        self.stop.set()
        self.clock.advance(self.seconds)
        answered = super().commit(offsets=offsets, asynchronous=asynchronous)
        self.revoking, self.silent = False, True
        return answered


def test_a_stop_requested_during_a_hand_over_counts_its_budget_from_the_request(
    running: list[Running], short_group_leave: float
) -> None:
    """The stop's deadlines count from its request, not from when the loop, back from a step
    that could not be cut (a revocation's commit, made inside librdkafka's callback), noticed
    it: the final commit then waits what is left, not a whole drain's time more. Measured on
    the fake clock, which the loop's waits for Kafka move."""
    drain, budget = 3.0, 3.0 + short_group_leave
    clock = FakeClock()
    consumer = SlowHandOver({0: [item(f"0:{o}") for o in range(3)], 1: [item("1:0")]}, clock,
                            seconds=4.0)  # fmt: skip
    run = Running(consumer, FakeApi(), clock=clock, drain_timeout_seconds=f"{drain:g}",
                  shutdown_timeout_seconds=f"{budget:g}")  # fmt: skip
    running.append(run)
    consumer.stop = run.stop
    wait_for(lambda: consumer.commits == {0: 3, 1: 1}, "everything committed",
             guard=run.check_running)  # fmt: skip
    consumer.revoking = True
    revoked = consumer.rebalance("revoke", [1])
    try:
        wait_for(revoked.is_set, "the hand-over", guard=run.check_running)
        assert consumer.sync_commits == [{1: 1}]
        run.finish()
        assert run.stop.requested_at is not None
        took = clock.monotonic() - run.stop.requested_at
        assert took <= budget, f"the stop took {took:g}s of a {budget:g}s budget"
    finally:
        consumer.answer.set()


class SlowAssignmentReads(FakeConsumer):
    """Committed offsets carrying a previous owner's upload intent, and a broker whose
    partition ends each take `end_seconds` to read; the stop (`stop`, once `wired`) comes while
    the committed offsets are read."""

    def __init__(self, partitions: int, end_seconds: float) -> None:
        super().__init__({partition: [] for partition in range(partitions)})
        self.end_seconds = end_seconds
        self.ends_read = 0
        self.stop = threading.Event()
        self.wired = threading.Event()

    def committed(self, partitions: list[TopicPartition], timeout: float) -> list[TopicPartition]:
        self.wired.wait(DEADLINE_SECONDS)
        self.stop.set()
        intent = encode_intent(UploadIntent(time.time() - 60))
        return [TopicPartition(self.topic, tp.partition, 0, metadata=intent) for tp in partitions]

    def get_watermark_offsets(
        self, partition: TopicPartition, timeout: float, cached: bool
    ) -> tuple[int, int]:
        self.ends_read += 1
        threading.Event().wait(self.end_seconds)  # stands for a broker slow to answer
        return (0, 10)


def test_a_stop_during_an_assignments_reads_leaves_the_partitions_and_fits_its_budget(
    running: list[Running], short_group_leave: float
) -> None:
    """An assignment read each partition's end (up to 10 s each with Kafka slow) although a
    stop had come meanwhile: with a dozen partitions the stop overran its budget. The reads
    stop with the stop, and the partitions are left to their next owner."""
    budget = 4.0
    consumer = SlowAssignmentReads(6, end_seconds=1.0)
    run = Running(consumer, FakeApi(), drain_timeout_seconds="1", upload_reconcile="true",
                  shutdown_timeout_seconds=f"{budget:g}")  # fmt: skip
    running.append(run)
    consumer.stop = run.stop
    consumer.wired.set()
    wait_for(run.stop.is_set, "the stop during the assignment's reads", guard=run.check_running)
    run.thread.join(budget)
    assert not run.thread.is_alive(), "the assignment's reads overran the stop's budget"
    assert consumer.ends_read == 0
    assert consumer.sync_commits == [], "nothing is committed for partitions left at once"


class SilentCoordinatorReads(FakeConsumer):
    """A group coordinator that answers no offset read: each `committed` call waits its whole
    timeout, as librdkafka's does, then times out; the stop (`stop`) comes during the first."""

    def __init__(self, partitions: int, *, waits: bool = True) -> None:
        super().__init__({partition: [] for partition in range(partitions)})
        self.stop = threading.Event()
        self.timeouts: list[float] = []
        self.waits = waits
        """False: each call's timeout passes at once (for calls too long for a unit test)."""

    def committed(self, partitions: list[TopicPartition], timeout: float) -> list[TopicPartition]:
        self.timeouts.append(timeout)
        self.stop.set()
        if self.waits:
            threading.Event().wait(timeout)  # stands for a coordinator that does not answer
        raise KafkaException(KafkaError(KafkaError._TIMED_OUT))


def test_a_stop_during_an_assignments_read_under_way_fits_its_budget_from_the_request(
    running: list[Running], short_group_leave: float
) -> None:
    """The read under way when a stop comes cannot be interrupted (a librdkafka call inside the
    rebalance callback, up to 10 s): it is made in calls no longer than the stop's drain, so
    the one under way ends within the stop's budget, and no other is made."""
    budget = 4.0
    consumer = SilentCoordinatorReads(2)
    run = Running(consumer, FakeApi(), drain_timeout_seconds="1", upload_reconcile="true",
                  shutdown_timeout_seconds=f"{budget:g}")  # fmt: skip
    running.append(run)
    consumer.stop = run.stop
    wait_for(run.stop.is_set, "the stop during the assignment's read", guard=run.check_running)
    within_budget_of_the_request(run, budget)
    call = max(budget - short_group_leave, MIN_READ_CALL_SECONDS)  # the drain, or the floor
    assert consumer.timeouts == [pytest.approx(call)], "one call, of the drain (or the floor)"
    assert consumer.sync_commits == [], "nothing is committed for partitions left at once"


def test_a_stop_during_a_routed_topics_offset_read_leaves_its_partitions_to_the_next_owner(
    routed: list[RoutedPipelines],
) -> None:
    """Seen: the one call of a routed topic's committed offsets timed out with a stop come
    during it: the timeout was taken for unreadable offsets, the assignment failed
    (MigrationError) and the role exited 1 instead of stopping cleanly."""
    stop = threading.Event()
    consumer = SilentCoordinatorReads(1, waits=False)
    consumer.stop = stop
    run = RoutedPipelines(0, unrouted=False, fake_consumer=consumer, stop=stop,
                          previous_groups=PreviousGroups(lambda _group, _partitions: []),
                          drain_timeout_seconds="10")  # fmt: skip
    routed.append(run)
    wait_for(stop.is_set, "the stop during the assignment's read")
    run.finish()
    assert consumer.timeouts == [10], "one call (the drain is the read's 10 s)"
    assert run.failures == []
    assert consumer.sync_commits == [], "nothing is committed for partitions left at once"


def test_a_stop_uploads_every_record_already_read_and_commits_them(
    running: list[Running],
) -> None:
    api = FakeApi()
    api.hang_on = {"0:0"}
    values = [b"not json" if o % 7 == 3 else item(f"0:{o}") for o in range(200)]
    consumer = FakeConsumer({0: values})
    run = Running(consumer, api, batch_max_items="10", max_in_flight="1", linger_ms="60000")
    running.append(run)
    wait_for(lambda: consumer.position[0] == 200 and api.requests == 1, "every record read")
    run.stop.set()
    api.release.set()
    run.finish()
    assert consumer.sync_commits[-1] == {0: 200}, "a clean stop left records read behind"
    assert len(api.created) == len([o for o in range(200) if o % 7 != 3])
    assert set(api.created.values()) == {1}
    assert len(run.dead_letters()) == len([o for o in range(200) if o % 7 == 3])


def test_wrong_key_at_startup_is_fatal_with_the_setting_named(running: list[Running]) -> None:
    api = FakeApi()
    api.startup_errors = [AuthenticationError("unauthorised", status=401)]
    run = Running(FakeConsumer({0: []}), api)
    run.thread.join(DEADLINE_SECONDS)
    assert isinstance(run.failure, StartupError)
    assert "TOLOKA_API_KEY" in str(run.failure)


def test_missing_project_at_startup_is_fatal_with_the_setting_named() -> None:
    api = FakeApi()
    api.startup_errors = [NotFoundError("no such project", status=404)]
    run = Running(FakeConsumer({0: []}), api)
    run.thread.join(DEADLINE_SECONDS)
    assert isinstance(run.failure, StartupError)
    assert "TOLOKA_APP_PROJECT_ID" in str(run.failure)


def test_an_unreachable_api_at_startup_is_waited_for(running: list[Running]) -> None:
    api = FakeApi()
    api.startup_errors = [ServerError("down", status=503)] * 3
    consumer = FakeConsumer({0: [item("a")]})
    run = Running(consumer, api)
    running.append(run)
    wait_for(lambda: consumer.commits.get(0) == 1, "the item uploaded")
    run.finish()


def test_stop_during_a_startup_outage_returns_and_interrupts_the_client() -> None:
    api = FakeApi()
    api.startup_errors = [ServerError("down", status=503)] * 10**6
    run = Running(FakeConsumer({0: []}), api)
    assert not run.role.readiness().ready
    run.finish()
    assert api.stopped.is_set()


def test_uploads_that_make_no_progress_for_the_progress_timeout_make_it_not_ready(
    running: list[Running],
) -> None:
    api = FakeApi()
    api.hang_on = {"b"}  # answers nothing, fails nothing: only the progress rule can see it
    consumer = FakeConsumer({0: [item("a"), item("b")]})
    run = Running(consumer, api, batch_max_items="1", progress_timeout_seconds="0.3")
    running.append(run)
    wait_for(lambda: consumer.commits.get(0) == 1, "the first item uploaded")
    assert run.role.readiness().ready, "work in flight, but not for long"
    wait_for(lambda: not run.role.readiness().ready, "the stall reported", DEADLINE_SECONDS)
    detail = run.role.readiness().detail
    assert detail.startswith("no record uploaded or dead-lettered for ")
    assert detail.endswith("while work waits (1 uploads in flight, 0 input records behind)")
    api.release.set()
    wait_for(lambda: run.role.readiness().ready, "ready again after progress", DEADLINE_SECONDS)
    run.finish()


def test_an_idle_uploader_stays_ready_however_long_it_waits_for_records(
    running: list[Running],
) -> None:
    consumer = FakeConsumer({0: [item("a")]})
    run = Running(consumer, progress_timeout_seconds="0.2")
    running.append(run)
    wait_for(lambda: consumer.commits.get(0) == 1, "the item uploaded")
    for _ in range(5):
        run.iterations_later(100)
        assert run.role.readiness().ready
    run.finish()


def test_the_uploader_is_a_role_the_runner_can_run() -> None:
    role: Role = Uploader(
        settings(), FakeApi(), Metrics(),
        consumer_factory=lambda _on_stats: FakeConsumer({}), producer_factory=FakeProducer,
    )  # fmt: skip
    assert role.name == "uploader"
    assert role.heartbeat.role == "uploader"
    assert role.readiness() == Readiness(False, "reading the app's input_spec from the Toloka API")


# --- pieces --------------------------------------------------------------------------------


def test_consumer_lag_follows_statistics_for_assigned_partitions_only() -> None:
    metrics = Metrics()
    lag = LagReporter(metrics, TOPIC)
    lag.assigned({0, 1})
    stats = {"topics": {TOPIC: {"partitions": {
        "0": {"consumer_lag": 7}, "1": {"consumer_lag": -1}, "2": {"consumer_lag": 9},
        "-1": {"consumer_lag": 3}}}}}  # fmt: skip
    lag.on_statistics(orjson.dumps(stats).decode())
    lag.on_statistics("not json")
    value = metrics.sample
    name = "toloka_connector_consumer_lag_messages"
    assert value(name, {"topic": TOPIC, "partition": "0"}) == 7
    assert value(name, {"topic": TOPIC, "partition": "1"}) is None
    assert value(name, {"topic": TOPIC, "partition": "2"}) is None
    lag.revoked({0, 1})
    assert value(name, {"topic": TOPIC, "partition": "0"}) is None


def test_backlog_is_the_lag_of_the_assigned_partitions() -> None:
    lag = LagReporter(Metrics(), TOPIC)

    def report(**lags: int) -> None:
        partitions = {name.removeprefix("p"): {"consumer_lag": n} for name, n in lags.items()}
        lag.on_statistics(orjson.dumps({"topics": {TOPIC: {"partitions": partitions}}}).decode())

    lag.assigned({0, 1})
    report(p0=0, p1=-1)  # -1: nothing committed yet, so librdkafka knows no lag
    assert lag.backlog() == 0
    report(p0=3, p1=4, p2=50)  # partition 2 belongs to another member
    assert lag.backlog() == 7
    lag.revoked({1})
    assert lag.backlog() == 3


def test_unacknowledged_dead_letters_pause_their_partition_then_stop_the_role(
    running: list[Running],
) -> None:
    bad = b"{" * 600
    producer = FakeProducer()
    producer.failures = [KafkaError.TOPIC_AUTHORIZATION_FAILED] * 100_000
    consumer = FakeConsumer({0: [bad] * 5000, 1: [item(f"1:{o}") for o in range(20)]})
    # The deadline leaves the checks below time to look while the role still runs (seen: on a
    # loaded machine, a 1 s deadline had stopped it before the pause was looked at).
    run = Running(consumer, producer=producer, dlq_max_pending_bytes="2048",
                  dlq_timeout_seconds="4")  # fmt: skip
    running.append(run)
    wait_for(lambda: consumer.paused == {0}, "the partition holding the dead letters paused")
    wait_for(lambda: consumer.commits.get(1) == 20, "the other partition committed")
    readiness = run.role.readiness()
    assert not readiness.ready
    assert "dead letters to items.dlq" in readiness.detail
    # Paused after the step that crossed the bound: at most one consume() call's worth read.
    assert consumer.position[0] <= CONSUME_MAX_MESSAGES, "the paused partition was read on"
    run.thread.join(DEADLINE_SECONDS)
    assert isinstance(run.failure, DeadLetterStuckError)
    assert consumer.sync_commits[-1] == {1: 20}, "what was done was not committed first"
    assert 0 not in consumer.commits
    assert producer.delivered == []


def test_client_settings_the_commit_rule_depends_on_are_set_and_defaults_yield() -> None:
    # A user cannot set the owned ones (KAFKA_ENABLE_AUTO_COMMIT … is a configuration error:
    # tests/unit/test_kafka_properties.py); the defaults yield to a user's value.
    environ = {"TOLOKA_API_KEY": "k", "TOLOKA_APP_PROJECT_ID": "p",
               "KAFKA_QUEUED_MAX_MESSAGES_KBYTES": "2048"}  # fmt: skip
    configured = load_settings(environ=environ)
    consumer = consumer_config(configured, lambda _stats: None)
    # librdkafka's 1 s would starve the loop after its prefetch queue filled up.
    assert consumer["fetch.queue.backoff.ms"] == 20
    slower = load_settings(environ={**environ, "KAFKA_FETCH_QUEUE_BACKOFF_MS": "1000"})
    assert consumer_config(slower, lambda _stats: None)["fetch.queue.backoff.ms"] == "1000"
    assert consumer["enable.auto.commit"] is False
    assert consumer["enable.auto.offset.store"] is False
    assert consumer["partition.assignment.strategy"] == "cooperative-sticky"
    assert consumer["queued.max.messages.kbytes"] == "2048"
    assert consumer["group.id"] == "toloka-connector"
    assert producer_config(configured)["enable.idempotence"] is True


@pytest.mark.parametrize(
    ("kafka", "expected"),
    [
        ({}, 100_000_000 + HEADERS_ALLOWANCE_BYTES),
        ({"KAFKA_RECEIVE_MESSAGE_MAX_BYTES": "5000000"}, 5_000_000 + HEADERS_ALLOWANCE_BYTES),
        ({"KAFKA_FETCH_MAX_BYTES": "200000000"}, 200_000_512 + HEADERS_ALLOWANCE_BYTES),
        ({"KAFKA_MESSAGE_MAX_BYTES": "900000000"}, 900_000_000),
    ],
)
def test_the_dead_letter_producer_carries_any_record_the_consumer_can_receive(
    kafka: dict[str, str], expected: int
) -> None:
    environ = {"TOLOKA_API_KEY": "k", "TOLOKA_APP_PROJECT_ID": "p", **kafka}
    assert producer_config(load_settings(environ=environ))["message.max.bytes"] == expected


class FencedProducer(FakeProducer):
    """A producer that has failed fatally (fenced, say): every produce raises."""

    def produce(self, topic: str, *, value: Any = None, key: Any = None, headers: Any = None,
                on_delivery: Any = None) -> None:  # fmt: skip
        raise KafkaException(KafkaError(KafkaError._FATAL, "the producer was fenced", fatal=True))


class BuggyApi(FakeApi):
    """Bulk create with a bug: a request holding the item "bug" raises outside the error tree."""

    def bulk_create_raw(
        self, body: bytes, count: int, *, retry_ambiguous: bool = True
    ) -> BulkCreateResult:
        if b'"bug"' in body:
            raise RuntimeError("a bug in the upload path")
        return super().bulk_create_raw(body, count, retry_ambiguous=retry_ambiguous)


class HeldCloseConsumer(FakeConsumer):
    """A consumer whose close() waits until `may_close` is set (a broker slow to answer the
    final commit and the group leave)."""

    def __init__(self, partitions: Mapping[int, Sequence[bytes | None]]) -> None:
        super().__init__(partitions)
        self.closing = threading.Event()
        self.may_close = threading.Event()

    def close(self) -> None:
        self.closing.set()
        self.may_close.wait(DEADLINE_SECONDS)
        super().close()


def test_no_batch_handed_ahead_is_sent_once_a_fatal_error_ends_the_role(
    running: list[Running],
) -> None:
    """A fatal error ends the role without draining: a batch handed ahead to a busy request
    thread and not started must not be sent while the role closes (its records are read again
    by the next reader: sent now, a pipeline without reconciliation would create them twice)."""
    api = FakeApi()
    api.hang_on = {"0:0", "0:1"}
    consumer = HeldCloseConsumer({0: [item(f"0:{o}") for o in range(3)], 1: []})
    before = set(threading.enumerate())
    run = Running(consumer, api, FencedProducer(), batch_max_items="1", max_in_flight="2")
    running.append(run)
    wait_for(lambda: consumer.position[0] == 3 and api.requests == 2, "every record read")
    run.iterations_later(3)  # "0:2" handed to the busy request threads
    request_threads = [t for t in threading.enumerate()
                       if t not in before and t.name == "uploader-request"]  # fmt: skip
    assert len(request_threads) == 2
    consumer.log[1].append(FakeMessage(1, 0, b"not json"))  # its dead letter: fenced, fatal
    wait_for(consumer.closing.is_set, "the role closing its consumer after the failure")
    api.release.set()  # the two requests under way finish while the consumer closes
    wait_for(lambda: not any(t.is_alive() for t in request_threads),
             "the request threads ending with their requests")  # fmt: skip
    consumer.may_close.set()
    run.thread.join(DEADLINE_SECONDS)
    assert run.failure is not None
    assert api.requests == 2, f"a batch was sent after the fatal error: {api.created}"


@pytest.mark.parametrize("failing", ["dead-letter producer", "upload thread"])
def test_a_fatal_error_commits_what_was_uploaded_before_it(
    running: list[Running], failing: str
) -> None:
    api = BuggyApi()
    consumer = FakeConsumer({0: [item(str(o)) for o in range(20)], 1: []})
    run = Running(consumer, api, FencedProducer(), batch_max_items="20",
                  commit_interval_ms="600000")  # fmt: skip
    running.append(run)
    in_flight = "toloka_connector_upload_requests_in_flight"
    wait_for(lambda: len(api.created) == 20
             and run.metrics.sample(in_flight) == 0,
             "the batch uploaded and its outcome applied")  # fmt: skip
    if failing == "dead-letter producer":
        consumer.log[1].append(FakeMessage(1, 0, b"not json"))
    else:
        consumer.log[1].append(FakeMessage(1, 0, item("bug")))
    run.thread.join(DEADLINE_SECONDS)
    assert run.failure is not None, "the fatal error did not end the uploader"
    final = consumer.sync_commits[-1] if consumer.sync_commits else {}
    assert final.get(0) == 20, f"the uploaded records were left uncommitted: {final}"
    assert consumer.closed


class RevokedKeyApi(FakeApi):
    """Bulk create answering 401 while `revoked` is set (a key revoked after start-up)."""

    def __init__(self) -> None:
        super().__init__()
        self.revoked = threading.Event()
        self.refusals = 0

    def bulk_create_raw(
        self, body: bytes, count: int, *, retry_ambiguous: bool = True
    ) -> BulkCreateResult:
        if self.revoked.is_set():
            self.refusals += 1
            raise AuthenticationError("unauthorised", status=401)
        return super().bulk_create_raw(body, count, retry_ambiguous=retry_ambiguous)


def test_a_key_revoked_after_start_up_is_waited_out_not_ready_and_logged_once(
    running: list[Running], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    api = RevokedKeyApi()
    api.revoked.set()
    consumer = FakeConsumer({0: [item(str(o)) for o in range(10)]})
    run = Running(consumer, api, batch_max_items="5")
    running.append(run)
    wait_for(lambda: api.refusals >= 10, "the key refused again and again")
    assert run.failure is None
    readiness = run.role.readiness()
    assert not readiness.ready
    assert "the API refuses the key (401/403)" in readiness.detail
    api.revoked.clear()
    wait_for(lambda: consumer.commits.get(0) == 10, "all uploaded once the key is accepted")
    assert run.role.readiness().ready
    run.finish()
    said = [r.getMessage() for r in caplog.records
            if r.levelno >= logging.INFO and "key" in r.getMessage()]  # fmt: skip
    assert len(said) == 2, f"not once when it began and once when it ended: {said}"


# --- input in a registry format while the Schema Registry fails ----------------------------

TASK_AVRO = json.dumps({"type": "record", "name": "Task", "fields": [
    {"name": "n", "type": "string"}, {"name": "text", "type": "string"}]})  # fmt: skip
TASK_AVRO_V2 = json.dumps({"type": "record", "name": "Task", "fields": [
    {"name": "n", "type": "string"}, {"name": "text", "type": "string"},
    {"name": "lang", "type": "string", "default": "en"}]})  # fmt: skip
UNKNOWN_SCHEMA = b"\x00\x00\x00\x03\xe7no record of any schema"


class AvroInput:
    """Records in Avro on the registry simulator, and the uploader's decoder of them: the
    connector's own client (each request tried once, as `item_decoder` builds it), whose cache
    is empty, so a schema id is asked for when the first of its records is decoded."""

    def __init__(
        self, registry: RegistrySimulator, user_info: str = "", connector_user_info: str = ""
    ) -> None:
        producer_side = SchemaRegistryClient(
            {"url": registry.url, **({"basic.auth.user.info": user_info} if user_info else {})}
        )
        self._context = SerializationContext(TOPIC, MessageField.VALUE)
        self._first = AvroSerializer(producer_side, TASK_AVRO)
        self._second = AvroSerializer(producer_side, TASK_AVRO_V2)
        self.second("registers the second schema")
        connector_side = SchemaRegistrySettings(
            url=registry.url, basic_auth_user_info=SecretStr(connector_user_info or user_info)
        )
        self.decode = RegistryItemDecoder(
            DECODERS["avro"](registry_client(connector_side, retried=False))
        )

    def first(self, n: str) -> bytes:
        """A record of the first schema."""
        value: bytes = self._first({"n": n, "text": "t"}, self._context)
        return value

    def second(self, n: str) -> bytes:
        """A record of the second schema (another id)."""
        value: bytes = self._second({"n": n, "text": "t", "lang": "de"}, self._context)
        return value


def test_records_whose_schema_the_registry_does_not_give_wait_for_it_then_go_on(
    running: list[Running], registry: RegistrySimulator, caplog: pytest.LogCaptureFixture
) -> None:
    """A registry outage (503) meets records of a schema id the uploader has not read yet: they
    wait (with every record behind them), the partition pauses, the role is not ready and says
    why, nothing is committed past the first of them and none is judged; once the registry
    answers they are uploaded, and an id it says does not exist is an invalid_schema dead letter.
    Before, the outage ended the role (exit 1, a restart loop)."""
    caplog.set_level(logging.INFO)
    avro = AvroInput(registry)
    consumer = FakeConsumer({0: [avro.first(str(o)) for o in range(10)]})
    run = Running(consumer, decode=avro.decode, batch_max_items="5")
    running.append(run)
    wait_for(lambda: consumer.commits.get(0) == 10, "the first records uploaded")
    registry.unavailable = True
    asked = len(registry.requests)
    behind = [FakeMessage(0, o, avro.first(str(o))) for o in range(12, 20)]
    consumer.log[0] += [FakeMessage(0, 10, avro.second("10")), FakeMessage(0, 11, UNKNOWN_SCHEMA),
                        *behind]  # fmt: skip
    wait_for(lambda: len(registry.requests) >= asked + 3, "the registry asked again",
             guard=run.check_running)  # fmt: skip
    readiness = run.role.readiness()
    assert not readiness.ready
    assert "wait for the Schema Registry" in readiness.detail
    assert "HTTP 503" in readiness.detail
    assert consumer.paused == {0}
    assert consumer.commits == {0: 10}
    assert run.producer.delivered == []
    assert run.failure is None
    registry.unavailable = False
    wait_for(lambda: consumer.commits.get(0) == 20, "every record uploaded or dead-lettered")
    wait_for(lambda: run.role.readiness().ready, "ready again")
    run.finish()
    assert sorted(api_n for api_n in run.api.created) == sorted(
        str(o) for o in range(20) if o != 11
    )
    assert set(run.api.created.values()) == {1}
    letters = run.dead_letters()
    assert list(letters) == ["0:11"]
    assert letters["0:11"]["headers"]["error-reason"] == INVALID_SCHEMA.encode()
    said = [r.getMessage() for r in caplog.records if "schema-registry" in r.getMessage()]
    assert len(said) == 2, f"not once when the outage began and once when it ended: {said}"


def records_waiting_for_the_registry(
    running: list[Running], registry: RegistrySimulator, *, uploaded: int
) -> tuple[FakeConsumer, Running]:
    """An uploader of Avro input that uploaded `uploaded` records, then read two more (the
    first of a schema new to it) while the registry does not answer, and asked it again."""
    avro = AvroInput(registry)
    consumer = FakeConsumer({0: [avro.first(str(o)) for o in range(uploaded)]})
    run = Running(consumer, decode=avro.decode)
    running.append(run)
    wait_for(lambda: consumer.commits.get(0) == uploaded, "the first records uploaded")
    registry.unavailable = True
    asked = len(registry.requests)
    consumer.log[0] += [FakeMessage(0, uploaded, avro.second(str(uploaded))),
                        FakeMessage(0, uploaded + 1, avro.first(str(uploaded + 1)))]  # fmt: skip
    wait_for(lambda: len(registry.requests) >= asked + 2, "the registry asked again",
             guard=run.check_running)  # fmt: skip
    return consumer, run


def test_a_stop_while_records_wait_for_the_registry_commits_up_to_the_first_of_them(
    running: list[Running], registry: RegistrySimulator
) -> None:
    """A clean stop during the outage leaves the waiting records uncommitted (none judged), and
    the next start reads and uploads them once the registry answers."""
    consumer, run = records_waiting_for_the_registry(running, registry, uploaded=5)
    run.finish()
    assert consumer.sync_commits[-1] == {0: 5}
    assert run.producer.delivered == []
    registry.unavailable = False
    restarted = FakeConsumer({0: []})  # the same topic and group, read by a new process
    restarted.log, restarted.commits = consumer.log, consumer.commits
    again = Running(restarted, run.api, decode=AvroInput(registry).decode)
    running.append(again)
    wait_for(lambda: restarted.commits.get(0) == 7, "the waiting records uploaded after a restart")
    again.finish()
    assert run.api.created == {str(o): 1 for o in range(7)}


def test_a_revocation_while_records_wait_for_the_registry_hands_them_over_unjudged(
    running: list[Running], registry: RegistrySimulator
) -> None:
    """The waiting records of a revoked partition are dropped, its commit stops before the first
    of them, and the role no longer waits for them; when the partition comes back they are read
    again from there (not decoded with the old assignment's state) and uploaded once."""
    consumer, run = records_waiting_for_the_registry(running, registry, uploaded=3)
    assert not run.role.readiness().ready
    revoked = consumer.rebalance("revoke", [0])
    wait_for(revoked.is_set, "the revocation handled", guard=run.check_running)
    assert consumer.sync_commits[-1] == {0: 3}
    wait_for(lambda: run.role.readiness().ready, "ready: nothing of its own waits any more")
    registry.unavailable = False
    consumer.rebalance("assign", [0])
    wait_for(lambda: consumer.commits.get(0) == 5, "the records uploaded after the return",
             guard=run.check_running)  # fmt: skip
    run.finish()
    assert run.api.created == {str(o): 1 for o in range(5)}
    assert run.producer.delivered == []


def test_on_a_routed_topic_unrouted_records_go_ahead_of_waiting_ones_but_no_commit_passes_them(
    routed: list[RoutedPipelines], registry: RegistrySimulator
) -> None:
    """A pipeline's records wait for the registry while a later record no pipeline takes is
    dead-lettered at once and another pipeline's later record is uploaded: the dead-letter
    topic holds the later record first, but the commit stops before the first waiting record,
    so nothing is lost (a stop now writes that dead letter again after the restart)."""
    avro = AvroInput(registry)
    run = RoutedPipelines(4, unrouted=False, decode=avro.decode, value=avro.first)
    routed.append(run)
    wait_for(lambda: run.consumer.commits == {0: 4}, "the first records uploaded")
    registry.unavailable = True
    named: tuple[Headers, ...] = (
        [("toloka-app-project-id", b"texts")],
        [],
        [("toloka-app-project-id", b"captions")],
    )
    values = avro.second("0:4"), avro.first("0:5"), avro.first("0:6")
    run.consumer.log[0] += [
        FakeMessage(0, 4 + n, value, headers=headers)
        for n, (value, headers) in enumerate(zip(values, named, strict=True))
    ]
    wait_for(lambda: len(run.producer.delivered) == 1 and "0:6" in run.apis[1].created,
             "the unrouted record dead-lettered, the captions record uploaded")  # fmt: skip
    assert run.producer.delivered[0]["headers"]["source-offset"] == b"5"
    assert "0:4" not in run.apis[0].created
    run.finish()
    assert run.consumer.sync_commits[-1] == {0: 4}, "the commit passed a waiting record"


def test_credentials_the_registry_refuses_end_the_role_naming_the_setting(
    running: list[Running],
) -> None:
    """Waiting will not bring credentials back: the role ends (after committing what it did)
    with a message naming SCHEMA_REGISTRY_BASIC_AUTH_USER_INFO, and no record is judged."""
    with RegistrySimulator(user_info="alice:s3cret") as guarded:
        avro = AvroInput(guarded, user_info="alice:s3cret", connector_user_info="alice:wrong")
        consumer = FakeConsumer({0: [avro.first(str(o)) for o in range(3)]})
        run = Running(consumer, decode=avro.decode)
        running.append(run)
        run.thread.join(DEADLINE_SECONDS)
    assert isinstance(run.failure, RegistryCredentialsError)
    assert "HTTP 401" in str(run.failure)
    assert "SCHEMA_REGISTRY_BASIC_AUTH_USER_INFO" in str(run.failure)
    assert "s3cret" not in str(run.failure)
    assert run.producer.delivered == []
    assert consumer.commits.get(0, 0) == 0
