"""Names: an unknown setting is refused with the nearest known name, platform variables are
not settings, and each command reads (and requires) only the settings groups it declared."""

from __future__ import annotations

from pathlib import Path

import pytest

from connector.app.roles import ROLE_SETTINGS
from connector.commands.operations import REPLAY_SETTINGS, RESET_SETTINGS, STATUS_SETTINGS
from connector.config import (
    InputTopicSettings,
    KafkaSettings,
    PollerSettings,
    Settings,
    TolokaSettings,
    UploaderSettings,
    load_settings,
)
from connector.errors import ConfigError

REQUIRED = {"TOLOKA_API_KEY": "secret-key-123", "TOLOKA_APP_PROJECT_ID": "proj-1"}


def problems_for(
    environ: dict[str, str], config: Path | None = None, **options: object
) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        load_settings(config, environ=environ, **options)  # type: ignore[arg-type]
    return caught.value.problems


# --- unknown environment variables ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("variable", "meant"),
    [
        ("CONNECTOR_INPUT_TOPICS", "CONNECTOR_INPUT_TOPIC"),
        ("CONNECTOR_INPUT_TOPC", "CONNECTOR_INPUT_TOPIC"),
        ("TOLOKA_APP_PROJECT", "TOLOKA_APP_PROJECT_ID"),
        ("TOLOKA_PROJECT_ID", "TOLOKA_APP_PROJECT_ID"),
        ("CONNECTOR_API_TIMEOUT", "CONNECTOR_API_TIMEOUT_SECONDS"),
        ("CONNECTOR_TIMEOUT_SECONDS", "CONNECTOR_API_TIMEOUT_SECONDS"),
        # the right name under the wrong prefix
        ("CONNECTOR_API_KEY", "TOLOKA_API_KEY"),
        ("TOLOKA_GROUP_ID", "CONNECTOR_GROUP_ID"),
        ("CONNECTOR_BOOTSTRAP_SERVERS", "KAFKA_BOOTSTRAP_SERVERS"),
        ("CONNECTOR_LOGLEVEL", "CONNECTOR_LOG_LEVEL"),
    ],
)
def test_a_misspelled_variable_is_one_line_with_the_nearest_name(variable: str, meant: str) -> None:
    assert problems_for({**REQUIRED, variable: "x"}) == [
        f"{variable}: unknown setting; did you mean {meant}?"
    ]


@pytest.mark.parametrize("variable", ["CONNECTOR_FOO", "TOLOKA_SOMETHING_ELSE_ENTIRELY"])
def test_an_unknown_variable_without_a_likely_meaning_is_refused_without_a_guess(
    variable: str,
) -> None:
    [problem] = problems_for({**REQUIRED, variable: "x"})
    assert problem.startswith(f"{variable}: unknown setting (no setting has a similar name")


def test_unknown_names_are_refused_whatever_the_command_reads() -> None:
    # `tail` reads only Kafka; the environment is shared by every command all the same.
    [problem] = problems_for({"CONNECTOR_INPUT_TOPICS": "x"}, groups=(KafkaSettings,))
    assert problem.startswith("CONNECTOR_INPUT_TOPICS: unknown setting")


def test_unknown_names_and_bad_values_are_reported_together() -> None:
    problems = problems_for({"CONNECTOR_INPUT_TOPICS": "x", "CONNECTOR_LINGER_MS": "soon"})
    assert problems == [
        "CONNECTOR_INPUT_TOPICS: unknown setting; did you mean CONNECTOR_INPUT_TOPIC?",
        "TOLOKA_APP_PROJECT_ID: is required",
        "TOLOKA_API_KEY: is required",
        "CONNECTOR_LINGER_MS: 'soon' is not an integer",
    ]


def test_variables_of_other_programs_are_not_ours() -> None:
    settings = load_settings(
        environ={**REQUIRED, "PATH": "/bin", "CONNECTORS": "x", "MY_CONNECTOR_X": "1"}
    )
    assert settings.uploader.input_topic == "toloka.items"


# --- variables a platform injects ----------------------------------------------------------------

