"""`run`, `upload` and `poll`: the connector's roles, together or one at a time."""

from __future__ import annotations

import argparse
from collections.abc import Callable

from connector.app.heap import settle_heap
from connector.app.process import run_connector
from connector.app.roles import ROLE_SETTINGS
from connector.commands.catalog import summary
from connector.commands.common import add_settings_arguments, settings_from_args
from connector.logs import configure_logging

ROLE_COMMANDS: dict[str, tuple[str, ...]] = {
    "run": ("uploader", "poller"),
    "upload": ("uploader",),
    "poll": ("poller",),
}


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    for command, roles in ROLE_COMMANDS.items():
        parser = subparsers.add_parser(command, help=summary(command), description=summary(command))
        add_settings_arguments(parser, [group for role in roles for group in ROLE_SETTINGS[role]])
        parser.set_defaults(func=_runner_for(roles))


def _runner_for(roles: tuple[str, ...]) -> Callable[[argparse.Namespace], int]:
    def run(args: argparse.Namespace) -> int:
        settings = settings_from_args(args)
        configure_logging(settings.runtime.log_format, settings.runtime.log_level)
        settle_heap()  # the process is this command's: its records need few collections
        run_connector(roles, settings)
        return 0

    return run
