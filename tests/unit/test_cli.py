"""The command line: every command documented, exit codes as the contract says."""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
from typing import Any

import pytest

from connector.cli import build_parser, main
from connector.commands.catalog import COMMANDS
from connector.config import documented_variables
from connector.devtools.processes import free_port
from connector.errors import ConnectorError
from connector.logs import clear_secrets, register_secret

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


def subparsers_of(parser: argparse.ArgumentParser) -> argparse._SubParsersAction[Any]:
    return next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))


def test_the_catalog_lists_what_the_command_modules_add_in_their_order() -> None:
    """The top-level --help comes from the catalog alone: it must say what the modules say."""
    every = subparsers_of(build_parser())
    assert list(every.choices) == list(COMMANDS)
    listed = {action.dest: action.help for action in every._choices_actions}
    assert listed == {name: command.summary for name, command in COMMANDS.items()}


@pytest.mark.parametrize("command", list(COMMANDS))
def test_a_command_run_alone_gets_the_parser_its_module_adds(command: str) -> None:
    parser = subparsers_of(build_parser(loaded=(command,))).choices[command]
    assert parser.get_default("func") is not None  # not the catalog's option-less listing


def modules_imported_by(*argv: str) -> set[str]:
    """The modules `python -m connector ARGV` has imported once its command is done."""
    script = (
        "import sys\n"
        "from connector.cli import main\n"
        "try:\n"
        "    main(sys.argv[1:])\n"
        "except SystemExit:\n"
        "    pass\n"
        "print('modules:', *sys.modules)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script, *argv],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    _, marker, modules = result.stdout.rpartition("modules:")
    assert marker, result.stdout + result.stderr
    return set(modules.split())


HEAVY = {"confluent_kafka", "httpx", "prometheus_client", "connector.app", "connector.uploader",
         "connector.poller", "connector.simulator", "connector.devtools"}  # fmt: skip
"""What a command that needs none of them must not pay for at every start (most of a second
of CPU together)."""


def command_modules_and_heavy(modules: set[str]) -> set[str]:
    """The command modules (`connector.commands.X`) and the heavy packages among `modules`."""
    shared = {"connector.commands.catalog", "connector.commands.exit_codes"}
    return {
        module
        for module in modules
        if (module.startswith("connector.commands.") and module not in shared)
        or module.split(".")[0] in HEAVY
        or ".".join(module.split(".")[:2]) in HEAVY
    }


def test_top_level_help_imports_no_command() -> None:
    assert command_modules_and_heavy(modules_imported_by("--help")) == set()


def test_a_command_imports_its_own_module_only() -> None:
    imported = command_modules_and_heavy(modules_imported_by("tail", "--help"))
    assert {m for m in imported if m.startswith("connector.commands.")} == {
        "connector.commands.tail",
        "connector.commands.common",
    }


def test_healthcheck_starts_without_the_connector_s_heavy_imports() -> None:
    """Run by a container's health check every few seconds: the standard library and the
    settings only (the `healthcheck` module's promise)."""
    url = f"http://127.0.0.1:{free_port()}"
    imported = modules_imported_by("healthcheck", "--url", url, "--timeout", "1")
    assert command_modules_and_heavy(imported) == {"connector.commands.healthcheck"}


API = {
    "TOLOKA_APP_PROJECT_ID", "TOLOKA_API_KEY", "TOLOKA_BASE_URL",
    "CONNECTOR_API_CONNECT_TIMEOUT_SECONDS", "CONNECTOR_API_TIMEOUT_SECONDS",
    "CONNECTOR_API_MAX_ATTEMPTS", "CONNECTOR_API_BACKOFF_BASE_SECONDS",
    "CONNECTOR_API_BACKOFF_CAP_SECONDS", "CONNECTOR_API_TLS_VERIFY",
    "CONNECTOR_API_MAX_RESPONSE_BYTES",
}  # fmt: skip
KAFKA = {"KAFKA_BOOTSTRAP_SERVERS", "KAFKA_<PROPERTY>"}
RUNTIME = {
    "CONNECTOR_METRICS_PORT", "CONNECTOR_METRICS_HOST", "CONNECTOR_LOG_FORMAT",
    "CONNECTOR_LOG_LEVEL", "CONNECTOR_SHUTDOWN_TIMEOUT_SECONDS",
    "CONNECTOR_LIVENESS_TIMEOUT_SECONDS", "CONNECTOR_PROGRESS_TIMEOUT_SECONDS",
    "CONNECTOR_KAFKA_REFUSAL_TIMEOUT_SECONDS",
}  # fmt: skip
UPLOADER = {
    "CONNECTOR_INPUT_TOPIC", "CONNECTOR_DLQ_TOPIC", "CONNECTOR_GROUP_ID",
    "CONNECTOR_BATCH_MAX_ITEMS", "CONNECTOR_BATCH_MAX_BYTES", "CONNECTOR_LINGER_MS",
    "CONNECTOR_MAX_IN_FLIGHT", "CONNECTOR_MAX_RECORD_BYTES", "CONNECTOR_SPEC_REFRESH_SECONDS",
    "CONNECTOR_ADAPTIVE_IN_FLIGHT", "CONNECTOR_DRAIN_TIMEOUT_SECONDS",
    "CONNECTOR_COMMIT_INTERVAL_MS",
    "CONNECTOR_DLQ_MAX_PENDING_BYTES", "CONNECTOR_DLQ_TIMEOUT_SECONDS", "CONNECTOR_INPUT_FORMAT",
    "CONNECTOR_KEY_FIELD", "CONNECTOR_UPLOAD_RECONCILE", "CONNECTOR_RECONCILE_CLOCK_SKEW_SECONDS",
    "CONNECTOR_RECONCILE_RECHECK_SECONDS", "CONNECTOR_RECONCILE_TIMEOUT_SECONDS",
    "CONNECTOR_ROUTE_BY_HEADER",
}  # fmt: skip
CURSOR = {"CONNECTOR_STATE_TOPIC", "CONNECTOR_LEADER_TIMEOUT_SECONDS"}
CURSOR_WRITES = CURSOR | {"CONNECTOR_LATE_WINDOW_SECONDS", "CONNECTOR_TRANSACTION_TIMEOUT_SECONDS"}
POLLER = CURSOR_WRITES | {
    "CONNECTOR_GROUP_ID", "CONNECTOR_OUTPUT_TOPIC", "CONNECTOR_KEY_FIELD", "CONNECTOR_DLQ_TOPIC",
    "CONNECTOR_PAGE_SIZE", "CONNECTOR_POLL_INTERVAL_SECONDS",
    "CONNECTOR_IDLE_POLL_INTERVAL_SECONDS", "CONNECTOR_START_FROM",
    "CONNECTOR_LATE_SCAN_INTERVAL_SECONDS", "CONNECTOR_OUTPUT_FORMAT", "CONNECTOR_OUTPUT_SUBJECT",
    "CONNECTOR_TRANSACTION_SPAN_SECONDS",
}  # fmt: skip
REGISTRY = {
    "SCHEMA_REGISTRY_URL", "SCHEMA_REGISTRY_BASIC_AUTH_USER_INFO",
    "SCHEMA_REGISTRY_SSL_CA_LOCATION",
}  # fmt: skip
EVERY = {variable for variable, _, _ in documented_variables()}
READS = {  # what each command uses, as the README's settings table says
    "run": EVERY,
    "check": EVERY,
    "upload": API | KAFKA | UPLOADER | {"CONNECTOR_WORKERS"} | REGISTRY | RUNTIME,
    "poll": API | KAFKA | POLLER | REGISTRY | RUNTIME,
    "status": {"TOLOKA_APP_PROJECT_ID", "CONNECTOR_INPUT_TOPIC", "CONNECTOR_DLQ_TOPIC",
               "CONNECTOR_GROUP_ID"} | KAFKA | CURSOR,
    "reset-cursor": API | KAFKA | CURSOR_WRITES | {"CONNECTOR_GROUP_ID"},
    "replay-dlq": KAFKA | {"CONNECTOR_INPUT_TOPIC", "CONNECTOR_DLQ_TOPIC"},
    "produce-samples": KAFKA | {"CONNECTOR_INPUT_TOPIC", "CONNECTOR_DLQ_TOPIC"},
    "tail": KAFKA,
}  # fmt: skip


def listed_variables(command: str) -> set[str]:
    """The variables `command --help` lists under its environment variables heading."""
    text = help_of(command)
    _, heading, rest = text.partition("environment variables this command reads")
    assert heading, f"`{command} --help` lists no environment variables"
    return set(re.findall(r"^  ([A-Z][A-Z0-9_<>]+) ", rest, flags=re.MULTILINE))


@pytest.mark.parametrize("command", sorted(READS))
def test_help_lists_exactly_the_variables_the_command_reads(command: str) -> None:
    assert listed_variables(command) == READS[command]


def test_every_command_that_reads_settings_is_covered() -> None:
    declared = {
        name
        for action in build_parser()._actions
        if isinstance(action, argparse._SubParsersAction)
        for name, parser in action._name_parser_map.items()
        if parser.get_default("settings_groups") and name != "healthcheck"
    }
    assert declared == set(READS)


@pytest.mark.parametrize(
    ("command", "flag"),
    [("status", "--batch-max-items"), ("tail", "--input-topic"), ("upload", "--page-size")],
)
def test_a_command_has_no_flag_for_a_setting_it_does_not_read(command: str, flag: str) -> None:
    with pytest.raises(SystemExit) as caught:
        build_parser().parse_args([command, *(["t"] if command == "tail" else []), flag, "1"])
    assert caught.value.code == 2


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


@pytest.mark.parametrize(
    ("pair", "variable"),
    [
        ("sasl.password=hunter2-Zq81x", "KAFKA_SASL_PASSWORD"),
        ("ssl.key.password=hunter2-Zq81x", "KAFKA_SSL_KEY_PASSWORD"),
        ("sasl.oauthbearer.client.secret=hunter2-Zq81x", "KAFKA_SASL_OAUTHBEARER_CLIENT_SECRET"),
    ],
)
def test_a_secret_kafka_property_on_the_command_line_is_refused_naming_its_variable(
    pair: str, variable: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """Secrets stay out of the process list: the README's promise held for flags too."""
    assert main(["tail", "toloka.items", "--kafka-property", pair]) == 2
    err = capsys.readouterr().err
    assert variable in err
    assert "hunter2-Zq81x" not in err
    assert len(err.splitlines()) == 1, err


def test_a_malformed_kafka_property_does_not_repeat_its_value(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["tail", "toloka.items", "--kafka-property", "=hunter2-Zq81x"]) == 2
    assert "hunter2-Zq81x" not in capsys.readouterr().err


def test_a_one_line_error_is_redacted(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A fatal error whose text carries a secret (an API error quoting the URL it was sent
    to, say) is printed masked, like every log line."""

    def fail(args: argparse.Namespace) -> int:
        register_secret("key-hunter2-Zq81x")
        raise ConnectorError("refused at https://api.example/key-hunter2-Zq81x")

    monkeypatch.setattr("connector.commands.tail.run", fail)
    try:
        assert main(["tail", "toloka.items"]) == 1
    finally:
        clear_secrets()
    err = capsys.readouterr().err
    assert "key-hunter2-Zq81x" not in err
    assert "refused at" in err
