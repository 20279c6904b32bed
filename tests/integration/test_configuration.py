"""Configuration mistakes and start-up failures as a user meets them: the `toloka-connector`
console script in a subprocess, against the session's broker and the simulator over TCP.

A mistake in the settings exits 2 with one line naming it; the variables a platform injects are
not mistakes; a command needs only the settings it reads; an expected start-up failure (a wrong
key, an unknown project, an unreachable API) exits 1 with one line and no traceback.
"""

from __future__ import annotations

import re
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from testkit.brokers import ControllableBroker
from testkit.kafka import unique_name
from testkit.processes import console_script, environment, toloka_connector
from testkit.waiting import wait_for
from tests.fixtures.brokers import NewTopic
from tests.fixtures.simulator import SimulatorHandle

KAFKA_ONLY_COMMANDS = [["status"], ["reset-cursor", "--latest"], ["replay-dlq"], ["tail", "t"]]
EVERY_SETTINGS_COMMAND = [["run"], ["upload"], ["poll"], ["check"], *KAFKA_ONLY_COMMANDS]
NOWHERE = {  # no broker, no API: a configuration error must be found before either is asked
    "TOLOKA_API_KEY": "k",
    "TOLOKA_APP_PROJECT_ID": "p",
    "TOLOKA_BASE_URL": "http://127.0.0.1:1/api/app/v0",
    "KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:1",
}


def one_line_exit(result: subprocess.CompletedProcess[str], code: int) -> str:
    """The one line a failed command printed, after checking its exit code and that line alone."""
    assert result.returncode == code, result.stdout + result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


# --- mistakes: exit 2, one line naming the setting (no broker needed) ----------------------------


@pytest.mark.parametrize("command", EVERY_SETTINGS_COMMAND, ids=" ".join)
def test_a_misspelled_variable_exits_2_naming_the_nearest_setting(command: list[str]) -> None:
    result = toloka_connector(*command, env={**NOWHERE, "CONNECTOR_INPUT_TOPICS": "x"})
    line = one_line_exit(result, 2)
    assert line == "CONNECTOR_INPUT_TOPICS: unknown setting; did you mean CONNECTOR_INPUT_TOPIC?"


def test_a_misspelled_key_and_table_of_the_file_each_exit_2_naming_the_file(
    tmp_path: Path,
) -> None:
    config = tmp_path / "connector.toml"
    config.write_text("[connector]\ninput_topics = 'x'\n[kafak]\n'client.id' = 'me'\n")
    result = toloka_connector("run", "--config", str(config), env=NOWHERE)
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        f"{config}: [connector] input_topics: unknown setting; did you mean input_topic?",
        f"{config}: [kafak]: unknown table; did you mean [kafka]?",
    ]


@pytest.mark.parametrize(
    ("how", "variable", "instead"),
    [
        ("env", "KAFKA_GROUP_ID", "use CONNECTOR_GROUP_ID"),
        ("env", "KAFKA_TRANSACTIONAL_ID", "TOLOKA_APP_PROJECT_ID"),
        ("env", "KAFKA_ENABLE_AUTO_COMMIT", "CONNECTOR_COMMIT_INTERVAL_MS"),
        ("file", "KAFKA_GROUP_ID", "use CONNECTOR_GROUP_ID"),
        ("flag", "KAFKA_ISOLATION_LEVEL", "read_committed"),
    ],
)
def test_a_kafka_property_the_connector_sets_itself_exits_2_naming_what_to_use(
    how: str, variable: str, instead: str, tmp_path: Path
) -> None:
    prop = variable.removeprefix("KAFKA_").lower().replace("_", ".")
    argv, env = ["run"], dict(NOWHERE)
    if how == "env":
        env[variable] = "mine"
    elif how == "file":
        config = tmp_path / "c.toml"
        config.write_text(f'[kafka]\n"{prop}" = "mine"\n')
        argv += ["--config", str(config)]
    else:
        argv += ["--kafka-property", f"{prop}=mine"]
    line = one_line_exit(toloka_connector(*argv, env=env), 2)
    assert line.startswith(f"{variable}: {prop} is set by the connector itself: ")
    assert instead in line


