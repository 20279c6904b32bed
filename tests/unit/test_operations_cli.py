"""The operations commands' command lines: help, argument errors (exit 2), no Kafka needed."""

from __future__ import annotations

import argparse
from datetime import UTC, datetime

import pytest

from connector.cli import build_parser, main


def help_text(command: str, capsys: pytest.CaptureFixture[str]) -> str:
    with pytest.raises(SystemExit) as exited:
        build_parser().parse_args([command, "--help"])
    assert exited.value.code == 0
    return capsys.readouterr().out


def test_reset_help_states_what_each_move_costs(capsys: pytest.CaptureFixture[str]) -> None:
    text = help_text("reset-cursor", capsys)
    for words in ("--to-item ID", "--to-time T", "--latest", "duplicates", "loss", "--force"):
        assert words in text


def test_replay_help_states_the_default_reasons(capsys: pytest.CaptureFixture[str]) -> None:
    text = help_text("replay-dlq", capsys)
    assert "Default: invalid_item, rejected, too_large:" in text
    assert "replayed-from" in text


def usage_error(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    with pytest.raises(SystemExit) as exited:
        main(argv)
    assert exited.value.code == 2
    return capsys.readouterr().err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["reset-cursor"], "one of the arguments --to-item --to-time --latest is required"),
        (["reset-cursor", "--latest", "--to-item", "x"], "not allowed with argument"),
        (["reset-cursor", "--to-time", "soon"], "neither ISO-8601"),
        (["replay-dlq", "--reason", "bogus"], "invalid choice: 'bogus'"),
        (["replay-dlq", "--max", "0"], "is not positive"),
        (["replay-dlq", "--from-offset", "-1"], "is negative"),
    ],
)
def test_argument_errors_exit_2(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert message in usage_error(argv, capsys)


def test_to_time_is_parsed_into_utc() -> None:
    args = build_parser().parse_args(["reset-cursor", "--to-time", "2024-05-01T14:00:00+02:00"])
    assert isinstance(args, argparse.Namespace)
    assert args.to_time == datetime(2024, 5, 1, 12, tzinfo=UTC)


def test_reasons_accumulate() -> None:
    args = build_parser().parse_args(
        ["replay-dlq", "--reason", "rejected", "--reason", "too_large"]
    )
    assert args.reason == ["rejected", "too_large"]


@pytest.mark.parametrize(
    "command", [["status"], ["reset-cursor", "--latest"], ["reset-cursor", "--to-item", "x"]]
)
def test_a_missing_setting_is_a_configuration_error(
    command: list[str], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("TOLOKA_API_KEY", "k")
    monkeypatch.delenv("TOLOKA_APP_PROJECT_ID", raising=False)
    assert main(command) == 2
    assert capsys.readouterr().err == "TOLOKA_APP_PROJECT_ID: is required\n"


def test_only_a_reset_to_an_item_needs_the_api_key(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("TOLOKA_API_KEY", raising=False)
    monkeypatch.setenv("TOLOKA_APP_PROJECT_ID", "p")
    monkeypatch.setenv("CONNECTOR_LEADER_TIMEOUT_SECONDS", "0")  # a value error, to stop early
    assert main(["reset-cursor", "--latest"]) == 2
    assert capsys.readouterr().err == "CONNECTOR_LEADER_TIMEOUT_SECONDS: '0' must be > 0.0\n"
    assert main(["reset-cursor", "--to-item", "x"]) == 2
    assert capsys.readouterr().err.splitlines() == [
        "CONNECTOR_LEADER_TIMEOUT_SECONDS: '0' must be > 0.0",
        "TOLOKA_API_KEY: is required",
    ]


def test_replay_needs_no_api_key_but_checks_its_own_settings(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("TOLOKA_API_KEY", raising=False)
    monkeypatch.delenv("TOLOKA_APP_PROJECT_ID", raising=False)
    monkeypatch.setenv("CONNECTOR_DLQ_TOPIC", "")
    assert main(["replay-dlq"]) == 2
    assert capsys.readouterr().err == "CONNECTOR_DLQ_TOPIC: '' must not be empty\n"
