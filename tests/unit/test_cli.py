"""The command line: every command documented, exit codes as the contract says."""

from __future__ import annotations

import subprocess
import sys

import pytest

from connector.cli import build_parser, main
from connector.config import documented_variables

CONTRACT_COMMANDS = ("run", "upload", "poll", "check", "simulator", "embedded-kafka", "demo")


def help_of(*argv: str) -> str:
    result = subprocess.run(
        [sys.executable, "-m", "connector", *argv, "--help"],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    return result.stdout


def test_top_level_help_lists_every_contract_command() -> None:
    text = help_of()
    for command in CONTRACT_COMMANDS:
        assert command in text


@pytest.mark.parametrize("command", ["run", "upload", "poll", "check"])
def test_role_help_documents_every_variable(command: str) -> None:
    text = help_of(command)
    for variable, _, _ in documented_variables():
        assert variable in text, f"{variable} missing from `{command} --help`"


def test_bad_setting_exits_2_with_one_line_naming_it(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("TOLOKA_API_KEY", "k")
    monkeypatch.setenv("TOLOKA_APP_PROJECT_ID", "p")
    monkeypatch.setenv("CONNECTOR_METRICS_PORT", "notaport")
    assert main(["check"]) == 2
    assert capsys.readouterr().err == "CONNECTOR_METRICS_PORT: 'notaport' is not an integer\n"


def test_command_line_flag_wins_and_is_checked(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("TOLOKA_API_KEY", "k")
    monkeypatch.setenv("TOLOKA_APP_PROJECT_ID", "p")
    assert main(["check", "--batch-max-items", "0"]) == 2
    assert capsys.readouterr().err == "CONNECTOR_BATCH_MAX_ITEMS: '0' must be >= 1\n"


def test_secrets_have_no_command_line_flag() -> None:
    parser = build_parser()
    with pytest.raises(SystemExit) as caught:
        parser.parse_args(["run", "--toloka-api-key", "x"])
    assert caught.value.code == 2