def test_kafka_property_without_a_value_exits_2() -> None:
    result = toloka_connector("tail", "t", "--kafka-property", "security.protocol", env=NOWHERE)
    line = one_line_exit(result, 2)
    assert line == "--kafka-property security.protocol: expected NAME=VALUE, e.g. client.id=me"


# --- what is not a mistake -----------------------------------------------------------------------

KUBERNETES_AND_JVM = {
    # A Service named `kafka` in the namespace …
    "KAFKA_PORT": "tcp://10.96.12.7:9092",
    "KAFKA_PORT_9092_TCP": "tcp://10.96.12.7:9092",
    "KAFKA_PORT_9092_TCP_ADDR": "10.96.12.7",
    "KAFKA_PORT_9092_TCP_PORT": "9092",
    "KAFKA_PORT_9092_TCP_PROTO": "tcp",
    "KAFKA_SERVICE_HOST": "10.96.12.7",
    "KAFKA_SERVICE_PORT": "9092",
    "KAFKA_SERVICE_PORT_BROKER": "9092",
    # … one named `kafka-ui` …
    "KAFKA_UI_SERVICE_HOST": "10.96.3.1",
    "KAFKA_UI_SERVICE_PORT": "80",
    "KAFKA_UI_PORT": "tcp://10.96.3.1:80",
    "KAFKA_UI_PORT_80_TCP_ADDR": "10.96.3.1",
    # … and a JVM's options.
    "KAFKA_OPTS": "-javaagent:/opt/jmx.jar",
    "KAFKA_HEAP_OPTS": "-Xmx1g",
}


def deployment(
    broker: ControllableBroker, simulator: SimulatorHandle, new_topic: NewTopic, **extra: str
) -> dict[str, str]:
    return {
        "TOLOKA_API_KEY": simulator.api_key,
        "TOLOKA_BASE_URL": simulator.base_url,
        "TOLOKA_APP_PROJECT_ID": simulator.project_id,
        "KAFKA_BOOTSTRAP_SERVERS": broker.bootstrap_servers,
        "CONNECTOR_INPUT_TOPIC": new_topic(2, prefix="cfg-in"),
        "CONNECTOR_DLQ_TOPIC": new_topic(1, prefix="cfg-dlq"),
        "CONNECTOR_OUTPUT_TOPIC": new_topic(2, prefix="cfg-out"),
        "CONNECTOR_STATE_TOPIC": new_topic(compacted=True, prefix="cfg-state"),
        "CONNECTOR_GROUP_ID": unique_name("cfg-group"),
        "CONNECTOR_API_MAX_ATTEMPTS": "1",
        "CONNECTOR_METRICS_PORT": "0",
        **extra,
    }


@pytest.fixture
def running(tmp_path: Path) -> Iterator[list[subprocess.Popen[bytes]]]:
    """Long-running console-script processes a test started; killed if still alive after it."""
    started: list[subprocess.Popen[bytes]] = []
    yield started
    for process in started:
        if process.poll() is None:
            process.kill()
            process.wait(30)


@pytest.mark.integration
def test_run_starts_and_stops_cleanly_beside_kubernetes_and_jvm_variables(
    kafka_broker: ControllableBroker,
    simulator: SimulatorHandle,
    new_topic: NewTopic,
    tmp_path: Path,
    running: list[subprocess.Popen[bytes]],
) -> None:
    env = deployment(kafka_broker, simulator, new_topic, **KUBERNETES_AND_JVM)
    checked = toloka_connector("check", env=env)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "all checks passed" in checked.stdout
    assert "KAFKA_PORT" not in checked.stdout  # none of them reached librdkafka
    log = tmp_path / "run.log"
    with log.open("wb") as sink:
        process = subprocess.Popen(
            [*console_script(), "run"], env=environment({**env, "PYTHONUNBUFFERED": "1"}),
            stdout=sink, stderr=subprocess.STDOUT,
        )  # fmt: skip
        running.append(process)
    wait_for(lambda: "poller of app project" in log.read_text(), "the poller's first state")
    process.send_signal(signal.SIGTERM)
    assert process.wait(60) == 0, log.read_text()
    assert "stopped cleanly" in log.read_text()


