"""`tail`: print a topic's records as JSON lines, as a read_committed consumer sees them."""

from __future__ import annotations

import argparse
import sys
import uuid
from typing import Any, cast

import orjson
from confluent_kafka import Consumer, KafkaError, Message, TopicPartition

from connector.commands.common import add_settings_arguments, kafka_settings_from_args
from connector.config import KafkaSettings
from connector.logs import configure_logging, kafka_logger


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
    consumer = Consumer(
        {
            **kafka.client_config(),
            "group.id": f"toloka-connector-tail-{uuid.uuid4()}",
            "isolation.level": "read_committed",
            "enable.auto.commit": False,
            "enable.partition.eof": True,
            "logger": kafka_logger(),
        }
    )
    metadata = consumer.list_topics(args.topic, timeout=10)
    partitions = metadata.topics[args.topic].partitions if args.topic in metadata.topics else {}
    if not partitions:
        print(f"tail: topic {args.topic!r} does not exist", file=sys.stderr)
        return 1
    offset = -2 if args.from_beginning else -1  # OFFSET_BEGINNING / OFFSET_END
    consumer.assign([TopicPartition(args.topic, p, offset) for p in partitions])
    at_end: set[int] = set()
    printed = 0
    try:
        while args.follow or len(at_end) < len(partitions):
            for message in consumer.consume(500, timeout=1.0):
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
        pass
    finally:
        consumer.close()
    return 0


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    summary = "print a topic's records as JSON lines (read_committed)"
    parser = subparsers.add_parser("tail", help=summary, description=summary)
    parser.add_argument("topic", help="the topic to read, e.g. toloka.results")
    parser.add_argument(
        "--follow", action="store_true", help="keep waiting for new records (Ctrl-C stops)"
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
