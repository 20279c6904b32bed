"""Settings: environment variables, an optional TOML file, and command-line overrides.

Precedence: command line > environment > TOML file > defaults. Every setting is an environment
variable named after its group prefix and field (`CONNECTOR_INPUT_TOPIC`); the TOML file uses the
same names, flat (`CONNECTOR_INPUT_TOPIC = "x"`) or grouped in tables by prefix
(`[connector] input_topic = "x"`, `[kafka] "security.protocol" = "SSL"`). A name the connector
does not know is an error (`connector.settings_sources`).

Settings come in groups, each holding settings that are used together. A command declares the
groups it uses (`load_settings(groups=…)`): only those are read and required, and its `--help`
lists only their variables. A group it did not declare is absent from its `Settings`: reading one
raises instead of quietly returning defaults. Larger groups are built from smaller ones by
inheritance (`UploaderSettings` is an `InputTopicSettings`), so the roles read
`settings.uploader.input_topic` while `replay-dlq` declares only the input topics.

Any `KAFKA_<PROPERTY>` other than `KAFKA_BOOTSTRAP_SERVERS` is a librdkafka property, upper-cased
with dots as underscores; librdkafka itself decides whether the name and value are valid. The
properties the connector sets on its clients itself (`OWNED_KAFKA_PROPERTIES`) are refused, each
naming the setting to use instead.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Literal, TypeVar

from pydantic import Field, SecretStr, ValidationError
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from connector.contract.leadership import transactional_id
from connector.errors import ConfigError
from connector.kafka_properties import (
    OWNED_KAFKA_PROPERTIES,
    PYTHON_CLIENT_KEYS,
    is_secret_kafka_property,
    kafka_property,
    kafka_variable,
    librdkafka_problems,
    mask_kafka_value,
    new_producer_error,
    transactional_producer_settings,
)
from connector.settings_sources import Vocabulary, environment_variables, toml_variables

# The KAFKA_<PROPERTY> helpers live in connector.kafka_properties; importing them from here, where
# they were first, still works.
__all__ = [
    "API_GROUPS",
    "GROUPS",
    "VOCABULARY",
    "ApiSettings",
    "CursorSettings",
    "CursorWriteSettings",
    "EndpointSettings",
    "GroupSettings",
    "InputTopicSettings",
    "KafkaSettings",
    "PollerSettings",
    "ProjectSettings",
    "RuntimeSettings",
    "Settings",
    "SettingsGroup",
    "TolokaSettings",
    "UploaderSettings",
    "documented_variables",
    "gather_variables",
    "is_secret_kafka_property",
    "kafka_property",
    "kafka_variable",
    "leaf_groups",
    "librdkafka_problems",
    "load_group",
    "load_settings",
    "mask_kafka_value",
    "merged_variables",
]

_MAX_BULK_ITEMS = 10_000  # the API rejects larger bulk requests with 413
_MAX_PAGE_SIZE = 1_000  # the listing endpoint's documented maximum


class SettingsGroup(BaseSettings):
    """A settings group read from a merged mapping of variable names (see `load_settings`)."""

    model_config = SettingsConfigDict(extra="ignore", frozen=True, validate_default=True)
    prefix: ClassVar[str]

    @classmethod
    def variable(cls, field_name: str) -> str:
        return f"{cls.prefix}{field_name}".upper()

    @classmethod
    def values_from(cls, variables: Mapping[str, str]) -> tuple[dict[str, Any], list[str]]:
        """The field values that `variables` set, and the problems found before validation."""
        values = {
            name: variables[cls.variable(name)]
            for name in cls.model_fields
            if cls.variable(name) in variables
        }
        return values, []

    @classmethod
    def documented(cls) -> list[tuple[str, str, str]]:
        """(variable, default, meaning) of each field."""
        rows: list[tuple[str, str, str]] = []
        for name, field in cls.model_fields.items():
            if field.is_required():
                default = "— (required)"
            else:
                default = str(field.get_default(call_default_factory=True))
            rows.append((cls.variable(name), default, field.description or ""))
        return rows

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


class ProjectSettings(SettingsGroup):
    """Which app project: every command about one project's items or cursor."""

    prefix: ClassVar[str] = "TOLOKA_"
    app_project_id: str = Field(
        description="the app project that receives and labels the items", min_length=1
    )


class TolokaSettings(ProjectSettings):
    """The app project and how to reach it: every command that calls the Apps API."""

    api_key: SecretStr = Field(
        description="API key, sent as `Authorization: ApiKey …`", min_length=1
    )
    base_url: str = Field(
        "https://toloka.dev/api/app/v0",
        description="Apps API base URL; the simulator serves http://HOST:PORT/api/app/v0",
        pattern=r"^https?://[^\s/]+",
    )