@pytest.mark.integration
def test_status_needs_no_api_key(
    kafka_broker: ControllableBroker, simulator: SimulatorHandle, new_topic: NewTopic
) -> None:
    env = deployment(kafka_broker, simulator, new_topic)
    del env["TOLOKA_API_KEY"], env["TOLOKA_BASE_URL"]
    result = toloka_connector("status", env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"app project {simulator.project_id}" in result.stdout
    assert "uploader lag: 0 records" in result.stdout


# --- expected start-up failures: exit 1, one line, a traceback only at DEBUG ---------------------

WRONG_KEY = {"TOLOKA_API_KEY": "wrong-key-5d0c"}
UNKNOWN_PROJECT = {"TOLOKA_APP_PROJECT_ID": "no-such-project"}
UNREACHABLE_API = {"TOLOKA_BASE_URL": "http://127.0.0.1:1/api/app/v0"}
RESET_TO_ITEM = ["reset-cursor", "--to-item", "some-item", "--dry-run"]


@pytest.mark.integration
@pytest.mark.parametrize(
    ("command", "fault", "says"),
    [
        # run: whichever of its roles reads the API first names the problem
        (
            ["run"],
            WRONG_KEY,
            "uploader|poller: the Toloka API refused the key (check TOLOKA_API_KEY)",
        ),
        (["upload"], WRONG_KEY, "uploader: the Toloka API refused the key"),
        (["poll"], WRONG_KEY, "poller: the Toloka API refused the key (check TOLOKA_API_KEY)"),
        (["poll"], UNKNOWN_PROJECT, "poller: the app project or its app does not exist"),
        (["run"], UNKNOWN_PROJECT, "uploader|poller: the app project or its app does not exist"),
        (["upload"], UNKNOWN_PROJECT, "uploader: the app project or its app does not exist"),
        (RESET_TO_ITEM, WRONG_KEY, "get_item: HTTP 401"),
        (RESET_TO_ITEM, UNKNOWN_PROJECT, "get_item: HTTP 404"),
        (RESET_TO_ITEM, UNREACHABLE_API, "get_item: ConnectError"),
    ],
    ids=lambda value: " ".join(value) if isinstance(value, list) else None,
)
def test_an_expected_start_up_failure_is_one_line_without_a_traceback(
    command: list[str],
    fault: dict[str, str],
    says: str,
    kafka_broker: ControllableBroker,
    simulator: SimulatorHandle,
    new_topic: NewTopic,
) -> None:
    env = deployment(kafka_broker, simulator, new_topic, CONNECTOR_LOG_LEVEL="ERROR", **fault)
    result = toloka_connector(*command, env=env)
    line = one_line_exit(result, 1)
    roles, _, message = says.partition(": ") if "|" in says else ("", "", says)
    expected = "|".join(re.escape(f"{role}: {message}") for role in roles.split("|") if role)
    assert re.match(f"toloka-connector {command[0]}: ({expected or re.escape(says)})", line), line
    assert WRONG_KEY["TOLOKA_API_KEY"] not in result.stdout + result.stderr


@pytest.mark.integration
def test_the_traceback_of_a_start_up_failure_is_logged_at_debug(
    kafka_broker: ControllableBroker, simulator: SimulatorHandle, new_topic: NewTopic
) -> None:
    env = deployment(kafka_broker, simulator, new_topic, CONNECTOR_LOG_LEVEL="DEBUG", **WRONG_KEY)
    result = toloka_connector("upload", env=env)
    assert result.returncode == 1
    assert "Traceback (most recent call last)" in result.stderr
    assert result.stderr.splitlines()[-1].startswith("toloka-connector upload: uploader: ")