KUBERNETES_SERVICE_KAFKA = {
    "KAFKA_PORT": "tcp://10.96.12.7:9092",
    "KAFKA_PORT_9092_TCP": "tcp://10.96.12.7:9092",
    "KAFKA_PORT_9092_TCP_ADDR": "10.96.12.7",
    "KAFKA_PORT_9092_TCP_PORT": "9092",
    "KAFKA_PORT_9092_TCP_PROTO": "tcp",
    "KAFKA_PORT_9093_UDP": "udp://10.96.12.7:9093",
    "KAFKA_SERVICE_HOST": "10.96.12.7",
    "KAFKA_SERVICE_PORT": "9092",
    "KAFKA_SERVICE_PORT_CLIENT": "9092",  # a named port
}
KUBERNETES_SERVICE_KAFKA_UI = {  # a Service `kafka-ui` in the same namespace
    "KAFKA_UI_SERVICE_HOST": "10.96.3.1",
    "KAFKA_UI_SERVICE_PORT": "80",
    "KAFKA_UI_SERVICE_PORT_HTTP": "80",
    "KAFKA_UI_PORT": "tcp://10.96.3.1:80",
    "KAFKA_UI_PORT_80_TCP": "tcp://10.96.3.1:80",
    "KAFKA_UI_PORT_80_TCP_ADDR": "10.96.3.1",
    "KAFKA_UI_PORT_80_TCP_PORT": "80",
    "KAFKA_UI_PORT_80_TCP_PROTO": "tcp",
}
JVM_OPTS = {
    "KAFKA_OPTS": "-javaagent:/jmx.jar",
    "KAFKA_HEAP_OPTS": "-Xmx1g",
    "KAFKA_JVM_PERFORMANCE_OPTS": "-XX:+UseG1GC",
    "KAFKA_LOG4J_OPTS": "-Dlog4j.configuration=file:/l.properties",
    "KAFKA_JMX_OPTS": "-Dcom.sun.management.jmxremote",
}


def test_kubernetes_service_links_and_jvm_opts_are_ignored() -> None:
    settings = load_settings(
        environ={
            **REQUIRED,
            **KUBERNETES_SERVICE_KAFKA,
            **KUBERNETES_SERVICE_KAFKA_UI,
            **JVM_OPTS,
            # real properties beside them still pass, one of them with SERVICE in its name
            "KAFKA_SOCKET_TIMEOUT_MS": "7000",
            "KAFKA_SASL_KERBEROS_SERVICE_NAME": "kafka",
        }
    )
    assert settings.kafka.client_config() == {
        "bootstrap.servers": "localhost:9092",
        "sasl.kerberos.service.name": "kafka",
        "socket.timeout.ms": "7000",
    }


def test_only_the_environment_is_filtered_a_file_or_flag_naming_them_is_refused(
    tmp_path: Path,
) -> None:
    config = tmp_path / "c.toml"
    config.write_text('[kafka]\nport = "9092"\nheap_opts = "-Xmx1g"\n')
    assert problems_for(REQUIRED, config) == [
        "KAFKA_HEAP_OPTS: is not a librdkafka property",
        "KAFKA_PORT: is not a librdkafka property",
    ]
    problems = problems_for(REQUIRED, overrides={"KAFKA_SERVICE_HOST": "10.0.0.1"})
    assert problems == ["KAFKA_SERVICE_HOST: is not a librdkafka property"]


def test_a_kafka_variable_that_merely_resembles_a_service_link_is_still_checked() -> None:
    environ = {"KAFKA_PORTS": "1", "KAFKA_SERVICE": "1", "KAFKA_SSL_PORT_NUMBER": "1"}
    assert problems_for({**REQUIRED, **environ}) == [
        "KAFKA_PORTS: is not a librdkafka property",
        "KAFKA_SERVICE: is not a librdkafka property",
        "KAFKA_SSL_PORT_NUMBER: is not a librdkafka property",
    ]


# --- the TOML file -------------------------------------------------------------------------------


