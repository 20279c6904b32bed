"""Kafka on the harness side: fast producing, counting, committed offsets, and the raw baselines
(batch consume without decoding; transactional produce in page-sized transactions)."""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from confluent_kafka import (
    OFFSET_BEGINNING,
    Consumer,
    KafkaError,
    KafkaException,
    Producer,
    TopicPartition,
)
from confluent_kafka.admin import AdminClient

from benchmarks.errors import BenchError
from benchmarks.progress import Progress, Throughput
from connector.kafka.produce import produce_when_room
from testkit.waiting import wait_for

_log = logging.getLogger("benchmarks.kafka")
_log.addHandler(logging.NullHandler())
_log.propagate = False

TIMEOUT_SECONDS = 30.0
Headers = list[tuple[str, str | bytes | None]]


def base_config(bootstrap: str) -> dict[str, Any]:
    return {"bootstrap.servers": bootstrap, "logger": _log}


def fast_producer_config(bootstrap: str, compression: str = "none") -> dict[str, Any]:
    """Large batches and a deep local queue: producing a backlog is not what is measured."""
    return {
        **base_config(bootstrap),
        "linger.ms": 20,
        "batch.size": 1_000_000,
        "batch.num.messages": 100_000,
        "queue.buffering.max.messages": 200_000,
        "queue.buffering.max.kbytes": 262_144,
        "compression.type": compression,
        "enable.idempotence": False,
    }


def produce_backlog(
    bootstrap: str,
    topic: str,
    values: Iterable[bytes],
    partitions: int,
    *,
    compression: str = "none",
) -> Throughput:
    """Produce `values` round-robin over the partitions (even shares for the scale scenario),
    flush, and return how fast that went. Counts are checked by the caller on the broker."""
    producer = Producer(fast_producer_config(bootstrap, compression))
    produce = producer.produce
    started = time.perf_counter()
    count = 0
    for count, value in enumerate(values, start=1):
        produce_when_room(
            partial(produce, topic, value, partition=count % partitions),
            producer.poll,
            wait_seconds=0.05,
        )
        if count & 0x3FFF == 0:
            producer.poll(0)
    left = producer.flush(120)
    if left:
        raise BenchError(f"{left} records to {topic} were not delivered")
    return Throughput(count, time.perf_counter() - started)


class Inspector:
    """One consumer that never joins a group, for metadata and watermarks."""

    def __init__(self, bootstrap: str) -> None:
        self._bootstrap = bootstrap
        self._consumer = Consumer({**base_config(bootstrap), "group.id": "benchmarks-inspector"})

    def partitions(self, topic: str) -> list[int]:
        metadata = self._consumer.list_topics(topic, timeout=TIMEOUT_SECONDS)
        described = metadata.topics.get(topic)
        if described is None or described.error is not None or not described.partitions:
            raise BenchError(f"topic {topic} has no partitions: {described and described.error}")
        return sorted(described.partitions)

    def wait_for_topic(self, topic: str, timeout: float = TIMEOUT_SECONDS) -> list[int]:
        """The partitions of a topic just created, once its metadata has reached the broker
        that answers (a new topic is unknown for a moment)."""

        def known() -> list[int] | None:
            metadata = self._consumer.list_topics(topic, timeout=TIMEOUT_SECONDS)
            described = metadata.topics.get(topic)
            if described is None or described.error is not None or not described.partitions:
                return None
            return sorted(described.partitions)

        return wait_for(known, timeout=timeout, what=f"topic {topic} to be known")

    def watermarks(self, topic: str) -> dict[int, tuple[int, int]]:
        return {
            p: self._consumer.get_watermark_offsets(
                TopicPartition(topic, p), timeout=TIMEOUT_SECONDS, cached=False
            )
            for p in self.partitions(topic)
        }

    def count(self, topic: str) -> int:
        """Records in the topic now (high minus low watermark: control records included)."""
        return sum(high - low for low, high in self.watermarks(topic).values())

    def close(self) -> None:
        self._consumer.close()


class GroupOffsets:
    """The committed offsets of a consumer group on one topic, read without joining it."""

    def __init__(self, bootstrap: str, group: str, topic: str, inspector: Inspector) -> None:
        marks = inspector.watermarks(topic)
        self._low = {p: low for p, (low, _) in marks.items()}
        self._high = {p: high for p, (_, high) in marks.items()}
        self.end = sum(high - low for low, high in marks.values())
        self._topic = topic
        self._consumer = Consumer({**base_config(bootstrap), "group.id": group})

    def committed(self) -> dict[int, int]:
        """partition → committed offset (the low watermark where nothing was committed)."""
        wanted = [TopicPartition(self._topic, p) for p in self._low]
        found = self._consumer.committed(wanted, timeout=TIMEOUT_SECONDS)
        return {tp.partition: max(tp.offset, self._low[tp.partition]) for tp in found}

    def done(self) -> int:
        """Records below the committed offsets."""
        return sum(offset - self._low[p] for p, offset in self.committed().items())

    def lagging(self) -> dict[int, tuple[int, int]]:
        """partition → (committed offset, end offset) where the group has not committed all."""
        return {
            p: (offset, self._high[p])
            for p, offset in self.committed().items()
            if offset < self._high[p]
        }

    def close(self) -> None:
        self._consumer.close()


