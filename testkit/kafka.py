"""Kafka as the suites read it back: unique names, a topic read to its end, headers as text."""

from __future__ import annotations

import time
import uuid
from typing import Any

from confluent_kafka import Consumer, Message, TopicPartition

from connector.kafka.reads import read_partitions
from testkit.waiting import wait_for


def unique_name(prefix: str = "test") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


def reader(bootstrap_servers: str, isolation_level: str = "read_committed") -> Consumer:
    """A consumer of assigned partitions: it joins no group and commits nothing."""
    return Consumer(
        {
            "bootstrap.servers": bootstrap_servers,
            "group.id": unique_name("read-topic"),
            "enable.auto.commit": False,
            "enable.partition.eof": True,
            "isolation.level": isolation_level,
        }
    )


def read_all(
    bootstrap_servers: str,
    topic: str,
    *,
    isolation_level: str = "read_committed",
    timeout: float = 30.0,
) -> list[Message]:
    """Every record of `topic` from the beginning to its current end, in partition order
    (`connector.kafka.reads.read_partitions`: with read_committed the end is the last stable
    offset, so aborted records are skipped and an open transaction stops the read).
    KafkaOperationError when no record arrives for `timeout` seconds."""
    consumer = reader(bootstrap_servers, isolation_level)
    try:
        partitions = consumer.list_topics(topic, timeout=timeout).topics[topic].partitions
        records = list(
            read_partitions(consumer, topic, dict.fromkeys(partitions, 0), idle_timeout=timeout)
        )
        return sorted(records, key=lambda record: (record.partition(), record.offset()))
    finally:
        consumer.close()


def uncommitted(bootstrap: str, topic: str, group_id: str) -> int:
    """Records of `topic` after the committed offsets of `group_id`."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group_id})
    try:
        partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        committed = consumer.committed([TopicPartition(topic, p) for p in partitions], 10)
        return sum(
            consumer.get_watermark_offsets(tp, timeout=10)[1] - max(tp.offset, 0)
            for tp in committed
        )
    finally:
        consumer.close()


def wait_until_served(bootstrap_servers: str, topic: str, partitions: int) -> None:
    """Return once the broker's metadata lists `topic` with its `partitions`, each led: Kafka
    answers CreateTopics once the controller has the topic, and a broker serves it a moment
    later; a command started in that moment is told the topic does not exist."""
    consumer = reader(bootstrap_servers)

    def served() -> bool:
        found = consumer.list_topics(topic, timeout=10).topics.get(topic)
        return (
            found is not None
            and found.error is None
            and len(found.partitions) == partitions
            and all(partition.leader >= 0 for partition in found.partitions.values())
        )

    try:
        wait_for(served, f"topic {topic} served by the broker", 30)
    finally:
        consumer.close()


def high_watermarks(bootstrap_servers: str, topic: str, timeout: float = 5.0) -> dict[int, int]:
    """Each partition's end offset (transaction markers and open transactions included)."""
    consumer = reader(bootstrap_servers, "read_uncommitted")
    try:
        partitions = consumer.list_topics(topic, timeout=timeout).topics[topic].partitions
        return {
            p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=timeout)[1]
            for p in partitions
        }
    finally:
        consumer.close()


def headers_of(message: Message) -> dict[str, str]:
    """A record's headers as text (the last value of a repeated header)."""
    raw: Any = message.headers() or []
    pairs = raw.items() if isinstance(raw, dict) else raw
    return {
        name: value.decode(errors="replace") if isinstance(value, bytes) else str(value)
        for name, value in pairs
    }


class TopicFollower:
    """Keeps reading a topic (read_committed) from the start; `poll()` returns what is new."""

    def __init__(self, bootstrap_servers: str, topic: str) -> None:
        self._consumer = reader(bootstrap_servers)
        partitions = self._consumer.list_topics(topic, timeout=60).topics[topic].partitions
        self._consumer.assign([TopicPartition(topic, p, 0) for p in partitions])
        self.records: list[Message] = []

    def poll(self, seconds: float = 1.0) -> list[Message]:
        new: list[Message] = []
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            message = self._consumer.poll(0.2)
            if message is None or message.error() is not None:
                continue
            new.append(message)
        self.records.extend(new)
        return new

    def close(self) -> None:
        self._consumer.close()
