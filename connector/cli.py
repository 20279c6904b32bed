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
from collections.abc import Collection, Sequence

from connector import __version__
from connector.commands.catalog import COMMANDS
from connector.commands.exit_codes import EXIT_CONFIG, EXIT_FATAL, EXIT_INTERRUPTED, EXIT_OK
from connector.errors import ConfigError, ConnectorError
from connector.interrupts import held_inside_librdkafka_calls
from connector.logs import redact

SERVERS = frozenset({"run", "upload", "poll", "simulator", "embedded-kafka"})
"""Commands that run until stopped: SIGINT or SIGTERM is their normal end (exit 0). Every other
command is one-shot: SIGINT interrupts it (exit 130); those with something to tell (how much was
replayed, whether the cursor was written) catch it themselves and return EXIT_INTERRUPTED."""

log = logging.getLogger("connector")


def build_parser(loaded: Collection[str] | None = None) -> argparse.ArgumentParser:
    """The command line. Only the commands in `loaded` (every command when None), and those
    their modules add beside them, have their options and their own `--help`: their modules are
    imported for it. The others are listed by name and summary only, without options."""
    parser = argparse.ArgumentParser(
        prog="toloka-connector",
        description="Bridge between Apache Kafka and Toloka's streaming Apps API.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    modules = {COMMANDS[name].module for name in (COMMANDS if loaded is None else loaded)}
    for name, (module, summary) in COMMANDS.items():
        if module not in modules:
            subparsers.add_parser(name, help=summary, add_help=False)
        elif name not in subparsers.choices:  # its module adds the command and its kin
            importlib.import_module(f"connector.commands.{module}").register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    # First the command alone (and the top-level --help, --version or usage error), then its
    # arguments, by a parser that imported only that command's module.
    command = build_parser(loaded=()).parse_known_args(argv)[0].command
    args = build_parser(loaded=(command,)).parse_args(argv)
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
