"""Fakes at the poller's seams: the listing API, a Kafka log with transactions, a clock.

`FakeKafka(transactional=True)` behaves like Kafka for read_committed readers: records of open or
aborted transactions are invisible, and `init_transactions` fences older producers of the same
id and aborts their open transaction. `transactional=False` behaves like the librdkafka mock:
every record is visible once produced, aborts remove nothing, and fencing never happens.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from confluent_kafka import KafkaError, KafkaException

from connector.config import PollerSettings
from connector.contract.cursor import cursor_key, decode_cursor, decode_segment, segment_key
from connector.kafka.clients import DeliveryCallback, Header
from connector.poller.state import FeedUpdate, StoredState
from connector.settings_groups import ApiSettings
from connector.toloka.models import AppProject, ItemPage
from testkit.clocks import FakeClock

T0 = 1_700_000_000.0
RESPONSE_LIMIT_BYTES = ApiSettings().max_response_bytes
"""The largest listing body the poller reads, as configured by default."""


def api_time(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).replace(tzinfo=None).isoformat()


def finished_item(
    item_id: str, finished: float | None, status: str = "COMPLETED", **extra: Any
) -> dict[str, Any]:
    raw: dict[str, Any] = {
        "id": item_id,
        "app_project_id": "proj",
        "status": status if finished is not None else "PROCESSING",
        "input_data": {"id": f"in-{item_id}", "text": "t"},
        "created_at": api_time(T0 - 100),
        **extra,
    }
    if finished is not None:
        raw["finished_at"] = api_time(finished)
        raw["output_data"] = {"result": ["ok"], "confidence": 0.9}
    return raw


def _seconds(api_datetime: str) -> float:
    return datetime.fromisoformat(api_datetime).replace(tzinfo=UTC).timestamp()


@dataclass
class _Listed:
    raw: dict[str, Any]
    finished: float | None
    visible_at: float


class FakeApi:
    """`list_items` over items that become visible at set times, sorted by (finished_at, id).

    `unfinished`: where items without finished_at appear ("none", "first", "last") when the
    request has no `finished_gte` filter, or when `honour_filters` is False.
    """

    def __init__(
        self,
        clock: FakeClock,
        *,
        unfinished: str = "none",
        honour_filters: bool = True,
        latency: float = 0.0,
    ) -> None:
        self.clock = clock
        self.unfinished = unfinished
        self.honour_filters = honour_filters
        self.latency = latency
        """Seconds every listing takes (the clock moves on by that much)."""
        self.items: list[_Listed] = []
        self.calls = 0
        self.failures: list[Exception] = []
        self.project_failures: list[Exception] = []
        self.stopped = threading.Event()

    def get_project(self) -> AppProject:
        if self.project_failures:
            raise self.project_failures.pop(0)
        return AppProject.model_validate({"id": "proj", "app_id": "app", "name": "p"})

    def stop_retrying(self) -> None:
        self.stopped.set()

    def add(self, raw: dict[str, Any], visible_at: float | None = None) -> None:
        finished = raw.get("finished_at")
        seconds = (
            None
            if finished is None
            else datetime.fromisoformat(finished).replace(tzinfo=UTC).timestamp()
        )
        self.items.append(_Listed(raw, seconds, visible_at if visible_at is not None else 0.0))

    def list_items(
        self,
        *,
        sort: str = "finished",
        after_id: str | None = None,
        limit: int = 100,
        filters: Mapping[str, str] | None = None,
    ) -> ItemPage:
        assert sort == "finished"
        self.calls += 1
        if self.latency:
            self.clock.advance(self.latency)
        if self.failures:
            raise self.failures.pop(0)
        now = self.clock.time()
        visible = [i for i in self.items if i.visible_at <= now]
        done = sorted(
            (i for i in visible if i.finished is not None), key=lambda i: (i.finished, i.raw["id"])
        )
        pending = [i for i in visible if i.finished is None]
        gte = (filters or {}).get("finished_gte")
        lte = (filters or {}).get("finished_lte")
        if gte is not None and self.honour_filters:
            floor = _seconds(gte)
            ceiling = math.inf if lte is None else _seconds(lte)
            listing = [i for i in done if i.finished is not None and floor <= i.finished <= ceiling]
        elif self.unfinished == "first":
            listing = pending + done
        elif self.unfinished == "last":
            listing = done + pending
        else:
            listing = done
        start = 0
        if after_id is not None:
            ids = [i.raw["id"] for i in listing]
            start = ids.index(after_id) + 1 if after_id in ids else len(listing)
        chunk = listing[start : start + limit]
        return ItemPage.from_api(
            {"content": [i.raw for i in chunk], "has_more": start + limit < len(listing)}
        )


# --- Kafka --------------------------------------------------------------------------------------


@dataclass
class FakeRecord:
    topic: str
    key: bytes | None
    value: bytes | None
    headers: list[Header] | None
    producer: int
    status: str = "open"  # open / committed / aborted
    flushed: bool = False


@dataclass(frozen=True)
class FakeMessage:
    """A delivery report's message, as confluent-kafka hands it to the callback."""

    record: FakeRecord

    def topic(self) -> str:
        return self.record.topic

    def key(self) -> bytes | None:
        return self.record.key

    def value(self) -> bytes | None:
        return self.record.value

    def headers(self) -> list[Header] | None:
        return self.record.headers


