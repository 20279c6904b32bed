"""`toloka-connector`: parse the command line, run one command, turn errors into exit codes.

Exit codes: 0 clean (for the servers, after a SIGTERM/SIGINT drain too), 2 configuration error
(one line per problem, each naming the setting), 1 any other fatal error (one line; its
traceback only at DEBUG), 130 a one-shot command interrupted by SIGINT (Ctrl-C), after saying
what it had done. Every expected failure is a ConnectorError and is turned into its exit code
here only.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable, Sequence

from connector import __version__
from connector.commands import (
    check,
    demo,
    embedded_kafka,
    healthcheck,
    operations,
    produce_samples,
    roles,
    simulator,
    tail,
)
from connector.commands.common import Subparsers
from connector.commands.exit_codes import EXIT_CONFIG, EXIT_FATAL, EXIT_INTERRUPTED, EXIT_OK
from connector.errors import ConfigError, ConnectorError
from connector.interrupts import held_inside_librdkafka_calls
from connector.logs import redact

SERVERS = frozenset({"run", "upload", "poll", "simulator", "embedded-kafka"})
"""Commands that run until stopped: SIGINT or SIGTERM is their normal end (exit 0). Every other
command is one-shot: SIGINT interrupts it (exit 130); those with something to tell (how much was
replayed, whether the cursor was written) catch it themselves and return EXIT_INTERRUPTED."""

COMMANDS: tuple[Callable[[Subparsers], None], ...] = (
    roles.register,  # run, upload, poll
    check.register,
    simulator.register,
    embedded_kafka.register,
    demo.register,
    healthcheck.register,
    tail.register,
    operations.register,  # status, reset-cursor, replay-dlq
    produce_samples.register,
)
"""Each adds its subcommands (and their order in --help) with `register(subparsers)`."""

log = logging.getLogger("connector")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="toloka-connector",
        description="Bridge between Apache Kafka and Toloka's streaming Apps API.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for register in COMMANDS:
        register(subparsers)
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
            print(redact(problem), file=sys.stderr)
        return EXIT_CONFIG
    except ConnectorError as exc:
        log.debug("%s failed", args.command, exc_info=True)  # shown at CONNECTOR_LOG_LEVEL=DEBUG
        print(redact(f"toloka-connector {args.command}: {exc}"), file=sys.stderr)
        return EXIT_FATAL
    except KeyboardInterrupt:
        if args.command in SERVERS:
            return EXIT_OK
        print(f"toloka-connector {args.command}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    return code
