"""KAFKA_<PROPERTY>: a property the connector sets itself is refused (naming what to use),
every other one reaches every client the connector makes, and librdkafka judges the rest."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import connector.commands.tail as tail_command
import connector.kafka.reads as kafka_reads
import connector.operations.replay as replay
from connector.cli import main
from connector.config import KafkaSettings, Settings, load_settings
from connector.devtools.brokers.security import Certificates, make_certificates, openssl_available
from connector.errors import ConfigError
from connector.kafka.transactions import producer_config as poller_producer_config
from connector.kafka_properties import (
    OWNED_KAFKA_PROPERTIES,
    RAISED_KAFKA_PROPERTIES,
    kafka_variable,
)
from connector.poller.state import consumer_config as state_reader_config
from connector.uploader.role import consumer_config as uploader_consumer_config
from connector.uploader.role import producer_config as dead_letter_producer_config

REQUIRED = {"TOLOKA_API_KEY": "secret-key-123", "TOLOKA_APP_PROJECT_ID": "proj-1"}


def problems_for(environ: dict[str, str], config: Path | None = None) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        load_settings(config, environ={**REQUIRED, **environ})
    return caught.value.problems


# --- what the connector owns ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("variable", "instead"),
    [
        ("KAFKA_GROUP_ID", "use CONNECTOR_GROUP_ID"),
        ("KAFKA_TRANSACTIONAL_ID", "toloka-connector-poller-<TOLOKA_APP_PROJECT_ID>"),
        ("KAFKA_ENABLE_AUTO_COMMIT", "CONNECTOR_COMMIT_INTERVAL_MS"),
        ("KAFKA_AUTO_COMMIT_INTERVAL_MS", "CONNECTOR_COMMIT_INTERVAL_MS"),
        ("KAFKA_ENABLE_AUTO_OFFSET_STORE", "CONNECTOR_COMMIT_INTERVAL_MS"),
        ("KAFKA_TRANSACTION_TIMEOUT_MS", "use CONNECTOR_TRANSACTION_TIMEOUT_SECONDS"),
        ("KAFKA_ISOLATION_LEVEL", "read_committed"),
        ("KAFKA_ENABLE_IDEMPOTENCE", "idempotent"),
        ("KAFKA_LOGGER", "CONNECTOR_LOG_LEVEL"),
    ],
)
def test_an_owned_property_is_one_line_naming_what_to_use(variable: str, instead: str) -> None:
    [problem] = problems_for({variable: "x"})
    prop = variable.removeprefix("KAFKA_").lower().replace("_", ".")
    assert problem.startswith(f"{variable}: {prop} is set by the connector itself: ")
    assert instead in problem


@pytest.mark.parametrize("prop", sorted(OWNED_KAFKA_PROPERTIES))
def test_every_owned_property_is_refused_from_the_file_and_the_command_line_too(
    prop: str, tmp_path: Path
) -> None:
    config = tmp_path / "c.toml"
    config.write_text(f'[kafka]\n"{prop}" = "x"\n')
    [from_file] = problems_for({}, config)
    assert from_file.startswith(f"{kafka_variable(prop)}: {prop} is set by the connector itself")
    with pytest.raises(ConfigError) as caught:
        load_settings(environ=REQUIRED, overrides={kafka_variable(prop): "x"})
    assert caught.value.problems == [from_file]


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("KAFKA_ACKS", "1"),
        ("KAFKA_ACKS", "0"),
        ("KAFKA_MAX_IN_FLIGHT_REQUESTS_PER_CONNECTION", "10"),
        ("KAFKA_RETRIES", "0"),
    ],
)
def test_a_property_the_idempotent_producers_cannot_start_with_is_named(
    variable: str, value: str
) -> None:
    [problem] = problems_for({variable: value, "KAFKA_CLIENT_ID": "fine"})
    assert problem.startswith(f"{variable}: librdkafka cannot start the connector's clients")
    assert "enable.idempotence" in problem


@pytest.mark.parametrize(("variable", "value"), [("KAFKA_ACKS", "all"), ("KAFKA_ACKS", "-1")])
def test_values_idempotence_allows_pass(variable: str, value: str) -> None:
    assert load_settings(environ={**REQUIRED, variable: value}).kafka.properties


def test_a_python_client_key_is_not_a_librdkafka_property() -> None:
    # It used to reach confluent-kafka, which wants a dict there: an AttributeError traceback.
    assert problems_for({"KAFKA_DEFAULT_TOPIC_CONFIG": "x"}) == [
        "KAFKA_DEFAULT_TOPIC_CONFIG: is not a librdkafka property"
    ]


def test_kafka_property_without_a_value_exits_2_with_one_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for variable, value in REQUIRED.items():
        monkeypatch.setenv(variable, value)
    argv = ["check", "--kafka-property", "client.id", "--kafka-property", "=x"]
    assert main(argv) == 2
    assert capsys.readouterr().err.splitlines() == [
        "--kafka-property client.id: expected NAME=VALUE, e.g. client.id=me",
        "--kafka-property =…: expected NAME=VALUE, e.g. client.id=me",
    ]


def test_kafka_property_owned_by_the_connector_exits_2_from_the_command_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for variable, value in REQUIRED.items():
        monkeypatch.setenv(variable, value)
    assert main(["tail", "t", "--kafka-property", "group.id=mine"]) == 2
    [line] = capsys.readouterr().err.splitlines()
    assert line.startswith("KAFKA_GROUP_ID: group.id is set by the connector itself: use")


# --- every other property reaches every client ----------------------------------------------------


class CapturedError(Exception):
    """Raised by a recording client class once it has the configuration it was given."""


def recorded(
    monkeypatch: pytest.MonkeyPatch, module: Any, name: str, make: Callable[[], object]
) -> dict[str, Any]:
    """The configuration `make()` gives `module.name` (a confluent-kafka client class)."""
    seen: dict[str, Any] = {}

    def record(config: dict[str, Any]) -> None:
        seen.update(config)
        raise CapturedError

    monkeypatch.setattr(module, name, record)
    with pytest.raises(CapturedError):
        make()
    return seen


def client_configs(kafka: KafkaSettings, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """Client name → the configuration the connector gives librdkafka for it."""
    loaded = load_settings(environ=REQUIRED).groups
    settings = Settings((*(g for g in loaded if not isinstance(g, KafkaSettings)), kafka))
    config = kafka.client_config()
    monkeypatch.setattr(tail_command, "kafka_settings_from_args", lambda _args: kafka)
    return {
        "uploader consumer": uploader_consumer_config(settings, lambda _stats: None),
        "dead-letter producer": dead_letter_producer_config(settings),
        "poller producer": poller_producer_config(config, "proj-1", 60.0),
        "state reader": state_reader_config(config, "group"),
        "operations reader": recorded(
            monkeypatch, kafka_reads, "Consumer", lambda: kafka_reads.looking_consumer(config)
        ),
        "replay producer": recorded(
            monkeypatch,
            replay,
            "Producer",
            lambda: replay._Republisher(config, "topic", replay.ReplaySummary(), 1.0),
        ),
        "tail consumer": recorded(
            monkeypatch, kafka_reads, "Consumer", lambda: main(["tail", "topic"])
        ),
    }


@pytest.fixture
def every_set_property(monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """Each librdkafka property some client of the connector sets, with a value of the user's."""
    configs = client_configs(KafkaSettings(), monkeypatch)
    names = {name for config in configs.values() for name in config if "_" not in name}
    return {
        name: "2000000" if name in RAISED_KAFKA_PROPERTIES else f"users-{name}"
        for name in sorted(names - {"bootstrap.servers"})
    }


