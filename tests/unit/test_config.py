"""Settings: names, defaults, precedence, and one clear line per bad value."""

from __future__ import annotations

from pathlib import Path

import pytest

from connector.config import (
    RuntimeSettings,
    documented_variables,
    load_group,
    load_settings,
)
from connector.errors import ConfigError
from connector.settings_groups import CLIENT_DEFAULTS

REQUIRED = {"TOLOKA_API_KEY": "secret-key-123", "TOLOKA_APP_PROJECT_ID": "proj-1"}


def problems_for(environ: dict[str, str]) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        load_settings(environ=environ)
    return caught.value.problems


def test_contract_defaults() -> None:
    settings = load_settings(environ=REQUIRED)
    assert settings.toloka.base_url == "https://toloka.dev/api/app/v0"
    assert settings.kafka.bootstrap_servers == "localhost:9092"
    assert settings.uploader.input_topic == "toloka.items"
    assert settings.poller.output_topic == "toloka.results"
    assert settings.uploader.dlq_topic == "toloka.items.dlq"
    assert settings.poller.state_topic == "toloka.connector.state"
    assert settings.uploader.group_id == "toloka-connector"
    assert settings.poller.key_field == "id"
    assert settings.runtime.metrics_port == 9400


def test_missing_required_settings_are_named() -> None:
    assert problems_for({}) == ["TOLOKA_APP_PROJECT_ID: is required", "TOLOKA_API_KEY: is required"]


def test_bad_integer_is_one_line_naming_the_variable() -> None:
    problems = problems_for({**REQUIRED, "CONNECTOR_METRICS_PORT": "notaport"})
    assert problems == ["CONNECTOR_METRICS_PORT: 'notaport' is not an integer"]


@pytest.mark.parametrize(
    ("variable", "value", "expected"),
    [
        ("CONNECTOR_LINGER_MS", "-1", "CONNECTOR_LINGER_MS: '-1' must be >= 0"),
        (
            "CONNECTOR_BATCH_MAX_ITEMS",
            "10001",
            "CONNECTOR_BATCH_MAX_ITEMS: '10001' must be <= 10000",
        ),
        (
            "CONNECTOR_LOG_FORMAT",
            "xml",
            "CONNECTOR_LOG_FORMAT: 'xml' must be one of 'text' or 'json'",
        ),
        ("CONNECTOR_API_TLS_VERIFY", "maybe", "CONNECTOR_API_TLS_VERIFY: 'maybe' is not a boolean"),
        ("TOLOKA_BASE_URL", "ftp://x", "TOLOKA_BASE_URL: 'ftp://x' is not an http(s) URL"),
        ("CONNECTOR_INPUT_TOPIC", "", "CONNECTOR_INPUT_TOPIC: '' must not be empty"),
        (
            "CONNECTOR_DLQ_TIMEOUT_SECONDS",
            "0.5",
            "CONNECTOR_DLQ_TIMEOUT_SECONDS: '0.5' must be >= 1",
        ),
        (
            "CONNECTOR_DLQ_MAX_PENDING_BYTES",
            "100",
            "CONNECTOR_DLQ_MAX_PENDING_BYTES: '100' must be >= 1024",
        ),
    ],
)
def test_each_bad_value_names_its_variable(variable: str, value: str, expected: str) -> None:
    (problem,) = problems_for({**REQUIRED, variable: value})
    assert problem.startswith(expected)


def test_every_problem_is_reported_at_once() -> None:
    problems = problems_for({"CONNECTOR_METRICS_PORT": "x", "CONNECTOR_LINGER_MS": "y"})
    assert len(problems) == 4


def test_unknown_kafka_property_is_a_configuration_error() -> None:
    problems = problems_for({**REQUIRED, "KAFKA_NO_SUCH_THING": "1"})
    assert problems == ["KAFKA_NO_SUCH_THING: is not a librdkafka property"]


def test_bad_kafka_value_names_the_variable() -> None:
    (problem,) = problems_for({**REQUIRED, "KAFKA_LINGER_MS": "soon"})
    assert problem.startswith("KAFKA_LINGER_MS: 'soon' is rejected by librdkafka")


def test_kafka_properties_pass_through() -> None:
    settings = load_settings(
        environ={
            **REQUIRED,
            "KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
            "KAFKA_SASL_MECHANISM": "PLAIN",
            "KAFKA_SASL_USERNAME": "user",
            "KAFKA_SASL_PASSWORD": "pw-XYZ",
        }
    )
    assert settings.kafka.client_config() == {
        "bootstrap.servers": "localhost:9092",
        **CLIENT_DEFAULTS,
        "security.protocol": "SASL_SSL",
        "sasl.mechanism": "PLAIN",
        "sasl.username": "user",
        "sasl.password": "pw-XYZ",
    }


