"""Records in: what the upload loop's consume() calls hand out, to the lanes that take them.

A consume() call hands a partition's records out together, in ascending offsets, so the loop's
per-record work is done a run of one partition's consecutive records at a time: each `Message`
attribute read for all of them in one list comprehension, the offsets noted as runs
(`OffsetTracker`), the run routed (`routing.route_runs`) and each lane given its share
(`Lane.take`: decoded and batched together). (`operator.methodcaller` would read them at a
quarter of the speed.)
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from itertools import groupby
from typing import cast

from confluent_kafka import KafkaError

from connector.errors import KafkaOperationError
from connector.kafka.clients import Consumer, Message
from connector.uploader.assignment import InputTopic
from connector.uploader.routing import route_runs

log = logging.getLogger(__name__)

CONSUME_MAX_MESSAGES = 1000


def take_records(consumer: Consumer, timeout: float) -> Sequence[Message]:
    """Whatever is queued, waiting at most `timeout` for the first record only: a batch
    `consume()` would wait the whole timeout for a full batch, and the linger of the next
    batch would only start after it (seen: 100 ms added to the p50 upload latency)."""
    if timeout <= 0:
        return consumer.consume(CONSUME_MAX_MESSAGES, 0)
    first = consumer.consume(1, timeout)
    if not first:
        return first
    return [*first, *consumer.consume(CONSUME_MAX_MESSAGES - 1, 0)]


def hand_out(messages: Sequence[Message], topics: Mapping[str, InputTopic], now: float) -> None:
    """Hand the records to the lanes their topic (and header) routes them to, a run of one
    partition at a time; a consumer error is logged, or raised when fatal."""
    errors = [message.error() for message in messages]
    if any(errors):  # a KafkaError is always true
        for error in errors:
            if error is not None:
                _consumer_error(error)
        messages = [message for message, error in zip(messages, errors, strict=True)
                    if error is None]  # fmt: skip
    names = [message.topic() for message in messages]
    partitions = [message.partition() for message in messages]
    one_topic = names.count(names[0]) == len(names) if names else True
    start = 0
    for _key, run in groupby(partitions if one_topic else zip(names, partitions, strict=True)):
        stop = start + len(list(run))
        name, partition = names[start], partitions[start]
        topic = topics.get(name or "")
        if topic is not None and partition is not None:
            _hand_out_run(topic, partition, messages[start:stop], now)
        start = stop


def _hand_out_run(
    topic: InputTopic, partition: int, messages: Sequence[Message], now: float
) -> None:
    """Records of one partition, in ascending offsets (a record without an error has one)."""
    offsets = cast("list[int]", [message.offset() for message in messages])
    generation = topic.offsets.consumed_offsets(partition, offsets)
    if generation is None:
        return  # fetched before its partition was revoked: the new owner reads them
    for lane, refusal, first, end in route_runs(topic.route, messages):
        lane.take(messages[first:end], offsets[first:end], partition, generation,
                  refusal=refusal, now=now)  # fmt: skip


def _consumer_error(error: KafkaError) -> None:
    if error.fatal():
        raise KafkaOperationError(f"the input consumer failed: {error.str()}")
    if error.code() != KafkaError._PARTITION_EOF:
        log.warning("input consumer: %s", error.str())