def toml(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "connector.toml"
    path.write_text(text)
    return path


MEANT = "unknown setting; did you mean"
UNKNOWN_IN_TOML = [  # (file, what the one line says after the file's name)
    ("[connector]\ninput_topics = 1", f"[connector] input_topics: {MEANT} input_topic?"),
    ("[connector]\napi_key = 'x'", f"[connector] api_key: {MEANT} [toloka] api_key?"),
    ("[toloka]\napp_project = 'x'", f"[toloka] app_project: {MEANT} app_project_id?"),
    ("CONNECTOR_INPUT_TOPICS = 'x'", f"CONNECTOR_INPUT_TOPICS: {MEANT} CONNECTOR_INPUT_TOPIC?"),
    ("input_topic = 'x'", f"input_topic: {MEANT} CONNECTOR_INPUT_TOPIC?"),
    ("[connecter]\ninput_topic = 'x'", "[connecter]: unknown table; did you mean [connector]?"),
    ("[kafak]\n'client.id' = 'x'", "[kafak]: unknown table; did you mean [kafka]?"),
    ("[[pipeline]]\napp_project_id = 'a'\n[[pipeline]]\napp_project_id = 'b'",
     "[[pipeline]]: unknown table; known tables: [connector], [connector_api], [kafka], "
     "[schema_registry], [toloka]"),
    ("[connector.api]\ntimeouts = 3", f"[connector] api.timeouts: {MEANT} api_timeout_seconds?"),
    ("[connector_api]\ntimeouts = 3", f"[connector_api] timeouts: {MEANT} timeout_seconds?"),
]  # fmt: skip


@pytest.mark.parametrize(("text", "problem"), UNKNOWN_IN_TOML)
def test_an_unknown_key_or_table_names_the_file_and_the_nearest_name(
    tmp_path: Path, text: str, problem: str
) -> None:
    path = toml(tmp_path, text)
    [found] = problems_for(REQUIRED, path)
    assert found.startswith(f"{path}: {problem}")


def test_tables_nest_and_dotted_keys_join_with_underscores(tmp_path: Path) -> None:
    path = toml(
        tmp_path,
        "[kafka]\nsasl.mechanism = 'PLAIN'\nsocket.timeout.ms = 7000\n"
        "[connector.api]\ntimeout_seconds = 3\n[connector_api]\nmax_attempts = 2\n",
    )
    settings = load_settings(path, environ=REQUIRED)
    assert settings.kafka.client_config()["sasl.mechanism"] == "PLAIN"
    assert (settings.api.timeout_seconds, settings.api.max_attempts) == (3.0, 2)


def test_every_problem_of_the_file_and_the_environment_is_reported_at_once(
    tmp_path: Path,
) -> None:
    path = toml(tmp_path, "[connector]\ninput_topics = 'x'\nlinger_ms = [1]\n[extra]\na = 1\n")
    problems = problems_for({**REQUIRED, "TOLOKA_BASEURL": "http://x"}, path)
    assert [p.split(": unknown")[0].split(": expected")[0] for p in problems] == [
        f"{path}: [connector] input_topics",
        f"{path}: [connector] linger_ms",
        f"{path}: [extra]",
        "TOLOKA_BASEURL",
    ]


# --- what each command reads --------------------------------------------------------------------


def test_a_command_requires_only_the_groups_it_declared() -> None:
    status = load_settings(environ={"TOLOKA_APP_PROJECT_ID": "p"}, groups=STATUS_SETTINGS)
    assert status.project.app_project_id == "p"
    assert load_settings(environ={}, groups=REPLAY_SETTINGS).get(InputTopicSettings)
    assert problems_for({}, groups=RESET_SETTINGS) == ["TOLOKA_APP_PROJECT_ID: is required"]


def test_a_bad_value_of_a_setting_the_command_does_not_read_is_not_its_concern() -> None:
    environ = {**REQUIRED, "CONNECTOR_PAGE_SIZE": "many"}
    assert load_settings(environ=environ, groups=ROLE_SETTINGS["uploader"]).uploader
    assert problems_for(environ, groups=ROLE_SETTINGS["poller"]) == [
        "CONNECTOR_PAGE_SIZE: 'many' is not an integer"
    ]


def test_reading_a_group_the_command_did_not_declare_fails_loudly() -> None:
    settings = load_settings(environ={"TOLOKA_APP_PROJECT_ID": "p"}, groups=STATUS_SETTINGS)
    for undeclared in ("toloka", "uploader", "poller", "runtime", "api"):
        with pytest.raises(LookupError, match="is not among the settings this command declared"):
            getattr(settings, undeclared)


def test_a_larger_group_answers_for_the_smaller_ones_it_includes() -> None:
    settings = load_settings(environ=REQUIRED)
    assert isinstance(settings, Settings)
    assert settings.get(InputTopicSettings) is settings.uploader
    assert settings.project is settings.toloka
    assert isinstance(settings.uploader, UploaderSettings)
    assert isinstance(settings.poller, PollerSettings)
    assert isinstance(settings.toloka, TolokaSettings)


def test_a_setting_two_groups_share_is_reported_and_described_once() -> None:
    problems = problems_for({**REQUIRED, "CONNECTOR_GROUP_ID": ""})
    assert problems == ["CONNECTOR_GROUP_ID: '' must not be empty"]
    described = [name for name, _ in load_settings(environ=REQUIRED).describe()]
    assert described.count("CONNECTOR_GROUP_ID") == 1


def test_an_empty_api_key_is_refused_not_sent() -> None:
    # It used to be accepted and sent, for a 401 at start-up instead of a configuration error.
    assert problems_for({**REQUIRED, "TOLOKA_API_KEY": ""}) == ["TOLOKA_API_KEY: must not be empty"]