class GroupMembers:
    """How many members of a consumer group hold partitions of a topic (AdminClient)."""

    def __init__(self, bootstrap: str, group: str, topic: str) -> None:
        self._admin = AdminClient(base_config(bootstrap))
        self._group = group
        self._topic = topic

    def assigned(self) -> int:
        futures = self._admin.describe_consumer_groups([self._group], request_timeout=5)
        try:
            description = futures[self._group].result()
        except KafkaException:
            return 0  # not there yet
        return sum(
            1
            for member in description.members
            if member.assignment is not None
            and any(tp.topic == self._topic for tp in member.assignment.topic_partitions)
        )


PREFETCH_KBYTES = 16384
"""librdkafka's prefetch cap for the harness's consumers, as the uploader sets it: the default
(64 MiB of payload, several hundred bytes of bookkeeping per small record on top) would let one
consumer of the harness hold most of a backlog in memory."""


def assigned_consumer(bootstrap: str, topic: str, partitions: Sequence[int], **extra: Any) -> Any:
    consumer = Consumer(
        {
            **base_config(bootstrap),
            "group.id": f"benchmarks-{uuid.uuid4().hex[:8]}",
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
            "queued.max.messages.kbytes": PREFETCH_KBYTES,
            **extra,
        }
    )
    consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in partitions])
    return consumer


def raw_consume(
    bootstrap: str, topic: str, partitions: Sequence[int], expected: int, timeout: float
) -> Progress:
    """Baseline: batch `consume(1000)` of the whole topic, no decoding.

    `fetch.queue.backoff.ms` is 0: with librdkafka's default (1 s, since 2.3) a partition whose
    local queue passed its threshold is not fetched again for up to a second, and a batch call
    on the tail of a finite backlog then waits out its timeout (seen here: 170k instead of 1M
    items/s in two runs of three). The baseline is the consumer's ceiling, not that stall."""
    consumer = assigned_consumer(bootstrap, topic, partitions, **{"fetch.queue.backoff.ms": 0})
    progress = Progress()
    count = 0
    deadline = time.monotonic() + timeout
    try:
        while count < expected:
            if time.monotonic() > deadline:
                raise BenchError(f"raw consume read {count} of {expected} records in {timeout}s")
            # Never more than what is left: a batch call waits for its count or the timeout.
            messages = consumer.consume(min(1000, expected - count), 0.5)
            if messages:
                count += sum(1 for message in messages if message.error() is None)
                progress.record(count)
    finally:
        consumer.close()
    return progress


@dataclass(slots=True)
class Received:
    """One record a TopicReader kept: wall-clock receive time, key, value, headers."""

    at: float
    key: bytes | None
    value: bytes
    headers: Headers


@dataclass
class TopicReader:
    """Reads a topic from the beginning on a thread, counting records (read_committed by
    default) and, with `keep`, keeping them with their receive time."""

    bootstrap: str
    topic: str
    partitions: Sequence[int]
    keep: bool = False
    read_committed: bool = True
    wait: float = 0.05
    """How long one `consume()` waits for a full batch: the receive times' resolution."""
    progress: Progress = field(default_factory=Progress)
    kept: list[Received] = field(default_factory=list)
    count: int = 0
    errors: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"reader-{self.topic}", daemon=True)
        isolation = "read_committed" if self.read_committed else "read_uncommitted"
        self._consumer = assigned_consumer(
            self.bootstrap, self.topic, self.partitions, **{"isolation.level": isolation}
        )

    def start(self) -> TopicReader:
        self.progress = Progress()
        self._thread.start()
        return self

    def _run(self) -> None:
        consumer, keep, kept = self._consumer, self.keep, self.kept
        while not self._stop.is_set():
            messages = consumer.consume(10_000, self.wait)
            if not messages:
                continue
            now = time.time()
            good = 0
            for message in messages:
                error = message.error()
                if error is not None:
                    if error.code() != KafkaError._PARTITION_EOF:
                        self.errors.append(error.str())
                    continue
                good += 1
                if keep:
                    kept.append(Received(now, message.key(), message.value(), message.headers()))
            self.count += good
            self.progress.record(self.count)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)
        self._consumer.close()


def transactional_produce(
    bootstrap: str,
    topic: str,
    records: Sequence[Received],
    transaction_size: int,
    *,
    linger_ms: int = 5,
) -> Progress:
    """Baseline: the same keys, values and headers in transactions of `transaction_size`."""
    producer = Producer(
        {
            **base_config(bootstrap),
            "transactional.id": f"benchmarks-raw-{uuid.uuid4().hex[:8]}",
            "linger.ms": linger_ms,
        }
    )
    producer.init_transactions(TIMEOUT_SECONDS)
    produce = producer.produce
    progress = Progress()
    done = 0
    for start in range(0, len(records), transaction_size):
        producer.begin_transaction()
        chunk = records[start : start + transaction_size]
        for record in chunk:
            produce_when_room(
                partial(produce, topic, record.value, key=record.key, headers=record.headers),
                producer.poll,
                wait_seconds=0.05,
            )
        producer.commit_transaction(TIMEOUT_SECONDS)
        done += len(chunk)
        progress.record(done)
    return progress
