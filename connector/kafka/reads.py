"""Reading Kafka without joining in: a topic's partitions and watermarks, a group's committed
offsets, and reading a topic up to where it ended (`read_partitions`: the one reader of the
operations commands, `tail`, and the suites' `read_all`).

Every consumer here is assigned partitions and never joins a group or commits: looking must not
disturb the uploader's group or move its offsets. Kafka failures become KafkaOperationError, so
the command exits 1 with one line. Blocking calls are made in steps (`connector.kafka.steps`),
so Ctrl-C interrupts them promptly. The first call of a command (`partitions_of` with the
consumer's `RefusalWatch`) fails at once when the brokers refuse the connection, naming the
settings to check.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from functools import partial
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, TopicPartition

from connector.errors import KafkaOperationError
from connector.interrupts import librdkafka_call
from connector.kafka.availability import SETTINGS_TO_CHECK
from connector.kafka.refusals import RefusalWatch
from connector.kafka.steps import within
from connector.logs import kafka_logger

_POLL_SECONDS = 0.5
_BATCH_RECORDS = 500


def _reason(exc: KafkaException) -> str:
    error = exc.args[0] if exc.args else None
    return error.str() if isinstance(error, KafkaError) else str(exc)


def looking_consumer(
    kafka_config: Mapping[str, str],
    group_id: str | None = None,
    refusals: RefusalWatch | None = None,
) -> Consumer:
    """A consumer that reads committed records of assigned partitions. `group_id` only names
    the group whose committed offsets `committed()` returns; the consumer never joins it.
    `refusals` learns of the brokers refusing its connections."""
    config: dict[str, Any] = {
        **kafka_config,
        "group.id": group_id or f"toloka-connector-operations-{uuid.uuid4().hex[:12]}",
        "enable.auto.commit": False,
        "enable.auto.offset.store": False,
        "enable.partition.eof": True,
        "isolation.level": "read_committed",
        "logger": kafka_logger(),
    }
    return Consumer(config if refusals is None else refusals.config(config))


def first_contact(kafka_config: Mapping[str, str]) -> tuple[Consumer, RefusalWatch]:
    """A looking consumer for a command's first reads, with the watch `partitions_of` takes."""
    refusals = RefusalWatch(kafka_config["bootstrap.servers"])
    return looking_consumer(kafka_config, refusals=refusals), refusals


def partitions_of(
    consumer: Consumer, topic: str, timeout: float, refusals: RefusalWatch | None = None
) -> list[int]:
    """The topic's partition numbers; KafkaOperationError when it does not exist,
    KafkaRefusedError at once when the brokers refuse the connection (with the consumer's
    `refusals`; before the consumer is assigned partitions)."""
    between = None if refusals is None else (lambda: refusals.raise_if_refused(consumer))
    try:
        metadata = within(lambda step: consumer.list_topics(topic, timeout=step), timeout, between)
    except KafkaException as exc:
        at = "" if refusals is None else f" at {refusals.bootstrap_servers}"
        raise KafkaOperationError(
            f"cannot reach Kafka{at} within {timeout:g}s ({_reason(exc)}); {SETTINGS_TO_CHECK}"
        ) from None
    found = metadata.topics.get(topic)
    if found is None or found.error is not None or not found.partitions:
        raise KafkaOperationError(f"topic {topic!r} does not exist")
    return sorted(found.partitions)


def require_topics(kafka_config: Mapping[str, str], topics: list[str], timeout: float) -> None:
    """KafkaOperationError naming the first of `topics` that does not exist (a read of a missing
    topic would otherwise wait for its timeout)."""
    consumer, refusals = first_contact(kafka_config)
    try:
        for topic in topics:
            partitions_of(consumer, topic, timeout, refusals)
    finally:
        consumer.close()


@dataclass(frozen=True)
class Watermarks:
    low: int
    """The first offset still retained."""
    high: int
    """The offset the next record will get."""

    @property
    def retained(self) -> int:
        return self.high - self.low


def watermarks(
    consumer: Consumer, topic: str, partitions: list[int], timeout: float
) -> dict[int, Watermarks]:
    marks: dict[int, Watermarks] = {}
    for partition in partitions:
        where = TopicPartition(topic, partition)
        try:
            low, high = within(
                partial(consumer.get_watermark_offsets, where, cached=False), timeout
            )
        except KafkaException as exc:
            raise KafkaOperationError(
                f"cannot read the offsets of {topic}/{partition}: {_reason(exc)}"
            ) from None
        marks[partition] = Watermarks(low, high)
    return marks


def committed_offsets(
    kafka_config: Mapping[str, str],
    group_id: str,
    topic: str,
    partitions: list[int],
    timeout: float,
) -> dict[int, int | None]:
    """The group's committed offset per partition; None where it has committed none."""
    consumer = looking_consumer(kafka_config, group_id)
    wanted = [TopicPartition(topic, p) for p in partitions]
    try:
        found = within(lambda step: consumer.committed(wanted, timeout=step), timeout)
    except KafkaException as exc:
        raise KafkaOperationError(
            f"cannot read the committed offsets of group {group_id}: {_reason(exc)}"
        ) from None
    finally:
        consumer.close()
    return {tp.partition: (tp.offset if tp.offset >= 0 else None) for tp in found}


def read_partitions(
    consumer: Consumer,
    topic: str,
    starts: Mapping[int, int],
    *,
    ends: Mapping[int, int] | None = None,
    follow: bool = False,
    idle_timeout: float | None = None,
    skip_errors: bool = False,
) -> Iterator[Message]:
    """The records of each partition p of `topic` from `starts[p]` (an offset, or
    OFFSET_BEGINNING / OFFSET_END), in order per partition, until every partition is read to its
    end: `ends[p]` (exclusive) where `ends` is given, else where the partition ended when the
    reader got there. Records written after that are not chased, unless `follow`: then it reads
    on until the caller stops. `consumer` must have `enable.partition.eof` set.

    The end is librdkafka's partition-EOF event: a read_committed reader ends at the last
    stable offset, which can lie below the high watermark, and the event also lands past
    trailing transaction markers (an offset compare would not). KafkaOperationError when no
    record arrives for `idle_timeout` seconds, or when the topic fails (unless `skip_errors`).
    Each wait is a short step, so Ctrl-C ends the read promptly."""
    pending = (
        set(starts) if ends is None else {p for p, end in ends.items() if starts.get(p, 0) < end}
    )
    consumer.assign([TopicPartition(topic, p, starts.get(p, 0)) for p in sorted(pending)])
    idle = 0.0
    while pending or follow:
        with librdkafka_call():
            messages = consumer.consume(_BATCH_RECORDS, _POLL_SECONDS)
        if not messages:
            idle += _POLL_SECONDS
            if idle_timeout is not None and idle >= idle_timeout:
                raise KafkaOperationError(
                    f"{topic}: no record arrived for {idle_timeout:g}s; "
                    f"partitions {sorted(pending)} not read to their end"
                )
            continue
        idle = 0.0
        for message in messages:
            partition = message.partition() or 0
            error = message.error()
            if error is not None:
                if error.code() == KafkaError._PARTITION_EOF:
                    pending.discard(partition)
                elif not skip_errors:
                    raise KafkaOperationError(f"reading {topic}/{partition}: {error.str()}")
                continue
            if ends is None:
                yield message
                continue
            offset = message.offset() or 0
            if partition not in pending or offset >= ends[partition]:
                continue
            yield message
            if offset + 1 >= ends[partition]:
                pending.discard(partition)
