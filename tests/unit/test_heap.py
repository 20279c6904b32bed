"""A role command's process freezes its start-up heap and collects its young generation less
often (`connector.app.heap`); each check runs in a process of its own, as the setting is the
whole process's."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from connector.app.heap import YOUNG_THRESHOLD

REQUIRED = {"TOLOKA_API_KEY": "k", "TOLOKA_APP_PROJECT_ID": "p"}

SEEN_BY_THE_ROLES = (
    "import gc, sys\n"
    "import connector.commands.roles as roles\n"
    "from connector.cli import main\n"
    "def run_connector(names, settings):\n"
    "    print('collector:', *gc.get_threshold(), gc.get_freeze_count())\n"
    "roles.run_connector = run_connector\n"
    "print('default:', *gc.get_threshold())\n"
    "sys.exit(main(sys.argv[1:]))\n"
)
"""Runs a command with its roles replaced by a report of the collector they would start with."""


def collector_seen_by_the_roles(command: str) -> tuple[list[int], list[int], int]:
    """(the interpreter's thresholds, those the roles of `command` start with, frozen objects)."""
    environ = {k: v for k, v in os.environ.items() if not k.startswith(("CONNECTOR_", "TOLOKA_"))}
    result = subprocess.run(
        [sys.executable, "-c", SEEN_BY_THE_ROLES, command],
        env={**environ, **REQUIRED},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    lines = dict(line.split(":", 1) for line in result.stdout.splitlines())
    default = [int(value) for value in lines["default"].split()]
    *threshold, frozen = (int(value) for value in lines["collector"].split())
    return default, threshold, frozen


@pytest.mark.parametrize("command", ["run", "upload", "poll"])
def test_the_roles_start_on_a_frozen_heap_with_a_larger_young_generation(command: str) -> None:
    default, threshold, frozen = collector_seen_by_the_roles(command)
    assert default[0] < YOUNG_THRESHOLD
    assert threshold == [YOUNG_THRESHOLD, *default[1:]]  # the older generations keep theirs
    assert frozen > 10_000  # the modules imported by then