def test_no_client_silently_replaces_a_users_property(
    every_set_property: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # The user's value of each property (validation bypassed) against what each client gets:
    # only an owned property (refused at start-up) may be replaced.
    kafka = KafkaSettings(properties=every_set_property)  # not through load_settings
    replaced = {
        f"{client}: {name}"
        for client, config in client_configs(kafka, monkeypatch).items()
        for name, value in every_set_property.items()
        if name not in OWNED_KAFKA_PROPERTIES and not _honoured(name, value, config.get(name))
    }
    assert not replaced, "a user's property is overridden without being refused"


def _honoured(name: str, users: str, given: object) -> bool:
    if name in RAISED_KAFKA_PROPERTIES:
        return given is not None and int(str(given)) >= int(users)
    return given == users


def test_a_user_may_choose_what_the_connector_only_defaults(
    every_set_property: dict[str, str],
) -> None:
    defaults = set(every_set_property) - set(OWNED_KAFKA_PROPERTIES)
    assert {"linger.ms", "auto.offset.reset", "partition.assignment.strategy"} <= defaults


# --- what librdkafka refuses when a client is created: named, plainly ----------------------------


@pytest.fixture(scope="module")
def certificates(tmp_path_factory: pytest.TempPathFactory) -> Certificates:
    if not openssl_available():
        pytest.skip("openssl is not on PATH: no certificates to test with")
    return make_certificates(tmp_path_factory.mktemp("certificates"), "key-password-123")


def tls(certificates: Certificates, **changes: str) -> dict[str, str]:
    return {
        "KAFKA_SECURITY_PROTOCOL": "SSL",
        "KAFKA_SSL_CA_LOCATION": str(certificates.ca),
        "KAFKA_SSL_CERTIFICATE_LOCATION": str(certificates.client_certificate),
        "KAFKA_SSL_KEY_LOCATION": str(certificates.client_key),
        "KAFKA_SSL_KEY_PASSWORD": certificates.client_key_password,
        **changes,
    }


def test_working_tls_settings_are_no_problem(certificates: Certificates) -> None:
    assert load_settings(environ={**REQUIRED, **tls(certificates)}).kafka.properties


@pytest.mark.parametrize(
    "variable",
    ["KAFKA_SSL_CA_LOCATION", "KAFKA_SSL_CERTIFICATE_LOCATION", "KAFKA_SSL_KEY_LOCATION"],
)
def test_a_file_librdkafka_cannot_read_is_one_line_naming_its_setting_and_why(
    variable: str, certificates: Certificates, tmp_path: Path
) -> None:
    # Before: every property set was named, with OpenSSL's "BIO lib" / "system lib".
    missing = tmp_path / "missing.pem"
    assert problems_for(tls(certificates, **{variable: str(missing)})) == [
        f"{variable}: cannot read {missing} (No such file or directory)"
    ]


def test_a_key_password_that_does_not_decrypt_the_key_names_the_key_and_its_password(
    certificates: Certificates,
) -> None:
    wrong = "not-the-password-9"
    [problem] = problems_for(tls(certificates, KAFKA_SSL_KEY_PASSWORD=wrong))
    assert problem.startswith("KAFKA_SSL_KEY_LOCATION, KAFKA_SSL_KEY_PASSWORD: librdkafka ")
    assert "KAFKA_SSL_KEY_PASSWORD does not decrypt" in problem
    assert wrong not in problem


def test_a_key_of_another_certificate_names_the_key_and_the_certificate(
    certificates: Certificates,
) -> None:
    changes = {"KAFKA_SSL_KEY_LOCATION": str(certificates.untrusted_client_key)}
    [problem] = problems_for(tls(certificates, **changes))
    assert problem.startswith("KAFKA_SSL_KEY_LOCATION, KAFKA_SSL_CERTIFICATE_LOCATION: ")
    assert "the key is not the certificate's" in problem


def test_a_missing_sasl_credential_names_the_settings_to_set() -> None:
    environ = {"KAFKA_SECURITY_PROTOCOL": "SASL_SSL", "KAFKA_SASL_MECHANISM": "SCRAM-SHA-512"}
    assert problems_for(environ) == [
        "KAFKA_SASL_USERNAME, KAFKA_SASL_PASSWORD: librdkafka cannot start the connector's "
        "clients with this: sasl.username and sasl.password must be set"
    ]
