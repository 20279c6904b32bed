"""`produce-samples`: put sample moderation items on the input topic, for trying the connector
without a producer of your own (the simulator's default app takes them as they are)."""

from __future__ import annotations

import argparse
import secrets
import sys
import threading
from collections import Counter

from connector.commands.catalog import summary
from connector.commands.common import (
    add_pipeline_argument,
    add_settings_arguments,
    pipeline_from_args,
)
from connector.commands.exit_codes import EXIT_INTERRUPTED
from connector.config import InputTopicSettings, KafkaSettings
from connector.demo.feed import Feed
from connector.demo.samples import MALFORMED_EVERY, sample_records
from connector.errors import ConfigError, KafkaOperationError
from connector.kafka.reads import require_topics
from connector.logs import configure_logging

KAFKA_TIMEOUT_SECONDS = 30.0

DESCRIPTION = f"""\
Produce sample moderation items to CONNECTOR_INPUT_TOPIC: JSON objects {{"id", "text"}} as the
simulator's default app (text moderation) expects them, keyed by their id. One in
{MALFORMED_EVERY} is malformed on purpose (broken JSON, a list, a missing field), so dead letters
show too; --valid-only leaves those out. Ids are `<prefix>-<n>`, the prefix new on every run
unless --prefix names one. The topic must exist (toloka-connector check --create-topics).
Exits 0 once every record is acknowledged, 1 when one was not, 130 on Ctrl-C (after saying how
many were produced)."""


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "produce-samples", help=summary("produce-samples"), description=DESCRIPTION
    )
    add_settings_arguments(parser, (KafkaSettings, InputTopicSettings))
    add_pipeline_argument(parser)
    parser.add_argument("--count", type=int, default=100, help="items to produce (%(default)s)")
    parser.add_argument(
        "--rate",
        type=float,
        default=0.0,
        help="items per second, 0 for as fast as possible (%(default)s)",
    )
    parser.add_argument("--prefix", help="id prefix [default: sample-<random>]")
    parser.add_argument("--seed", type=int, default=7, help="seed of the texts (%(default)s)")
    parser.add_argument("--valid-only", action="store_true", help="no malformed records among them")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    settings = pipeline_from_args(args)
    kafka, topic = settings.kafka, settings.get(InputTopicSettings).input_topic
    configure_logging("text", "WARNING")
    if args.count < 1:
        raise ConfigError(["--count: must be at least 1"])
    config = kafka.client_config()
    prefix = args.prefix or f"sample-{secrets.token_hex(3)}"
    records = sample_records(args.count, args.seed, prefix=prefix, malformed=not args.valid_only)
    malformed = Counter(r.expected for r in records if r.expected != "valid")
    feed = Feed(records, config, topic, args.rate)
    try:
        require_topics(config, [topic], KAFKA_TIMEOUT_SECONDS)  # a producer would create it
        left = feed.run(threading.Event())
    except KeyboardInterrupt:
        print(
            f"produce-samples: interrupted: {feed.delivered} of {args.count} record(s) "
            f"produced to {topic} (ids {prefix}-…)",
            file=sys.stderr,
        )
        return EXIT_INTERRUPTED
    if left or feed.failures:
        reason = feed.failures[0] if feed.failures else "not acknowledged in time"
        raise KafkaOperationError(
            f"{left + len(feed.failures)} of {args.count} record(s) not delivered to {topic} "
            f"at {kafka.bootstrap_servers} ({reason})"
        )
    reasons = ", ".join(f"{count} {reason}" for reason, count in sorted(malformed.items()))
    print(
        f"produced {feed.delivered} record(s) to {topic} at {kafka.bootstrap_servers}, ids "
        f"{prefix}-0 … {prefix}-{args.count - 1}"
        + (f" ({sum(malformed.values())} malformed on purpose: {reasons})" if malformed else "")
    )
    return 0