class ApiSettings(SettingsGroup):
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
        description=(
            "an API response body is never read past this: an error page still counts as its "
            "status, a larger 2xx is unusable (retried)"
        ),
    )


class KafkaSettings(SettingsGroup):
    """Kafka connection; `properties` holds every other `KAFKA_<PROPERTY>` for librdkafka."""

    prefix: ClassVar[str] = "KAFKA_"
    bootstrap_servers: str = Field("localhost:9092", min_length=1, description="bootstrap servers")
    # SecretStr for all of them: which librdkafka properties are secret is a guess, and a repr
    # of the settings must never show a password.
    properties: dict[str, SecretStr] = Field(
        default_factory=dict,
        description=(
            "any other librdkafka property (KAFKA_SECURITY_PROTOCOL …); those the connector sets "
            "itself are refused (README: Configuration errors)"
        ),
    )

    @classmethod
    def values_from(cls, variables: Mapping[str, str]) -> tuple[dict[str, Any], list[str]]:
        values, problems = super().values_from(variables)
        properties: dict[str, str] = {}
        for name, value in sorted(variables.items()):
            if not name.startswith(cls.prefix) or name == "KAFKA_BOOTSTRAP_SERVERS" or not value:
                continue
            prop = kafka_property(name)
            if prop in OWNED_KAFKA_PROPERTIES:
                why = OWNED_KAFKA_PROPERTIES[prop]
                problems.append(f"{name}: {prop} is set by the connector itself: {why}")
            elif prop in PYTHON_CLIENT_KEYS:
                problems.append(f"{name}: is not a librdkafka property")
            else:
                properties[prop] = value
        values["properties"] = properties
        return values, problems

    @classmethod
    def documented(cls) -> list[tuple[str, str, str]]:
        bootstrap, properties = super().documented()
        return [bootstrap, ("KAFKA_<PROPERTY>", "—", properties[2])]

    def client_config(self) -> dict[str, str]:
        """The librdkafka configuration shared by every client the connector creates."""
        return {
            "bootstrap.servers": self.bootstrap_servers,
            **{prop: value.get_secret_value() for prop, value in self.properties.items()},
        }


class DeadLetterTopicSettings(SettingsGroup):
    """Where what cannot be uploaded or published goes, with the reason (both roles write it)."""

    prefix: ClassVar[str] = "CONNECTOR_"
    dlq_topic: str = Field(
        "toloka.items.dlq",
        min_length=1,
        description="items that cannot be uploaded, and results that cannot be published, "
        "with the reason",
    )


class InputTopicSettings(DeadLetterTopicSettings):
    """The uploader's topics: where items come from and where the bad ones go."""

    input_topic: str = Field("toloka.items", min_length=1, description="items to upload")


class GroupSettings(SettingsGroup):
    """The uploader's consumer group, from which the poller's and the tools' ids derive."""

    prefix: ClassVar[str] = "CONNECTOR_"
    group_id: str = Field(
        "toloka-connector",
        min_length=1,
        description="consumer group of the uploader (the poller derives its own from it)",
    )


class UploaderSettings(GroupSettings, InputTopicSettings):
    """The uploader role: input topic → Apps API, bad records → dead-letter topic."""

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
    dlq_max_pending_bytes: int = Field(
        32 * 1024 * 1024,
        ge=1024,
        description=(
            "dead-letter bytes awaiting the broker's acknowledgement above which the input "
            "partitions holding them are paused"
        ),
    )
    dlq_timeout_seconds: float = Field(
        300.0,
        ge=1,
        description=(
            "a dead letter the broker has not acknowledged this long after it was written "
            "stops the uploader (exit 1); its record is read again after a restart"
        ),
    )


class CursorSettings(SettingsGroup):
    """Where the poller's cursor lives, and how long its writer counts as alive (`status`)."""

    prefix: ClassVar[str] = "CONNECTOR_"
    state_topic: str = Field(
        "toloka.connector.state",
        min_length=1,
        description="compacted topic holding the poller cursor",
    )
    leader_timeout_seconds: float = Field(
        15.0,
        gt=0,
        description=(
            "a standby poller takes over when the leader wrote no cursor record for this long "
            "(the leader writes one at least every quarter of it)"
        ),
    )


class CursorWriteSettings(CursorSettings):
    """What writing a cursor also takes: the poller's and `reset-cursor`'s."""

    late_window_seconds: float = Field(
        60.0,
        ge=0,
        description=(
            "an item that becomes visible up to this many seconds after its finished_at is "
            "still published, exactly once"
        ),
    )
    transaction_timeout_seconds: float = Field(
        60.0,
        ge=1,
        description="Kafka transaction timeout of the poller; also bounds its flush and commit",
    )


class PollerSettings(GroupSettings, CursorWriteSettings, DeadLetterTopicSettings):
    """The poller role: finished items → output topic, cursor → state topic, in one transaction."""

    output_topic: str = Field("toloka.results", min_length=1, description="finished items")
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


