"""Settings: environment variables, an optional TOML file, and command-line overrides.

Precedence: command line > environment > TOML file > defaults. Every setting is an environment
variable named after its group prefix and field (`CONNECTOR_INPUT_TOPIC`); the TOML file uses the
same names, flat (`CONNECTOR_INPUT_TOPIC = "x"`) or grouped in tables by prefix
(`[connector] input_topic = "x"`, `[kafka] "security.protocol" = "SSL"`).

Any `KAFKA_<PROPERTY>` other than `KAFKA_BOOTSTRAP_SERVERS` is a librdkafka property, upper-cased
with dots as underscores; librdkafka itself decides whether the name and value are valid.
"""

from __future__ import annotations

import logging
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Literal, TypeVar

from pydantic import Field, SecretStr, ValidationError
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from connector.errors import ConfigError

_MAX_BULK_ITEMS = 10_000  # the API rejects larger bulk requests with 413
_MAX_PAGE_SIZE = 1_000  # the listing endpoint's documented maximum


class _Group(BaseSettings):
    """A settings group read from a merged mapping of variable names (see `load_settings`)."""

    model_config = SettingsConfigDict(extra="ignore", frozen=True, validate_default=True)
    prefix: ClassVar[str]

    @classmethod
    def variable(cls, field_name: str) -> str:
        return f"{cls.prefix}{field_name}".upper()

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # Only the mapping passed in by load_settings: it already merged file, env and CLI.
        return (init_settings,)


class TolokaSettings(_Group):
    """Where the Apps API is and who we are there."""

    prefix: ClassVar[str] = "TOLOKA_"
    api_key: SecretStr = Field(description="API key, sent as `Authorization: ApiKey …`")
    base_url: str = Field(
        "https://toloka.dev/api/app/v0",
        description="Apps API base URL; the simulator serves http://HOST:PORT/api/app/v0",
        pattern=r"^https?://[^\s/]+",
    )
    app_project_id: str = Field(
        description="the app project that receives and labels the items", min_length=1
    )


class ApiSettings(_Group):
    """How the Apps API client behaves on the wire."""

    prefix: ClassVar[str] = "CONNECTOR_API_"
    connect_timeout_seconds: float = Field(5.0, gt=0, description="TCP/TLS connect timeout")
    timeout_seconds: float = Field(30.0, gt=0, description="read/write timeout of one API request")
    max_attempts: int = Field(
        6, ge=1, description="attempts of one request before its error is surfaced"
    )
    backoff_base_seconds: float = Field(
        0.5, gt=0, description="first retry delay bound (exponential, full jitter)"
    )
    backoff_cap_seconds: float = Field(30.0, gt=0, description="largest delay between retries")
    tls_verify: bool = Field(True, description="verify the API's TLS certificate")
    max_response_bytes: int = Field(
        64 * 1024 * 1024,
        ge=1024,
        description="a larger API response body is refused (and retried) instead of read",
    )


class KafkaSettings(_Group):
    """Kafka connection; `properties` holds every other `KAFKA_<PROPERTY>` for librdkafka."""

    prefix: ClassVar[str] = "KAFKA_"
    bootstrap_servers: str = Field("localhost:9092", min_length=1, description="bootstrap servers")
    # SecretStr for all of them: which librdkafka properties are secret is a guess, and a repr
    # of the settings must never show a password.
    properties: dict[str, SecretStr] = Field(
        default_factory=dict, description="librdkafka properties from KAFKA_<PROPERTY> variables"
    )

    def client_config(self) -> dict[str, str]:
        """The librdkafka configuration shared by every client the connector creates."""
        return {
            "bootstrap.servers": self.bootstrap_servers,
            **{prop: value.get_secret_value() for prop, value in self.properties.items()},
        }


