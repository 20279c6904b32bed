"""`embedded-kafka`: start a local Kafka-protocol broker for development, print its address.

Prints the bootstrap address on stdout as one line once the broker serves requests, then runs
until SIGTERM or SIGINT, stops the broker cleanly and exits 0.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from pathlib import Path

from connector.app.runner import install_signal_handlers, received_signal
from connector.app.topics import topic_specs
from connector.commands.catalog import summary
from connector.config import PollerSettings, UploaderSettings, load_group, merged_variables
from connector.devtools.brokers.base import BrokerKind
from connector.devtools.brokers.maven import KAFKA_VERSION, cache_root
from connector.devtools.brokers.start import default_kind, start_broker
from connector.errors import ConfigError

_KINDS = (BrokerKind.KAFKA, BrokerKind.MOCK, BrokerKind.NOIDA)
SIGNAL_CHECK_SECONDS = 0.2

_DESCRIPTION = f"""\
Start a local Kafka-protocol broker for development and print its bootstrap address
(one line on stdout, e.g. 127.0.0.1:9092) once it accepts requests. Runs until SIGTERM or
SIGINT (Ctrl-C), then stops the broker and exits 0.

kinds:
  kafka   real Apache Kafka {KAFKA_VERSION} (KRaft, one node) run with `java`; its jars come from
          Maven Central through `mvn` the first time and are kept in
          {cache_root()}/kafka-{KAFKA_VERSION}/libs. Starts in a few seconds.
  mock    librdkafka's mock cluster (3 brokers) from the confluent-kafka wheel. Starts in
          milliseconds; transactions are NOT like Kafka's (aborted records stay visible, no
          fencing), CreateTopics is not implemented (topics are auto-created on first produce).
  noida   noida-db's Kafka protocol (PyPI noida-db). Transactions like Kafka's, but a killed
          consumer-group member is never evicted.

The default is kafka where `java` and `mvn` are on PATH, else mock. Without --data-dir the
broker's data lives in a temporary folder removed on exit."""


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "embedded-kafka",
        help=summary("embedded-kafka"),
        description=_DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--kind",
        choices=[kind.value for kind in _KINDS],
        default=None,
        help=f"which broker to run [default: {default_kind().value} on this machine]",
    )
    parser.add_argument(
        "--port",
        type=int,
        default=None,
        help="client port on 127.0.0.1 (kafka, noida) [default: a free port; a kept "
        "--data-dir reuses its previous port]",
    )
    parser.add_argument(
        "--create-topics",
        action="store_true",
        help="create the connector's four topics, named by CONNECTOR_INPUT_TOPIC, "
        "CONNECTOR_OUTPUT_TOPIC, CONNECTOR_DLQ_TOPIC and CONNECTOR_STATE_TOPIC (or their "
        "defaults; the state topic compacted), before printing the address: the mock cluster "
        "cannot create topics for `check --create-topics`",
    )
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=None,
        metavar="DIR",
        help="keep the broker's data in DIR across runs (kafka, noida) "
        "[default: a temporary folder, removed on exit]",
    )
    parser.set_defaults(func=run)


def topic_settings() -> tuple[UploaderSettings, PollerSettings]:
    """The topic names from the environment (the defaults where unset)."""
    variables = merged_variables(None)
    return load_group(UploaderSettings, variables), load_group(PollerSettings, variables)


def run(args: argparse.Namespace) -> int:
    kind = BrokerKind(args.kind) if args.kind else default_kind()
    if kind is BrokerKind.MOCK and args.port is not None:
        raise ConfigError(["--port: the mock cluster picks its own ports"])
    if kind is BrokerKind.MOCK and args.data_dir is not None:
        raise ConfigError(["--data-dir: the mock cluster keeps its records in memory only"])
    # Handlers first: a signal during the broker's start still ends in a clean stop below. They
    # only record it (the runner's, which take no lock: a second Ctrl-C could otherwise hang us).
    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT)}
    install_signal_handlers()
    try:
        with start_broker(kind, port=args.port, data_dir=args.data_dir) as broker:
            if args.create_topics:
                broker.create_topics(topic_specs(*topic_settings()))
            print(broker.bootstrap_servers, flush=True)
            print(f"{kind.value} broker running; Ctrl-C or SIGTERM stops it", file=sys.stderr)
            idle = threading.Event()  # never set: a timed wait lets the handler run
            while received_signal() is None:
                idle.wait(SIGNAL_CHECK_SECONDS)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return 0
