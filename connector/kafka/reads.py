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

import logging
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

log = logging.getLogger(__name__)

_POLL_SECONDS = 0.5
_BATCH_RECORDS = 500


def _reason(exc: KafkaException) -> str:
    error = exc.args[0] if exc.args else None
    return error.str() if isinstance(error, KafkaError) else str(exc)


def looking_consumer(
    kafka_config: Mapping[str, Any],
    group_id: str | None = None,
    refusals: RefusalWatch | None = None,
    *,
    isolation_level: str = "read_committed",
) -> Consumer:
    """A consumer that reads committed records of assigned partitions. `group_id` only names
    the group whose committed offsets `committed()` returns; the consumer never joins it.
    `refusals` learns of the brokers refusing its connections. A `read_uncommitted` one is only
    for `watermarks`: a read_committed consumer's high watermark is the last stable offset."""
    config: dict[str, Any] = {
        **kafka_config,
        "group.id": group_id or f"toloka-connector-operations-{uuid.uuid4().hex[:12]}",
        "enable.auto.commit": False,
        "enable.auto.offset.store": False,
        "enable.partition.eof": True,
        "isolation.level": isolation_level,
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
    """The offset the next record will get (past open transactions: not the last stable
    offset)."""

    @property
    def retained(self) -> int:
        """Offsets retained: records, and transaction markers (one per partition a transaction
        wrote to) and the records of aborted or open transactions."""
        return self.high - self.low


def watermarks(
    kafka_config: Mapping[str, Any], topic: str, partitions: list[int], timeout: float
) -> dict[int, Watermarks]:
    """The low and high watermark of each partition, asked with a read_uncommitted consumer of
    its own: a read_committed one answers the last stable offset as the high watermark, which
    stops short of every transaction still open."""
    consumer = looking_consumer(kafka_config, isolation_level="read_uncommitted")
    marks: dict[int, Watermarks] = {}
    try:
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
    finally:
        consumer.close()
    return marks


def end_offsets(
    kafka_config: Mapping[str, Any], topic: str, partitions: list[int], timeout: float
) -> dict[int, int]:
    """Each partition's high watermark: where `read_partitions` ends a read to the end."""
    return {
        p: marks.high for p, marks in watermarks(kafka_config, topic, partitions, timeout).items()
    }


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
    end: `ends[p]` (exclusive; `end_offsets`, the high watermarks) where `ends` is given, else
    the first partition-EOF (the last stable offset for a read_committed reader: what it sees
    now, short of any open transaction). Records written after that are not chased, unless
    `follow`: then it reads on until the caller stops. `consumer` must have
    `enable.partition.eof` set.

    With `ends`, a read_committed reader that reaches the last stable offset below the end
    waits there for the transaction still open to end (the partition-EOF event lands past
    trailing transaction markers, where an offset compare on records would not). It never ends
    early: KafkaOperationError (naming an open transaction when that is what it waits for) when
    nothing arrives for `idle_timeout` seconds, or when the topic fails (unless `skip_errors`).
    Each wait is a short step, so Ctrl-C ends the read promptly."""
    pending = (
        set(starts) if ends is None else {p for p, end in ends.items() if starts.get(p, 0) < end}
    )
    stopped_at: dict[int, int] = {}
    """Partitions whose last EOF lay below their end: the offset of the open transaction."""
    consumer.assign([TopicPartition(topic, p, starts.get(p, 0)) for p in sorted(pending)])
    idle = 0.0
    while pending or follow:
        with librdkafka_call():
            messages = consumer.consume(_BATCH_RECORDS, _POLL_SECONDS)
        if not messages:
            idle += _POLL_SECONDS
            if idle_timeout is not None and idle >= idle_timeout:
                raise _not_read_to_end(topic, pending, stopped_at, ends, idle_timeout)
            continue
        idle = 0.0
        for message in messages:
            partition = message.partition() or 0
            offset = message.offset() or 0
            error = message.error()
            if error is not None:
                if error.code() != KafkaError._PARTITION_EOF:
                    if not skip_errors:
                        raise KafkaOperationError(f"reading {topic}/{partition}: {error.str()}")
                elif ends is None or offset >= ends.get(partition, 0):
                    pending.discard(partition)
                    stopped_at.pop(partition, None)
                elif stopped_at.get(partition) != offset:
                    stopped_at[partition] = offset
                    log.info(
                        "%s/%d: waiting for a transaction open at offset %d to end (the "
                        "partition ends at %d)",
                        topic,
                        partition,
                        offset,
                        ends[partition],
                    )
                continue
            stopped_at.pop(partition, None)
            if ends is None:
                yield message
                continue
            if partition not in pending or offset >= ends[partition]:
                continue
            yield message
            if offset + 1 >= ends[partition]:
                pending.discard(partition)


def _not_read_to_end(
    topic: str,
    pending: set[int],
    stopped_at: Mapping[int, int],
    ends: Mapping[int, int] | None,
    idle_timeout: float,
) -> KafkaOperationError:
    if stopped_at and ends is not None:
        partition, offset = min(stopped_at.items())
        return KafkaOperationError(
            f"{topic}/{partition}: a transaction open at offset {offset} (the partition ends at "
            f"{ends[partition]}) did not end within {idle_timeout:g}s; records after it cannot "
            "be read until its producer commits or aborts it, or the broker aborts it at its "
            "transaction timeout: try again later"
        )
    return KafkaOperationError(
        f"{topic}: no record arrived for {idle_timeout:g}s; "
        f"partitions {sorted(pending)} not read to their end"
    )