class UploaderSettings(_Group):
    """The uploader role: input topic → Apps API, bad records → dead-letter topic."""

    prefix: ClassVar[str] = "CONNECTOR_"
    input_topic: str = Field("toloka.items", min_length=1, description="items to upload")
    dlq_topic: str = Field(
        "toloka.items.dlq", min_length=1, description="items that cannot be uploaded, with reason"
    )
    group_id: str = Field(
        "toloka-connector",
        min_length=1,
        description="consumer group of the uploader (the poller derives its own from it)",
    )
    batch_max_items: int = Field(
        1000, ge=1, le=_MAX_BULK_ITEMS, description="items per bulk request at most"
    )
    batch_max_bytes: int = Field(
        8_000_000, ge=1024, description="request body bytes per bulk request at most"
    )
    linger_ms: int = Field(
        50, ge=0, description="how long a partly filled batch waits for more items"
    )
    max_in_flight: int = Field(4, ge=1, le=64, description="bulk requests in flight at once")
    max_record_bytes: int = Field(
        1_000_000, ge=16, description="larger input records are dead-lettered as too_large"
    )
    spec_refresh_seconds: float = Field(
        300.0, gt=0, description="how often the app's input_spec is read again"
    )
    drain_timeout_seconds: float = Field(
        30.0, ge=0, description="on shutdown or revocation, how long in-flight uploads may finish"
    )
    commit_interval_ms: int = Field(
        100,
        ge=0,
        description=(
            "how often done input offsets are committed (a crash repeats at most the uploads "
            "finished since the last commit)"
        ),
    )


class PollerSettings(_Group):
    """The poller role: finished items → output topic, cursor → state topic, in one transaction."""

    prefix: ClassVar[str] = "CONNECTOR_"
    output_topic: str = Field("toloka.results", min_length=1, description="finished items")
    state_topic: str = Field(
        "toloka.connector.state",
        min_length=1,
        description="compacted topic holding the poller cursor",
    )
    key_field: str = Field(
        "id", min_length=1, description="field of input_data whose value keys the output record"
    )
    page_size: int = Field(
        1000, ge=1, le=_MAX_PAGE_SIZE, description="items asked for per listing request"
    )
    poll_interval_seconds: float = Field(
        1.0, gt=0, description="wait between listings while results are flowing"
    )
    idle_poll_interval_seconds: float = Field(
        5.0, gt=0, description="wait between listings when nothing new arrived"
    )
    late_window_seconds: float = Field(
        60.0,
        ge=0,
        description=(
            "an item that becomes visible up to this many seconds after its finished_at is "
            "still published, exactly once"
        ),
    )
    start_from: Literal["earliest", "latest"] = Field(
        "earliest",
        description="without a cursor: every finished item (earliest) or only new ones (latest)",
    )
    late_scan_interval_seconds: float = Field(
        10.0,
        gt=0,
        description=(
            "how often the poller lists the late window again for items that became visible "
            "late; such an item is published at most this long (plus a poll) after it appears"
        ),
    )
    leader_timeout_seconds: float = Field(
        15.0,
        gt=0,
        description=(
            "a standby poller takes over when the leader wrote no cursor record for this long "
            "(the leader writes one at least every quarter of it)"
        ),
    )
    transaction_timeout_seconds: float = Field(
        60.0,
        ge=1,
        description="Kafka transaction timeout of the poller; also bounds its flush and commit",
    )


class RuntimeSettings(_Group):
    """Process-wide settings: observability endpoints, logging, shutdown."""

    prefix: ClassVar[str] = "CONNECTOR_"
    metrics_port: int = Field(
        9400, ge=0, le=65535, description="port of /metrics, /healthz, /readyz (0 disables)"
    )
    metrics_host: str = Field("127.0.0.1", description="address the metrics server binds to")
    log_format: Literal["text", "json"] = Field("text", description="log line format")
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field(
        "INFO", description="lowest level logged"
    )
    shutdown_timeout_seconds: float = Field(
        45.0,
        gt=0,
        description=(
            "how long a SIGTERM/SIGINT drain may take before exit (above the uploader's "
            "drain timeout, which it includes)"
        ),
    )


G = TypeVar("G", bound=_Group)

GROUPS: tuple[type[_Group], ...] = (
    TolokaSettings,
    ApiSettings,
    KafkaSettings,
    UploaderSettings,
    PollerSettings,
    RuntimeSettings,
)


@dataclass(frozen=True)
class Settings:
    toloka: TolokaSettings
    api: ApiSettings
    kafka: KafkaSettings
    uploader: UploaderSettings
    poller: PollerSettings
    runtime: RuntimeSettings

    def describe(self) -> list[tuple[str, str]]:
        """(variable, value) for every setting, secrets masked: what `check` prints."""
        rows: list[tuple[str, str]] = []
        for group in (self.toloka, self.api, self.kafka, self.uploader, self.poller, self.runtime):
            for name, value in group:
                if name == "properties":
                    rows.extend(
                        (kafka_variable(prop), mask_kafka_value(prop, v.get_secret_value()))
                        for prop, v in sorted(value.items())
                    )
                    continue
                shown = "**********" if isinstance(value, SecretStr) else str(value)
                rows.append((group.variable(name), shown))
        return rows