class EndpointSettings(SettingsGroup):
    """Where the health and metrics endpoints listen (`healthcheck` reads only these)."""

    prefix: ClassVar[str] = "CONNECTOR_"
    metrics_port: int = Field(
        9400, ge=0, le=65535, description="port of /metrics, /healthz, /readyz (0 disables)"
    )
    metrics_host: str = Field("127.0.0.1", description="address the metrics server binds to")


class RuntimeSettings(EndpointSettings):
    """Process-wide settings of the long-running commands: endpoints, logging, shutdown."""

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
    liveness_timeout_seconds: float = Field(
        60.0,
        gt=0,
        description=(
            "/healthz fails when a role's loop has not gone round for this long, unless it "
            "waits in a call to Kafka or the API (each ends by its own timeout); keep it above "
            "CONNECTOR_DRAIN_TIMEOUT_SECONDS, which a rebalance may take"
        ),
    )
    progress_timeout_seconds: float = Field(
        60.0,
        gt=0,
        description=(
            "/readyz fails when a role with work waiting made no progress for this long "
            "(uploader: records waiting, none uploaded or dead-lettered; leading poller: no "
            "listing answered or no transaction committed)"
        ),
    )
    kafka_refusal_timeout_seconds: float = Field(
        30.0,
        gt=0,
        description=(
            "when the brokers refuse every connection (authentication, TLS, security protocol) "
            "from start-up on, the process exits 1 after this long, naming the settings to "
            "check; after a first connection a refusal is an outage (/readyz), never fatal"
        ),
    )


G = TypeVar("G", bound=SettingsGroup)

GROUPS: tuple[type[SettingsGroup], ...] = (
    TolokaSettings,
    ApiSettings,
    KafkaSettings,
    UploaderSettings,
    PollerSettings,
    RuntimeSettings,
)
"""Every setting, in the order they are documented: what `run` and `check` use."""

API_GROUPS: tuple[type[SettingsGroup], ...] = (TolokaSettings, ApiSettings)
"""What calling the Apps API takes."""

OPEN_PREFIXES = (KafkaSettings.prefix,)
"""Any variable under these may be a setting: librdkafka decides about KAFKA_<PROPERTY>."""


def _vocabulary() -> Vocabulary:
    variables = {variable for group in GROUPS for variable, _, _ in group.documented()}
    variables.discard("KAFKA_<PROPERTY>")
    prefixes = {group.prefix for group in GROUPS}
    return Vocabulary(
        variables=frozenset(variables),
        strict_prefixes=tuple(sorted(prefixes - set(OPEN_PREFIXES))),
        open_prefixes=OPEN_PREFIXES,
        tables={prefix.rstrip("_").lower(): prefix for prefix in prefixes},
    )


VOCABULARY = _vocabulary()
"""Every name a setting may have; the TOML tables are the groups' prefixes (`[connector]` …)."""


def leaf_groups(groups: Iterable[type[SettingsGroup]]) -> list[type[SettingsGroup]]:
    """`groups` without those another of them includes (TolokaSettings includes ProjectSettings)."""
    unique = list(dict.fromkeys(groups))
    return [g for g in unique if not any(o is not g and issubclass(o, g) for o in unique)]


@dataclass(frozen=True)
class Settings:
    """The settings groups one command declared, validated.

    `get(InputTopicSettings)` answers with any loaded group that includes it (the full
    `UploaderSettings` of `run`, the bare topics of `replay-dlq`); a group the command did not
    declare raises LookupError, a programming error that a test of the command shows.
    """

    groups: tuple[SettingsGroup, ...]

    def get(self, kind: type[G]) -> G:
        for group in self.groups:
            if isinstance(group, kind):
                return group
        raise LookupError(f"{kind.__name__} is not among the settings this command declared")

    @property
    def project(self) -> ProjectSettings:
        return self.get(ProjectSettings)

    @property
    def toloka(self) -> TolokaSettings:
        return self.get(TolokaSettings)

    @property
    def api(self) -> ApiSettings:
        return self.get(ApiSettings)

    @property
    def kafka(self) -> KafkaSettings:
        return self.get(KafkaSettings)

    @property
    def uploader(self) -> UploaderSettings:
        return self.get(UploaderSettings)

    @property
    def poller(self) -> PollerSettings:
        return self.get(PollerSettings)

    @property
    def runtime(self) -> RuntimeSettings:
        return self.get(RuntimeSettings)

    def describe(self) -> list[tuple[str, str]]:
        """(variable, value) for every setting, secrets masked: what `check` prints."""
        rows: dict[str, str] = {}
        for group in self.groups:
            for name, value in group:
                if name == "properties":
                    rows.update(
                        (kafka_variable(prop), mask_kafka_value(prop, v.get_secret_value()))
                        for prop, v in sorted(value.items())
                    )
                    continue
                shown = "**********" if isinstance(value, SecretStr) else str(value)
                rows[group.variable(name)] = shown
        return list(rows.items())

    def secrets(self) -> list[str]:
        """Every secret value the settings hold: the API key, secret librdkafka properties."""
        found: list[str] = []
        for group in self.groups:
            for name, value in group:
                if isinstance(value, SecretStr):
                    found.append(value.get_secret_value())
                elif name == "properties":
                    found.extend(
                        v.get_secret_value()
                        for prop, v in value.items()
                        if is_secret_kafka_property(prop)
                    )
        return found


