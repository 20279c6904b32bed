"""`tail`: print a topic's records as JSON lines, as a read_committed consumer sees them."""

from __future__ import annotations

import argparse
import sys
import uuid
from typing import Any, cast

import orjson
from confluent_kafka import Consumer, KafkaError, KafkaException, Message, TopicPartition

from connector.cli import EXIT_INTERRUPTED
from connector.commands.common import add_settings_arguments, kafka_settings_from_args
from connector.config import KafkaSettings
from connector.errors import KafkaOperationError
from connector.interrupts import librdkafka_call
from connector.kafka.availability import SETTINGS_TO_CHECK
from connector.kafka.refusals import RefusalWatch
from connector.kafka.steps import within
from connector.logs import configure_logging, kafka_logger

METADATA_TIMEOUT_SECONDS = 10.0
STEP_SECONDS = 0.5


def record_as_json(message: Message) -> dict[str, Any]:
    value = message.value() or b""
    try:
        decoded: Any = orjson.loads(value)
    except orjson.JSONDecodeError:
        decoded = value.decode(errors="replace")
    pairs = cast(list[tuple[str, bytes | None]], message.headers() or [])
    return {
        "topic": message.topic(),
        "partition": message.partition(),
        "offset": message.offset(),
        "timestamp_ms": message.timestamp()[1],
        "key": (message.key() or b"").decode(errors="replace"),
        "headers": {name: (v or b"").decode(errors="replace") for name, v in pairs},
        "value": decoded,
    }


def run(args: argparse.Namespace) -> int:
    kafka = kafka_settings_from_args(args)
    configure_logging("text", "WARNING")
    refusals = RefusalWatch(kafka.bootstrap_servers)
    consumer = Consumer(
        refusals.config(
            {
                **kafka.client_config(),
                "group.id": f"toloka-connector-tail-{uuid.uuid4()}",
                "isolation.level": "read_committed",
                "enable.auto.commit": False,
                "enable.partition.eof": True,
                "logger": kafka_logger(),
            }
        )
    )
    printed = 0
    try:
        partitions = topic_partitions(consumer, args.topic, kafka.bootstrap_servers, refusals)
        offset = -2 if args.from_beginning else -1  # OFFSET_BEGINNING / OFFSET_END
        consumer.assign([TopicPartition(args.topic, p, offset) for p in partitions])
        at_end: set[int] = set()
        while args.follow or len(at_end) < len(partitions):
            # consume() does not let Ctrl-C in before its timeout: a short one keeps it prompt.
            with librdkafka_call():
                messages = consumer.consume(500, timeout=STEP_SECONDS)
            for message in messages:
                error = message.error()
                if error is not None:
                    if error.code() == KafkaError._PARTITION_EOF:
                        at_end.add(message.partition() or 0)
                    continue
                print(orjson.dumps(record_as_json(message)).decode(), flush=True)
                printed += 1
                if args.max and printed >= args.max:
                    return 0
    except KeyboardInterrupt:
        print(f"tail: interrupted after {printed} record(s)", file=sys.stderr)
        return EXIT_INTERRUPTED
    finally:
        consumer.close()
    return 0


def topic_partitions(
    consumer: Consumer, topic: str, bootstrap_servers: str, refusals: RefusalWatch
) -> list[int]:
    """The topic's partitions; a one-line error when Kafka does not answer within
    METADATA_TIMEOUT_SECONDS, refuses the connection (at once) or the topic does not exist."""
    try:
        metadata = within(
            lambda step: consumer.list_topics(topic, timeout=step),
            METADATA_TIMEOUT_SECONDS,
            lambda: refusals.raise_if_refused(consumer),
        )
    except KafkaException as exc:
        error = exc.args[0]
        reason = error.str() if isinstance(error, KafkaError) else str(exc)
        raise KafkaOperationError(
            f"cannot reach Kafka at {bootstrap_servers} within {METADATA_TIMEOUT_SECONDS:g}s "
            f"({reason}); {SETTINGS_TO_CHECK}"
        ) from None
    found = metadata.topics.get(topic)
    if found is None or found.error is not None or not found.partitions:
        raise KafkaOperationError(f"topic {topic!r} does not exist")
    return sorted(found.partitions)


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    summary = "print a topic's records as JSON lines (read_committed)"
    parser = subparsers.add_parser("tail", help=summary, description=summary)
    parser.add_argument("topic", help="the topic to read, e.g. toloka.results")
    parser.add_argument(
        "--follow",
        action="store_true",
        help="keep waiting for new records (Ctrl-C stops: exit 130, saying how many were printed)",
    )
    parser.add_argument(
        "--new-only",
        dest="from_beginning",
        action="store_false",
        help="start at the end instead of the beginning",
    )
    parser.add_argument("--max", type=int, default=0, help="stop after this many records")
    add_settings_arguments(parser, (KafkaSettings,))
    parser.set_defaults(func=run)