def test_secrets_are_masked_in_the_description() -> None:
    settings = load_settings(
        environ={
            **REQUIRED,
            "KAFKA_SASL_PASSWORD": "pw-XYZ",
            "KAFKA_SASL_USERNAME": "u",
            "KAFKA_SASL_MECHANISM": "PLAIN",
            "KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT",
        }
    )
    described = dict(settings.describe())
    text = repr(settings) + str(described)
    assert "secret-key-123" not in text
    assert "pw-XYZ" not in text
    assert described["TOLOKA_API_KEY"] == "**********"
    assert described["KAFKA_SASL_PASSWORD"] == "**********"
    assert described["KAFKA_SASL_USERNAME"] == "u"


def test_secret_values_never_appear_in_errors() -> None:
    problems = problems_for(
        {
            **REQUIRED,
            "KAFKA_SASL_PASSWORD": "pw-XYZ",
            "KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
            "KAFKA_SASL_MECHANISM": "NOPE",
        }
    )
    assert problems
    assert all("pw-XYZ" not in line and "secret-key-123" not in line for line in problems)


def test_precedence_cli_over_environment_over_file(tmp_path: Path) -> None:
    config = tmp_path / "connector.toml"
    config.write_text(
        'TOLOKA_APP_PROJECT_ID = "from-file"\n'
        "[connector]\ninput_topic = 'file-topic'\noutput_topic = 'file-out'\nlinger_ms = 7\n"
        '[kafka]\n"client.id" = "from-file"\n'
    )
    settings = load_settings(
        config,
        environ={
            "TOLOKA_API_KEY": "k",
            "CONNECTOR_INPUT_TOPIC": "env-topic",
            "CONNECTOR_OUTPUT_TOPIC": "env-out",
        },
        overrides={"CONNECTOR_OUTPUT_TOPIC": "cli-out"},
    )
    assert settings.toloka.app_project_id == "from-file"
    assert settings.uploader.input_topic == "env-topic"
    assert settings.poller.output_topic == "cli-out"
    assert settings.uploader.linger_ms == 7
    assert settings.kafka.client_config()["client.id"] == "from-file"


def test_unreadable_or_invalid_toml_is_a_configuration_error(tmp_path: Path) -> None:
    broken = tmp_path / "broken.toml"
    broken.write_text("this is = = not toml")
    for path in (broken, tmp_path / "missing.toml"):
        with pytest.raises(ConfigError) as caught:
            load_settings(path, environ=REQUIRED)
        assert caught.value.problems[0].startswith("--config: ")


def test_one_group_alone_needs_no_api_key() -> None:
    runtime = load_group(RuntimeSettings, {"CONNECTOR_METRICS_PORT": "0"})
    assert runtime.metrics_port == 0


def test_every_setting_is_documented() -> None:
    rows = documented_variables()
    names = [name for name, _, _ in rows]
    assert len(names) == len(set(names))
    for name, default, meaning in rows:
        assert meaning, f"{name} has no description"
        assert default
    assert "CONNECTOR_LATE_WINDOW_SECONDS" in names
    assert "KAFKA_<PROPERTY>" in names


def test_a_kafka_property_overrides_a_client_default_of_the_connector() -> None:
    settings = load_settings(
        None, {**REQUIRED, "KAFKA_METADATA_RECOVERY_REBOOTSTRAP_TRIGGER_MS": "60000"}
    )
    assert settings.kafka.client_config()["metadata.recovery.rebootstrap.trigger.ms"] == "60000"


@pytest.mark.parametrize(
    ("variable", "topic", "line"),
    [
        ("CONNECTOR_OUTPUT_TOPIC", "toloka.items", "CONNECTOR_INPUT_TOPIC: 'toloka.items' is "
         "also CONNECTOR_OUTPUT_TOPIC"),
        ("CONNECTOR_DLQ_TOPIC", "toloka.items", "CONNECTOR_INPUT_TOPIC: 'toloka.items' is also "
         "CONNECTOR_DLQ_TOPIC"),
        ("CONNECTOR_DLQ_TOPIC", "toloka.results", "CONNECTOR_DLQ_TOPIC: 'toloka.results' is "
         "also CONNECTOR_OUTPUT_TOPIC"),
        ("CONNECTOR_INPUT_TOPIC", "toloka.connector.state", "CONNECTOR_INPUT_TOPIC: "
         "'toloka.connector.state' is also CONNECTOR_STATE_TOPIC"),
    ],
)  # fmt: skip
def test_one_pipeline_s_topics_are_four_topics(variable: str, topic: str, line: str) -> None:
    """Results written to the input would be uploaded again; dead letters in the output would
    be taken for results."""
    with pytest.raises(ConfigError) as raised:
        load_settings(None, {**REQUIRED, variable: topic})
    assert raised.value.problems == [
        f"{line}; a topic the connector writes (output, dead letters, state) is used for "
        "nothing else"
    ]
