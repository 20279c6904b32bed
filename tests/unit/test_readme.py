"""The README is the user guide: its settings table and command list must match the code."""

from __future__ import annotations

import argparse
import re
from pathlib import Path

from connector.cli import build_parser
from connector.config import documented_variables
from connector.settings_doc import with_table

README = Path(__file__).resolve().parents[2] / "README.md"


def test_the_first_lines_give_the_two_commands() -> None:
    head = README.read_text().splitlines()[:5]
    assert any(line.startswith("make demo") for line in head)
    assert any(line.startswith("make test") for line in head)


def test_settings_table_is_the_generated_one() -> None:
    text = README.read_text()
    assert with_table(text) == text, "run `python -m connector.settings_doc README.md`"


def test_every_setting_appears_in_the_readme() -> None:
    text = README.read_text()
    missing = [name for name, _, _ in documented_variables() if f"`{name}`" not in text]
    assert not missing


def test_every_command_in_the_readme_exists_and_every_command_is_in_the_readme() -> None:
    text = README.read_text()
    documented = set(re.findall(r"^\| `toloka-connector ([a-z-]+)", text, flags=re.MULTILINE))
    documented |= {"upload", "poll"}  # share a row with `run`'s neighbour
    commands = {
        name
        for action in build_parser()._actions
        if isinstance(action, argparse._SubParsersAction)
        for name in action._name_parser_map
    }
    assert documented == commands