class Crash(BaseException):
    """Raised by a fake at a chosen call: everything in flight stays as it is."""


@dataclass
class FakeKafka:
    transactional: bool = True
    records: list[FakeRecord] = field(default_factory=list)
    epochs: dict[str, int] = field(default_factory=dict)
    lock: threading.RLock = field(default_factory=threading.RLock)
    next_producer: int = 0

    def visible(self, topic: str) -> list[FakeRecord]:
        with self.lock:
            if self.transactional:
                return [r for r in self.records if r.topic == topic and r.status == "committed"]
            return [
                r
                for r in self.records
                if r.topic == topic and (r.flushed or r.status == "committed")
            ]

    def published_ids(self, topic: str = "out") -> list[str]:
        return [
            dict(r.headers or [])["toloka-item-id"].decode()  # type: ignore[union-attr]
            for r in self.visible(topic)
        ]


class FakeProducer:
    """A transactional producer on FakeKafka. `faults` maps a method name to the errors its next
    calls raise (a `Crash` freezes the producer as a kill -9 would)."""

    def __init__(self, kafka: FakeKafka, transactional_id: str) -> None:
        self.kafka = kafka
        self.tid = transactional_id
        self.epoch = -1
        with kafka.lock:
            self.number = kafka.next_producer
            kafka.next_producer += 1
        self.faults: dict[str, list[BaseException]] = {}
        self.calls: list[str] = []
        self.pending: list[tuple[FakeRecord, DeliveryCallback | None]] = []
        self.delivery_errors: list[KafkaError | None] = []
        """The delivery reports of the records produced next, in order (None: delivered)."""
        self.max_bytes: int | None = None
        """Larger values are refused by `produce`, as librdkafka refuses them locally."""

    def _call(self, name: str) -> None:
        self.calls.append(name)
        queued = self.faults.get(name)
        if queued:
            raise queued.pop(0)
        if (
            self.kafka.transactional
            and name != "init_transactions"
            and (self.kafka.epochs.get(self.tid) != self.epoch)
        ):
            raise KafkaException(KafkaError(KafkaError._FENCED, "fenced", fatal=True))

    def init_transactions(self, timeout: float) -> None:
        self._call("init_transactions")
        with self.kafka.lock:
            self.epoch = self.kafka.epochs.get(self.tid, 0) + 1
            self.kafka.epochs[self.tid] = self.epoch
            for record in self.kafka.records:
                if (
                    record.status == "open"
                    and record.producer != self.number
                    and (self.kafka.transactional)
                ):
                    record.status = "aborted"

    def begin_transaction(self) -> None:
        self._call("begin_transaction")

    def produce(
        self,
        topic: str,
        *,
        value: bytes | None = None,
        key: bytes | None = None,
        partition: int = -1,
        on_delivery: DeliveryCallback | None = None,
        headers: list[Header] | None = None,
    ) -> None:
        self._call("produce")
        if self.max_bytes is not None and len(value or b"") > self.max_bytes:
            raise KafkaException(KafkaError(KafkaError.MSG_SIZE_TOO_LARGE))
        record = FakeRecord(topic, key, value, headers, self.number)
        with self.kafka.lock:
            self.kafka.records.append(record)
        self.pending.append((record, on_delivery))

    def poll(self, timeout: float) -> int:
        return 0

    def flush(self, timeout: float) -> int:
        self._call("flush")
        for record, callback in self.pending:
            error = self.delivery_errors.pop(0) if self.delivery_errors else None
            record.flushed = error is None
            if callback is not None:
                callback(error, FakeMessage(record))
        self.pending.clear()
        return 0

    def commit_transaction(self, timeout: float) -> None:
        self._call("commit_transaction")
        failed = [error for error in self.delivery_errors[: len(self.pending)] if error]
        if failed:
            # As librdkafka: a record that failed for good leaves the transaction abortable,
            # and the commit may say so before any delivery report is served (the abort serves
            # them).
            code = failed[0].code()
            raise KafkaException(KafkaError(code, "delivery failed", txn_requires_abort=True))
        self.flush(timeout)
        self._end("committed")

    def abort_transaction(self, timeout: float) -> None:
        self._call("abort_transaction")
        # The abort purges what is queued and serves every delivery report first.
        for record, callback in self.pending:
            error = self.delivery_errors.pop(0) if self.delivery_errors else None
            if callback is not None:
                callback(error or KafkaError(KafkaError._PURGE_QUEUE), FakeMessage(record))
        self.pending.clear()
        self._end("aborted")

    def cluster_id(self, timeout: float = -1) -> str | None:
        """Kafka's, or the mock cluster's (which names itself mockCluster…)."""
        return "fake-kafka" if self.kafka.transactional else "mockCluster1fa4e"

    def _end(self, status: str) -> None:
        with self.kafka.lock:
            for record in self.kafka.records:
                if record.producer == self.number and record.status == "open":
                    record.status = status


