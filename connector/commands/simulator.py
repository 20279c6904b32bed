"""`toloka-connector simulator`: serve the local Toloka Apps API simulator."""

from __future__ import annotations

import argparse

from connector.commands.catalog import summary
from connector.simulator.cli import DESCRIPTION, add_arguments, run


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "simulator",
        help=summary("simulator"),
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_arguments(parser)
    parser.set_defaults(func=run)
