"""`tail`: print a topic's records as JSON lines, as a read_committed consumer sees them."""

from __future__ import annotations

import argparse
import sys
import uuid
from typing import Any, cast

import orjson
from confluent_kafka import OFFSET_BEGINNING, OFFSET_END, Message

from connector.commands.catalog import summary
from connector.commands.common import add_settings_arguments, kafka_settings_from_args
from connector.commands.exit_codes import EXIT_INTERRUPTED
from connector.config import KafkaSettings
from connector.kafka.reads import end_offsets, looking_consumer, partitions_of, read_partitions
from connector.kafka.refusals import RefusalWatch
from connector.logs import configure_logging

METADATA_TIMEOUT_SECONDS = 10.0
OPEN_TRANSACTION_WAIT_SECONDS = 60.0
"""How long `tail` without --follow waits at a transaction still open (the poller's transaction
timeout, by default; past it the broker aborts the transaction)."""


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
    kafka_config = kafka.client_config()
    consumer = looking_consumer(kafka_config, f"toloka-connector-tail-{uuid.uuid4()}", refusals)
    printed = 0
    try:
        # A one-line error when Kafka does not answer within METADATA_TIMEOUT_SECONDS, refuses
        # the connection (at once) or the topic does not exist.
        partitions = partitions_of(consumer, args.topic, METADATA_TIMEOUT_SECONDS, refusals)
        offset = OFFSET_BEGINNING if args.from_beginning else OFFSET_END
        starts = dict.fromkeys(partitions, offset)
        # Without --follow, to the high watermarks: past any transaction open now, once it ends.
        ends = (
            None
            if args.follow
            else end_offsets(kafka_config, args.topic, partitions, METADATA_TIMEOUT_SECONDS)
        )
        for message in read_partitions(
            consumer,
            args.topic,
            starts,
            ends=ends,
            follow=args.follow,
            idle_timeout=None if args.follow else OPEN_TRANSACTION_WAIT_SECONDS,
            skip_errors=True,
        ):
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


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser("tail", help=summary("tail"), description=summary("tail"))
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