class FakeStateStore:
    def __init__(
        self,
        kafka: FakeKafka,
        project: str = "proj",
        topic: str = "state",
        clock: FakeClock | None = None,
    ) -> None:
        self.kafka = kafka
        self.project = project
        self.topic = topic
        self.clock = clock

    def _latest(self) -> dict[str, bytes | None]:
        latest: dict[str, bytes | None] = {}
        for record in self.kafka.visible(self.topic):
            latest[(record.key or b"").decode()] = record.value
        return latest

    def read(self) -> StoredState:
        latest = self._latest()
        value = latest.get(cursor_key(self.project))
        if value is None:
            return StoredState(None, ())
        cursor = decode_cursor(value)
        segments = []
        for ref in cursor.segments:
            segment_value = latest[segment_key(self.project, ref.seq)]
            assert segment_value is not None
            segments.append(decode_segment(ref.seq, segment_value))
        return StoredState(cursor, tuple(segments))

    def open_feed(self) -> FakeFeed:
        return FakeFeed(self)


class FakeFeed:
    def __init__(self, store: FakeStateStore) -> None:
        self.store = store
        self.seen = 0

    def poll(self, timeout: float) -> FeedUpdate:
        records = self.store.kafka.visible(self.store.topic)
        new = records[self.seen :]
        self.seen = len(records)
        key = cursor_key(self.store.project).encode()
        cursors = tuple(decode_cursor(r.value) for r in new if r.key == key and r.value)
        if not cursors and self.store.clock is not None:
            self.store.clock.advance(timeout)
        return FeedUpdate(True, cursors)

    def close(self) -> None:
        pass


def producer_factory(
    kafka: FakeKafka,
    made: list[FakeProducer],
    configure: Callable[[FakeProducer], None] | None = None,
) -> Callable[[], FakeProducer]:
    def create() -> FakeProducer:
        producer = FakeProducer(kafka, "toloka-connector-poller-proj")
        if configure is not None:
            configure(producer)
        made.append(producer)
        return producer

    return create


def poller_settings(**overrides: Any) -> PollerSettings:
    values: dict[str, Any] = {
        "output_topic": "out",
        "state_topic": "state",
        "page_size": 3,
        "poll_interval_seconds": 1.0,
        "idle_poll_interval_seconds": 3.0,
        "late_window_seconds": 30.0,
        "late_scan_interval_seconds": 5.0,
        "leader_timeout_seconds": 8.0,
    }
    values.update(overrides)
    return PollerSettings(**values)
