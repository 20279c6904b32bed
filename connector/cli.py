"""`toloka-connector`: parse the command line, run one command, turn errors into exit codes.

Exit codes: 0 clean (for the servers, after a SIGTERM/SIGINT drain too), 2 configuration error
(one line per problem, each naming the setting), 1 any other fatal error (one line; its
traceback only at DEBUG), 130 a one-shot command interrupted by SIGINT (Ctrl-C), after saying
what it had done. Every expected failure is a ConnectorError and is turned into its exit code
here only.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence

from connector import __version__
from connector.commands.exit_codes import EXIT_CONFIG, EXIT_FATAL, EXIT_INTERRUPTED, EXIT_OK
from connector.errors import ConfigError, ConnectorError
from connector.interrupts import held_inside_librdkafka_calls

SERVERS = frozenset({"run", "upload", "poll", "simulator", "embedded-kafka"})
"""Commands that run until stopped: SIGINT or SIGTERM is their normal end (exit 0). Every other
command is one-shot: SIGINT interrupts it (exit 130); those with something to tell (how much was
replayed, whether the cursor was written) catch it themselves and return EXIT_INTERRUPTED."""

# Each module adds its subcommand with `register(subparsers)`; imported only when present so a
# command under construction cannot break the others.
COMMAND_MODULES = (
    "connector.commands.roles",
    "connector.commands.check",
    "connector.commands.simulator",
    "connector.commands.embedded_kafka",
    "connector.commands.demo",
    "connector.commands.healthcheck",
    "connector.commands.tail",
    "connector.commands.operations",
    "connector.commands.produce_samples",
)

log = logging.getLogger("connector")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="toloka-connector",
        description="Bridge between Apache Kafka and Toloka's streaming Apps API.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name == name:
                continue
            raise
        module.register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        if args.command in SERVERS:
            code: int = args.func(args)
        else:
            with held_inside_librdkafka_calls():
                code = args.func(args)
    except ConfigError as exc:
        for problem in exc.problems:
            print(problem, file=sys.stderr)
        return EXIT_CONFIG
    except ConnectorError as exc:
        log.debug("%s failed", args.command, exc_info=True)  # shown at CONNECTOR_LOG_LEVEL=DEBUG
        print(f"toloka-connector {args.command}: {exc}", file=sys.stderr)
        return EXIT_FATAL
    except KeyboardInterrupt:
        if args.command in SERVERS:
            return EXIT_OK
        print(f"toloka-connector {args.command}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    return code
