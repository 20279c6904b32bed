"""How large a record the poller may produce to each topic, known before it produces.

A result holds the item's input, output and metadata, so it is always larger than the input that
made it, and the uploader accepts inputs up to librdkafka's default `message.max.bytes`. A result
over the limit must be dead-lettered instead of published, or it blocks every later result.

The limit of a topic is the lowest of: the producer's `message.max.bytes` (librdkafka refuses a
larger record before sending it), the topic's `max.message.bytes` where DescribeConfigs can read
it (the broker refuses a larger record batch), and what refusals taught (a record refused alone
was too large). The producer's `batch.size` is kept under the topics' limits, so that records
that fit one by one also fit batched. When the broker refuses a batch all the same (a topic
limit that could not be read, or was lowered), the poller cannot tell which of its records was
too large: it then produces one record per batch (`batch.num.messages=1`), so that the next
refusal names the record exactly.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from confluent_kafka import KafkaException

from connector.kafka.admin import topic_config_values
from connector.kafka.limits import LIBRDKAFKA_MESSAGE_MAX_BYTES, RECORD_OVERHEAD_BYTES, record_size
from connector.poller.publisher import SizeRefusal

log = logging.getLogger(__name__)

TopicLimitReader = Callable[[Sequence[str]], Mapping[str, int]]
"""Reads `max.message.bytes` of the topics it can; leaves out the ones it cannot."""


def read_max_message_bytes(
    kafka_config: Mapping[str, str], timeout_seconds: float
) -> TopicLimitReader:
    """A TopicLimitReader asking the cluster (DescribeConfigs) within `timeout_seconds`."""

    def read(topics: Sequence[str]) -> Mapping[str, int]:
        try:
            found = topic_config_values(kafka_config, topics, "max.message.bytes", timeout_seconds)
        except KafkaException as exc:
            log.debug("cannot read max.message.bytes: %s", exc)
            return {}
        return {topic: int(value) for topic, value in found.items() if value.isdigit()}

    return read


class RecordLimits:
    """Per topic, the largest record the poller may produce; thread-safe enough for one writer
    (the poller loop) and readers of its figures."""

    def __init__(
        self,
        kafka_config: Mapping[str, Any],
        topics: Sequence[str],
        read_topic_limits: TopicLimitReader,
    ) -> None:
        self._producer_max = int(
            kafka_config.get("message.max.bytes", LIBRDKAFKA_MESSAGE_MAX_BYTES)
        )
        self._batch_size = int(kafka_config.get("batch.size", LIBRDKAFKA_MESSAGE_MAX_BYTES))
        self._topics = tuple(topics)
        self._read = read_topic_limits
        self._topic_max: dict[str, int] = {}
        self._learned: dict[str, int] = {}
        self._read_once = False
        self.single_record_batches = False

    def refresh(self, *, force: bool = False) -> None:
        """Read the topics' `max.message.bytes` (once, unless forced: a refusal says the limits
        changed or were never readable)."""
        if self._read_once and not force:
            return
        self._read_once = True
        found = dict(self._read(self._topics))
        unreadable = [topic for topic in self._topics if topic not in found]
        if unreadable:
            log.info(
                "max.message.bytes of %s cannot be read: relying on the producer's limit (%d) "
                "and on the broker's refusals",
                ", ".join(unreadable), self._producer_max,
            )  # fmt: skip
        self._topic_max.update(found)

    def limit(self, topic: str) -> int:
        """The largest `record_size` the poller produces to `topic`."""
        return min(
            self._producer_max,
            self._topic_max.get(topic, self._producer_max),
            self._learned.get(topic, self._producer_max),
        )

    def learn(self, refusals: Sequence[SizeRefusal]) -> bool:
        """Take in records refused as too large by a producer built with `producer_config()`.
        True when they tell which records were too large (each was refused alone); False when
        a batch of several records may have been refused for their sum: produce one record per
        batch from now on (the caller replaces the producer, which is then built so)."""
        if any(refusal.by_broker for refusal in refusals) and not self.single_record_batches:
            self.single_record_batches = True
            self.refresh(force=True)
            log.warning(
                "the broker refused a batch as too large for its topic: producing one record "
                "per batch from now on, so that a refusal names the record"
            )
            return False
        for refusal in refusals:
            record = refusal.record
            size = record_size(record.key, record.value, record.headers)
            self._learned[refusal.topic] = min(self.limit(refusal.topic), size - 1)
        return True

    def producer_config(self) -> dict[str, Any]:
        """Producer settings that keep every batch within the topics' limits."""
        config: dict[str, Any] = {}
        known = [self._topic_max[topic] for topic in self._topics if topic in self._topic_max]
        batch_size = min([self._batch_size, *(limit - RECORD_OVERHEAD_BYTES for limit in known)])
        if batch_size < self._batch_size:
            config["batch.size"] = max(batch_size, 1)
        if self.single_record_batches:
            config["batch.num.messages"] = 1
        return config