# --- KAFKA_<PROPERTY> passthrough ------------------------------------------------------------

_SECRET_PROPERTY_WORDS = ("password", "secret", "jaas", "key.pem", "ssl.key", "token")


def is_secret_kafka_property(prop: str) -> bool:
    return any(word in prop for word in _SECRET_PROPERTY_WORDS)


def mask_kafka_value(prop: str, value: str) -> str:
    return "**********" if is_secret_kafka_property(prop) else value


def kafka_variable(prop: str) -> str:
    return "KAFKA_" + prop.replace(".", "_").upper()


def kafka_property(variable: str) -> str:
    return variable.removeprefix("KAFKA_").lower().replace("_", ".")


_silent = logging.getLogger("connector.config.librdkafka")
_silent.addHandler(logging.NullHandler())
_silent.propagate = False


def _new_producer_error(conf: Mapping[str, str]) -> str | None:
    """librdkafka's complaint about a configuration, or None when a client starts with it."""
    from confluent_kafka import KafkaException, Producer  # noqa: PLC0415 - heavy import

    try:
        Producer({**conf, "logger": _silent})
    except KafkaException as exc:
        return str(exc.args[0].str() if exc.args else exc)
    return None


def librdkafka_problems(properties: Mapping[str, str]) -> list[str]:
    """One line per KAFKA_<PROPERTY> that librdkafka rejects, naming the variable.

    Properties are added one at a time, so a name or value error is pinned on its property;
    errors that only appear when the client starts (a SASL mechanism this build lacks) concern
    the properties together.
    """
    problems: list[str] = []
    accepted: dict[str, str] = {}
    for prop, value in sorted(properties.items()):
        error = _new_producer_error({**accepted, prop: value})
        if error is None or error.startswith("Failed to create"):
            accepted[prop] = value
        elif "No such configuration property" in error:
            problems.append(f"{kafka_variable(prop)}: is not a librdkafka property")
        elif is_secret_kafka_property(prop):
            problems.append(f"{kafka_variable(prop)}: has an invalid value")
        else:
            problems.append(f"{kafka_variable(prop)}: {value!r} is rejected by librdkafka: {error}")
    if not problems:
        error = _new_producer_error(accepted)
        if error is not None:
            for prop, value in accepted.items():
                if is_secret_kafka_property(prop) and value:
                    error = error.replace(value, "**********")
            names = ", ".join(kafka_variable(prop) for prop in accepted)
            problems.append(f"{names}: librdkafka cannot start with these: {error}")
    return problems


_PROPERTY_ALIASES = {"delivery.timeout.ms": "message.timeout.ms"}


def poller_producer_problems(kafka: KafkaSettings, poller: PollerSettings) -> list[str]:
    """The poller's producer adds `transactional.id` and `transaction.timeout.ms`
    (CONNECTOR_TRANSACTION_TIMEOUT_SECONDS) to the Kafka settings, and librdkafka holds other
    settings to them (`socket.timeout.ms` and `message.timeout.ms` at most the transaction
    timeout). One line naming the settings that clash, or none."""
    from connector.poller.publisher import producer_config  # noqa: PLC0415 - imports config

    config = producer_config(kafka.client_config(), "check", poller.transaction_timeout_seconds)
    error = _new_producer_error(config)
    if error is None:
        return []
    # librdkafka quotes the properties it complains about: `socket.timeout.ms`, `a=true`.
    named = {quoted.split("=")[0] for quoted in error.split("`")[1::2]}
    variables = [
        kafka_variable(prop)
        for prop in sorted(kafka.properties)
        if prop in named or _PROPERTY_ALIASES.get(prop) in named
    ]
    if "transaction.timeout.ms" in named:
        variables.insert(0, PollerSettings.variable("transaction_timeout_seconds"))
    names = ", ".join(variables) or "KAFKA_* settings"
    return [f"{names}: the poller's transactional producer cannot start with these: {error}"]


# --- loading ---------------------------------------------------------------------------------


def _flatten_toml(data: Mapping[str, Any], path: Path) -> dict[str, str]:
    flat: dict[str, str] = {}
    for key, value in data.items():
        if isinstance(value, Mapping):
            table = key.upper()
            for inner, inner_value in value.items():
                name = f"{table}_{inner.replace('.', '_')}".upper()
                flat[name] = _toml_scalar(inner_value, f"{path}: [{key}] {inner}")
        else:
            flat[key.upper()] = _toml_scalar(value, f"{path}: {key}")
    return flat