_PROPERTY_ALIASES = {"delivery.timeout.ms": "message.timeout.ms"}


def poller_producer_problems(kafka: KafkaSettings, poller: CursorWriteSettings) -> list[str]:
    """The poller's producer (and reset-cursor's, which writes the cursor the same way) adds
    `transactional.id` and `transaction.timeout.ms` (CONNECTOR_TRANSACTION_TIMEOUT_SECONDS) to
    the Kafka settings, and librdkafka holds other settings to them (`socket.timeout.ms` and
    `message.timeout.ms` at most the transaction timeout). One line naming the settings that
    clash, or none."""
    config = transactional_producer_settings(
        kafka.client_config(), transactional_id("check"), poller.transaction_timeout_seconds
    )
    error = new_producer_error(config)
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
        variables.insert(0, CursorWriteSettings.variable("transaction_timeout_seconds"))
    names = ", ".join(variables) or "KAFKA_* settings"
    return [f"{names}: the poller's transactional producer cannot start with these: {error}"]


# --- loading ---------------------------------------------------------------------------------


def gather_variables(
    config_file: Path | None,
    environ: Mapping[str, str] | None = None,
    overrides: Mapping[str, str] | None = None,
) -> tuple[dict[str, str], list[str]]:
    """File, then environment, then command line (later ones win), and every unknown name."""
    merged, problems = toml_variables(config_file, VOCABULARY) if config_file else ({}, [])
    environment, unknown = environment_variables(
        os.environ if environ is None else environ, VOCABULARY
    )
    merged.update(environment)
    merged.update(overrides or {})
    return merged, problems + unknown


def merged_variables(
    config_file: Path | None,
    environ: Mapping[str, str] | None = None,
    overrides: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """`gather_variables`, raising ConfigError for any unknown name."""
    variables, problems = gather_variables(config_file, environ, overrides)
    if problems:
        raise ConfigError(problems)
    return variables


_MESSAGES = {
    "int_parsing": "is not an integer",
    "int_from_float": "is not an integer",
    "float_parsing": "is not a number",
    "bool_parsing": "is not a boolean (use true or false)",
    "missing": "is required",
    "string_too_short": "must not be empty",
    "too_short": "must not be empty",  # a SecretStr's min_length
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
    values, problems = group.values_from(variables)
    try:
        instance = group(**values)
    except ValidationError as exc:
        for error in exc.errors():
            name = str(error["loc"][0])
            field: FieldInfo = group.model_fields[name]
            secret = field.annotation is SecretStr
            problems.append(f"{group.variable(name)}: {_describe_error(error, secret)}")
        return None, problems
    if isinstance(instance, KafkaSettings):
        problems.extend(librdkafka_problems(instance.client_config()))
    return (None if problems else instance), problems


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
    groups: Iterable[type[SettingsGroup]] = GROUPS,
) -> Settings:
    """Read and check the settings of `groups`; raise ConfigError with one line per problem.

    Unknown names are problems whatever the groups: the same environment serves every command.
    """
    variables, problems = gather_variables(config_file, environ, overrides)
    loaded: list[SettingsGroup] = []
    for group in leaf_groups(groups):
        instance, group_problems = _validate_group(group, variables)
        problems.extend(p for p in group_problems if p not in problems)  # shared fields: once
        if instance is not None:
            loaded.append(instance)
    kafka = next((g for g in loaded if isinstance(g, KafkaSettings)), None)
    cursor = next((g for g in loaded if isinstance(g, CursorWriteSettings)), None)
    if kafka is not None and cursor is not None and not problems:
        problems.extend(poller_producer_problems(kafka, cursor))
    if problems:
        raise ConfigError(problems)
    return Settings(tuple(loaded))


def documented_variables(
    groups: Iterable[type[SettingsGroup]] = GROUPS,
) -> list[tuple[str, str, str]]:
    """(variable, default, meaning) of every setting of `groups`: the source of --help, README."""
    rows: dict[str, tuple[str, str, str]] = {}
    for group in leaf_groups(groups):
        for row in group.documented():
            rows.setdefault(row[0], row)
    return list(rows.values())
