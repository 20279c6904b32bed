"""The simulator's command line: `toloka-connector simulator` and `python -m connector.simulator`
(its options, the knobs among them, and serving until a signal)."""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import os
import sys

from connector.simulator.app import Simulator, SimulatorConfig
from connector.simulator.knobs import FAULT_SCOPES, UNFINISHED_PLACEMENTS, Knobs
from connector.simulator.server import serve
from connector.simulator.solutions import SOLUTIONS

DEFAULT_PROJECT_ID = "demo-project"
DEFAULT_API_KEY = "dev-key"
DEFAULT_PORT = 8800

DESCRIPTION = f"""\
Serve a local stand-in for the Toloka Apps API under http://HOST:PORT/api/app/v0.

Prints that base URL as one line on stdout once it accepts connections, then serves until
SIGTERM or SIGINT (exit 0). Items are processed by a simulated clock (NEW -> PROCESSING ->
COMPLETED/ERROR/CANCELLED); the knobs below shape it and inject faults. Every knob can also be
changed while running: PATCH /_simulator/knobs {{"knob_name": value}}; GET /_simulator lists the
admin API (stats, seeding finished items, reset, moving the clock).

environment:
  TOLOKA_APP_PROJECT_ID  the app project id served (default: {DEFAULT_PROJECT_ID})
  TOLOKA_API_KEY         the key accepted as "Authorization: ApiKey <key>" or "OAuth <key>"
                         (default: {DEFAULT_API_KEY})
"""

_CHOICES = {"fault_scope": FAULT_SCOPES, "unfinished_in_finished_sort": UNFINISHED_PLACEMENTS}
_TYPES = {"float": float, "int": int, "str": str}
_METAVARS = {"_ratio": "RATIO", "_status": "STATUS", "_bytes": "BYTES", "_location": "URL"}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--host", default="127.0.0.1", help="address to bind (default: %(default)s)"
    )
    parser.add_argument(
        "--port",
        type=int,
        default=DEFAULT_PORT,
        help="port to bind, 0 for a free one (default: %(default)s)",
    )
    parser.add_argument(
        "--project-id",
        help=f"app project id (default: $TOLOKA_APP_PROJECT_ID, else {DEFAULT_PROJECT_ID})",
    )
    parser.add_argument(
        "--also-serve",
        action="append",
        default=[],
        metavar="PROJECT_ID",
        help="another app project id to serve, with items of its own (repeatable)",
    )
    parser.add_argument(
        "--solution",
        choices=sorted(SOLUTIONS),
        default="text-moderation",
        help="the app the project runs: its input_spec, output_spec and labels "
        "(default: %(default)s)",
    )
    parser.add_argument(
        "--seed", type=int, help="seed item ids, outcomes, jitter and faults (default: random)"
    )
    knobs = parser.add_argument_group("processing and fault knobs (changeable at runtime)")
    for spec in dataclasses.fields(Knobs):
        knobs.add_argument(
            "--" + spec.name.replace("_", "-"),
            dest=spec.name,
            type=_TYPES[str(spec.type)],
            default=spec.default,
            choices=_CHOICES.get(spec.name),
            metavar=_metavar(spec.name),
            help=f"{spec.metadata['help']} (default: %(default)s)",
        )


def _metavar(name: str) -> str | None:
    if name in _CHOICES:
        return None  # argparse shows the choices
    for suffix, metavar in _METAVARS.items():
        if name.endswith(suffix):
            return metavar
    return "SECONDS"


def run(args: argparse.Namespace) -> int:
    try:
        knobs = Knobs(**{spec.name: getattr(args, spec.name) for spec in dataclasses.fields(Knobs)})
    except ValueError as error:
        print(f"simulator: {error}", file=sys.stderr)
        return 2
    config = SimulatorConfig(
        project_id=args.project_id or os.environ.get("TOLOKA_APP_PROJECT_ID") or DEFAULT_PROJECT_ID,
        api_key=os.environ.get("TOLOKA_API_KEY") or DEFAULT_API_KEY,
        solution=SOLUTIONS[args.solution],
        knobs=knobs,
        seed=args.seed,
        more_project_ids=tuple(args.also_serve),
    )
    try:
        asyncio.run(serve(Simulator(config), args.host, args.port, _announce))
    except OSError as error:  # the port is taken, the address cannot be bound
        print(f"simulator: cannot serve on {args.host}:{args.port}: {error}", file=sys.stderr)
        return 1
    return 0


def _announce(url: str) -> None:
    print(url, flush=True)
