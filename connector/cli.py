"""`toloka-connector`: parse the command line, run one command, turn errors into exit codes.

Exit codes: 0 clean (after a SIGTERM/SIGINT drain too), 2 configuration error (one line per
problem, each naming the setting), 1 any other fatal error (one line; its traceback only at
DEBUG). Every expected failure is a ConnectorError and is turned into its exit code here only.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence

from connector import __version__
from connector.errors import ConfigError, ConnectorError

EXIT_OK = 0
EXIT_FATAL = 1
EXIT_CONFIG = 2

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
        code: int = args.func(args)
    except ConfigError as exc:
        for problem in exc.problems:
            print(problem, file=sys.stderr)
        return EXIT_CONFIG
    except ConnectorError as exc:
        log.debug("%s failed", args.command, exc_info=True)  # shown at CONNECTOR_LOG_LEVEL=DEBUG
        print(f"toloka-connector {args.command}: {exc}", file=sys.stderr)
        return EXIT_FATAL
    except KeyboardInterrupt:
        return EXIT_OK
    return code