def _toml_scalar(value: Any, where: str) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str | int | float):
        return str(value)
    raise ConfigError([f"{where}: expected a string, number or boolean"])


def read_toml(path: Path) -> dict[str, str]:
    try:
        with path.open("rb") as handle:
            return _flatten_toml(tomllib.load(handle), path)
    except OSError as exc:
        raise ConfigError([f"--config: cannot read {path}: {exc.strerror}"]) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError([f"--config: {path} is not valid TOML: {exc}"]) from None


def merged_variables(
    config_file: Path | None,
    environ: Mapping[str, str] | None = None,
    overrides: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """File, then environment, then command line: later ones win."""
    merged = read_toml(config_file) if config_file else {}
    merged.update(os.environ if environ is None else environ)
    merged.update(overrides or {})
    return merged


_MESSAGES = {
    "int_parsing": "is not an integer",
    "int_from_float": "is not an integer",
    "float_parsing": "is not a number",
    "bool_parsing": "is not a boolean (use true or false)",
    "missing": "is required",
    "string_too_short": "must not be empty",
}


def _describe_error(error: Any, secret: bool) -> str:
    kind = error["type"]
    ctx = error.get("ctx", {})
    message = _MESSAGES.get(kind)
    if message is None:
        if kind in {"greater_than_equal", "greater_than", "less_than_equal", "less_than"}:
            sign = {
                "greater_than_equal": ">=",
                "greater_than": ">",
                "less_than_equal": "<=",
                "less_than": "<",
            }[kind]
            bound = next(iter(ctx.values()))
            message = f"must be {sign} {bound}"
        elif kind == "literal_error":
            message = f"must be one of {ctx.get('expected', '')}"
        elif kind == "string_pattern_mismatch":
            message = "is not an http(s) URL"
        else:
            message = str(error["msg"]).lower()
    if kind == "missing" or secret:
        return message
    return f"{error['input']!r} {message}"


def _validate_group(group: type[G], variables: Mapping[str, str]) -> tuple[G | None, list[str]]:
    values: dict[str, Any] = {}
    for name in group.model_fields:
        variable = group.variable(name)
        if variable in variables:
            values[name] = variables[variable]
    if group is KafkaSettings:
        values["properties"] = {
            kafka_property(name): value
            for name, value in variables.items()
            if name.startswith("KAFKA_") and name != "KAFKA_BOOTSTRAP_SERVERS" and value != ""
        }
    try:
        return group(**values), []
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            name = str(error["loc"][0])
            field: FieldInfo = group.model_fields[name]
            secret = field.annotation is SecretStr
            problems.append(f"{group.variable(name)}: {_describe_error(error, secret)}")
        return None, problems


def load_group(group: type[G], variables: Mapping[str, str]) -> G:
    """One settings group on its own, for commands that need only part of the settings."""
    instance, problems = _validate_group(group, variables)
    if instance is None:
        raise ConfigError(problems)
    return instance


def load_settings(
    config_file: Path | None = None,
    environ: Mapping[str, str] | None = None,
    overrides: Mapping[str, str] | None = None,
) -> Settings:
    """Read and check every setting; raise ConfigError with one line per problem."""
    variables = merged_variables(config_file, environ, overrides)
    problems: list[str] = []
    groups: dict[type[_Group], Any] = {}
    for group in GROUPS:
        groups[group], group_problems = _validate_group(group, variables)
        problems.extend(group_problems)
    kafka = groups[KafkaSettings]
    if kafka is not None:
        problems.extend(librdkafka_problems(kafka.client_config()))
    if kafka is not None and groups[PollerSettings] is not None and not problems:
        problems.extend(poller_producer_problems(kafka, groups[PollerSettings]))
    if problems:
        raise ConfigError(problems)
    return Settings(
        toloka=groups[TolokaSettings],
        api=groups[ApiSettings],
        kafka=kafka,
        uploader=groups[UploaderSettings],
        poller=groups[PollerSettings],
        runtime=groups[RuntimeSettings],
    )


def documented_variables() -> list[tuple[str, str, str]]:
    """(variable, default, meaning) for every setting: the source of --help and the README."""
    rows: list[tuple[str, str, str]] = []
    for group in GROUPS:
        for name, field in group.model_fields.items():
            if name == "properties":
                rows.append(("KAFKA_<PROPERTY>", "—", field.description or ""))
                continue
            if field.is_required():
                default = "— (required)"
            else:
                default = str(field.get_default(call_default_factory=True))
            rows.append((group.variable(name), default, field.description or ""))
    return rows
