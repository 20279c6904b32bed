"""The operations commands' command lines: help, argument errors (exit 2), no Kafka needed."""

from __future__ import annotations

import argparse
from datetime import UTC, datetime
from pathlib import Path

import pytest

from connector.cli import build_parser, main
from connector.commands.common import pipeline_from_args
from connector.config import InputTopicSettings
from connector.errors import ConfigError


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


# --- several pipelines: --app-project -----------------------------------------------------------

PIPELINES = """
[[pipelines]]
app_project_id = "texts"
input_topic = "texts.items"
output_topic = "texts.results"
dlq_topic = "texts.dlq"

[[pipelines]]
app_project_id = "images"
input_topic = "images.items"
output_topic = "images.results"
dlq_topic = "images.dlq"
"""

WITHOUT_PROJECT = [["status"], ["reset-cursor", "--latest"], ["replay-dlq"], ["produce-samples"]]


@pytest.mark.parametrize("argv", WITHOUT_PROJECT)
def test_with_several_pipelines_a_command_about_one_needs_app_project(
    argv: list[str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    config = tmp_path / "connector.toml"
    config.write_text(PIPELINES)
    monkeypatch.setenv("TOLOKA_API_KEY", "secret-key-123")
    assert main([*argv, "--config", str(config)]) == 2
    assert capsys.readouterr().err == (
        "--app-project: required: the configuration has several pipelines (texts, images)\n"
    )
    assert main([*argv, "--config", str(config), "--app-project", "videos"]) == 2
    assert capsys.readouterr().err == (
        "--app-project: videos is no pipeline's app project (texts, images)\n"
    )


def test_app_project_picks_the_pipeline_and_its_topics(tmp_path: Path) -> None:
    config = tmp_path / "connector.toml"
    config.write_text(PIPELINES)
    args = build_parser().parse_args(
        ["replay-dlq", "--config", str(config), "--app-project", "images"]
    )
    pipeline = pipeline_from_args(args)
    topics = pipeline.get(InputTopicSettings)
    assert (topics.input_topic, topics.dlq_topic) == ("images.items", "images.dlq")


def test_one_pipeline_needs_no_app_project_and_refuses_another(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("TOLOKA_APP_PROJECT_ID", "only")
    args = build_parser().parse_args(["status"])
    assert pipeline_from_args(args).project.app_project_id == "only"
    args = build_parser().parse_args(["status", "--app-project", "other"])
    with pytest.raises(ConfigError, match="other is no pipeline's app project \\(only\\)"):
        pipeline_from_args(args)
