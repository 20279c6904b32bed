"""`demo`: the whole pipeline end to end on embedded defaults, with progress and a summary."""

from __future__ import annotations

import argparse
import signal
import sys
import threading

import orjson

from connector.app.runner import install_signal_handlers, received_signal
from connector.commands.catalog import summary
from connector.commands.exit_codes import EXIT_INTERRUPTED
from connector.demo.pipeline import DemoOptions, run_demo
from connector.errors import ConfigError
from connector.logs import configure_logging

SIGNAL_CHECK_SECONDS = 0.1
"""How soon a recorded Ctrl-C starts the orderly stop."""

DESCRIPTION = """\
Run the whole pipeline on this machine, with nothing to install or configure: a development
Kafka broker, the Toloka API simulator, sample moderation items (a few malformed on purpose),
the uploader and the poller. Shows live progress and ends with a summary. Exits 0 only when every
item is accounted for: each valid item published once, each malformed one dead-lettered.
Ctrl-C stops it in order (feed, connector, simulator, broker), prints the summary of what was
done, and exits 130; a second Ctrl-C does not wait for the orderly stop."""


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser("demo", help=summary("demo"), description=DESCRIPTION)
    parser.add_argument("--items", type=int, default=1000, help="items to produce (%(default)s)")
    parser.add_argument(
        "--rate",
        type=float,
        default=500.0,
        help="items produced per second, 0 for as fast as possible (%(default)s)",
    )
    parser.add_argument(
        "--broker",
        choices=("mock", "kafka", "noida"),
        default="mock",
        help="development broker: librdkafka's mock cluster (instant), real Apache Kafka "
        "(needs java and mvn; first run downloads its jars) or noida-db (%(default)s)",
    )
    parser.add_argument(
        "--metrics-port",
        type=int,
        default=9400,
        help="port of /metrics, /healthz, /readyz; a free one when taken (%(default)s)",
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=120.0,
        help="give up when not every item is accounted for after this many seconds",
    )
    parser.add_argument(
        "--keep-running",
        action="store_true",
        help="leave the pipeline and its metrics up after the progress, until Ctrl-C (then it "
        "exits as the summary says: 0 when every item was accounted for); prints the commands "
        "(tail, status, healthcheck, produce-samples) that work against it",
    )
    parser.add_argument(
        "--json",
        action="store_true",
        help="print the summary as JSON on stdout (progress goes to stderr)",
    )
    parser.add_argument("--seed", type=int, default=7, help="seed of the sample data")
    parser.add_argument(
        "--projects",
        type=int,
        default=1,
        help="simulated app projects, one pipeline each with topics of its own, all served by "
        "the one connector process; the items are dealt out to them in turn (%(default)s)",
    )
    parser.add_argument(
        "--format",
        choices=("json", "avro", "protobuf", "json_schema"),
        default="json",
        help="value format of the input and output topics; the registry formats run a Schema "
        "Registry simulator beside the broker (%(default)s)",
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    configure_logging("text", "WARNING")
    if args.items < 1:
        raise ConfigError(["--items: must be at least 1"])
    if not 1 <= args.projects <= args.items:
        raise ConfigError(["--projects: must be at least 1 and at most --items"])
    if args.json:
        sys.stdout = sys.stderr  # progress lines go to stderr; only the JSON goes to stdout
    # The first Ctrl-C stops the demo in order (feed, roles, simulator, broker) and still
    # prints the summary; a second one does not wait for that. The runner's handler: it only
    # records the signal (one that set the event itself ran again inside the event's `set()` or
    # `wait()` on a Ctrl-C meanwhile, waiting for the event's lock it held: the demo hung); a
    # thread of the demo's turns it into the event.
    interrupted, done = threading.Event(), threading.Event()
    previous = signal.getsignal(signal.SIGINT)
    install_signal_handlers((signal.SIGINT,), second_raises=True)
    threading.Thread(
        target=_interrupt_on_signal, args=(interrupted, done), name="demo-ctrl-c", daemon=True
    ).start()
    try:
        summary = run_demo(
            DemoOptions(
                items=args.items,
                rate=args.rate,
                broker=args.broker,
                metrics_port=args.metrics_port,
                timeout_seconds=args.timeout,
                keep_running=args.keep_running,
                seed=args.seed,
                value_format=args.format,
                projects=args.projects,
            ),
            interrupted,
        )
    finally:
        done.set()
        signal.signal(signal.SIGINT, previous)
    if args.json:
        sys.stdout = sys.__stdout__
        print(orjson.dumps(summary.as_json(), option=orjson.OPT_INDENT_2).decode())
    else:
        print(summary.as_text())
    if summary.interrupted:
        return EXIT_INTERRUPTED
    return 0 if summary.accounted else 1


def _interrupt_on_signal(interrupted: threading.Event, done: threading.Event) -> None:
    """Set `interrupted` once a Ctrl-C was recorded (`received_signal`), until `done`."""
    while not done.wait(SIGNAL_CHECK_SECONDS):
        if received_signal() is not None:
            interrupted.set()
            return
