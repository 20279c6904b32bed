"""The settings groups: every setting of the connector, by the group that uses it.

Each group is a pydantic model of the settings used together, named by a prefix and its field
(`CONNECTOR_INPUT_TOPIC` is `InputTopicSettings.input_topic`). Larger groups are built from
smaller ones by inheritance (`UploaderSettings` is an `InputTopicSettings`). How the settings are
read and checked, and the `Settings` a command gets: `connector.config`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

from connector.kafka_properties import OWNED_KAFKA_PROPERTIES, PYTHON_CLIENT_KEYS, kafka_property
from connector.stop_budget import AFTER_DRAIN_SECONDS

_MAX_BULK_ITEMS = 10_000  # the API rejects larger bulk requests with 413
_MAX_PAGE_SIZE = 1_000  # the listing endpoint's documented maximum
LEADER_TIMEOUT_SECONDS = 15.0

ValueFormat = Literal["json", "avro", "protobuf", "json_schema"]
"""How a record value is written: JSON text, or Confluent's wire format with a registry schema."""


CLIENT_DEFAULTS: Mapping[str, str] = {
    # A restarting broker can answer a metadata request without itself in it; librdkafka then
    # drops the broker, and a client whose bootstrap brokers were already dropped (librdkafka
    # does once it knows the cluster) is left with none. It bootstraps again only after this
    # long without metadata: 5 minutes by default, during which the uploader's consumer sat with
    # "no broker available" while the process's other clients were back (seen after a broker
    # restart on a TLS listener; its final offset commit then outlasted the shutdown timeout).
    "metadata.recovery.rebootstrap.trigger.ms": "10000",
}
"""librdkafka defaults of the connector's own, for every client; `KAFKA_<PROPERTY>` changes them."""


class SettingsGroup(BaseModel):
    """A settings group read from a merged mapping of variable names (see `load_settings`).

    A plain pydantic model: where a variable comes from (a TOML file, the environment, the
    command line) and which names are refused is `connector.settings_sources`' job, because the
    strict checks (an unknown name is an error, with the nearest known one; platform variables
    are dropped; TOML tables by prefix) are not what a settings library's sources do."""

    model_config = ConfigDict(extra="ignore", frozen=True, validate_default=True)
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
                default = str(field.get_default(call_default_factory=True)) or "(empty)"
            rows.append((cls.variable(name), default, field.description or ""))
        return rows


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


DEFAULT_MAX_RESPONSE_BYTES = 64 * 1024 * 1024
"""The API response size limit when none is set (also `TolokaClient`'s own default)."""


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
        DEFAULT_MAX_RESPONSE_BYTES,
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
            **CLIENT_DEFAULTS,
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


class KeyFieldSettings(SettingsGroup):
    """The input field that names an item: it keys the output records, and the uploader matches
    records with the items the API lists by it."""

    prefix: ClassVar[str] = "CONNECTOR_"
    key_field: str = Field(
        "id", min_length=1, description="field of input_data whose value keys the output record"
    )


class ReconcileSettings(KeyFieldSettings):
    """Exactly-once uploads: what the uploader checks with the API before sending again."""

    upload_reconcile: bool = Field(
        True,
        description=(
            "after a lost answer, a crash or a hand-over, ask the API which items exist and send "
            "only the missing ones (false: at-least-once, send again)"
        ),
    )
    reconcile_clock_skew_seconds: float = Field(
        10.0,
        ge=0,
        description=(
            "how far the API's clock may be off the connector's: the listing window of a "
            "reconciliation is widened by this much on each side"
        ),
    )
    reconcile_recheck_seconds: float = Field(
        2.0,
        ge=0,
        description=(
            "how late the API may list a new item: a reconciliation lists again after this "
            "long before it calls an item missing (a hand-over waits this long first)"
        ),
    )
    reconcile_timeout_seconds: float = Field(
        60.0,
        ge=0,
        description=(
            "how long a reconciliation keeps asking for the listing while the API fails; then "
            "its records are sent again, at least once"
        ),
    )


class RoutingSettings(SettingsGroup):
    """Whether a pipeline routes its input topic's records by header."""

    prefix: ClassVar[str] = "CONNECTOR_"
    route_by_header: bool = Field(
        False,
        description=(
            "the uploader takes only the records whose toloka-app-project-id header names its "
            "app project (without a known one: dead-lettered, unrouted), so pipelines may share "
            "an input topic (read once, in the one group_id)"
        ),
    )


class UploaderSettings(GroupSettings, InputTopicSettings, ReconcileSettings, RoutingSettings):
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
    adaptive_in_flight: bool = Field(
        True,
        description=(
            "on a 429, halve the bulk requests in flight (growing back by one per two rounds "
            "of successes, up to CONNECTOR_MAX_IN_FLIGHT) and hold every request for its "
            "Retry-After; false: always CONNECTOR_MAX_IN_FLIGHT, each request waits out its own"
        ),
    )
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
    input_format: ValueFormat = Field(
        "json",
        description=(
            "input value format: json, or avro / protobuf / json_schema in Confluent's wire "
            "format, decoded with the writer's schema from SCHEMA_REGISTRY_URL"
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


MAX_WORKERS = 64
"""A process each, and a pipe each to the parent's every scrape: beyond what one host's cores
can use."""


class WorkerSettings(SettingsGroup):
    """How many uploader processes one `run` or `upload` runs (`connector.app.workers`)."""

    prefix: ClassVar[str] = "CONNECTOR_"
    workers: int = Field(
        1,
        ge=1,
        le=MAX_WORKERS,
        description=(
            "uploader processes this command runs in one consumer group: itself and N-1 worker "
            f"processes, behind its one /metrics endpoint; at most {MAX_WORKERS} (README: "
            "Several cores)"
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
        LEADER_TIMEOUT_SECONDS,
        gt=0,
        description=(
            "a poller process that stops answering loses its app projects to the others after "
            "this long (the session timeout of the pollers' leadership group), and a leader "
            "whose cursor records stop this long counts as gone (it writes one at least every "
            "quarter of it)"
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
        7.5,
        ge=1,
        description=(
            "Kafka transaction timeout of the poller; also bounds its flush and commit. At most "
            "half of CONNECTOR_LEADER_TIMEOUT_SECONDS, and half of it when not set (at least 1)"
        ),
    )

    @model_validator(mode="before")
    @classmethod
    def _transaction_timeout_follows_the_leader_timeout(cls, data: Any) -> Any:
        """Unset, the transaction timeout is half the leader timeout (the relation the settings
        check holds: `connector.settings_checks.related_setting_problems`)."""
        if isinstance(data, dict) and "transaction_timeout_seconds" not in data:
            try:
                leader = float(data.get("leader_timeout_seconds", LEADER_TIMEOUT_SECONDS))
            except (TypeError, ValueError):
                return data  # the leader timeout's own error is reported
            return {**data, "transaction_timeout_seconds": max(1.0, leader / 2)}
        return data


class PollerSettings(GroupSettings, CursorWriteSettings, DeadLetterTopicSettings, KeyFieldSettings):
    """The poller role: finished items → output topic, cursor → state topic, in one transaction."""

    output_topic: str = Field("toloka.results", min_length=1, description="finished items")
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
    output_format: ValueFormat = Field(
        "json",
        description=(
            "output value format: json, or avro / protobuf / json_schema with a schema derived "
            "from the app's specs, registered at SCHEMA_REGISTRY_URL"
        ),
    )
    output_subject: str = Field(
        "",
        description=(
            "registry subject of the output schema; empty: <output topic>-value (topic name "
            "strategy)"
        ),
    )
    late_scan_interval_seconds: float = Field(
        10.0,
        gt=0,
        description=(
            "how often the poller lists the late window again for items that became visible "
            "late; such an item is published at most this long (plus a poll) after it appears"
        ),
    )
    transaction_span_seconds: float = Field(
        0.0,
        ge=0,
        description=(
            "while a backlog drains, how long the pages listed meanwhile may join one "
            "transaction (its flush and commit paid once; at most a quarter of the transaction "
            "timeout); a backlog's results become visible up to this much later. 0 (the "
            "default until measured on a quiet machine): a transaction per page"
        ),
    )


class SchemaRegistrySettings(SettingsGroup):
    """The Confluent-compatible Schema Registry that the avro, protobuf and json_schema formats
    use (`connector.schema_registry`)."""

    prefix: ClassVar[str] = "SCHEMA_REGISTRY_"
    url: str = Field(
        "",
        description="Schema Registry URL (required by a format other than json)",
        pattern=r"^(https?://[^\s/]+.*)?$",
    )
    basic_auth_user_info: SecretStr = Field(
        SecretStr(""), description="`user:password` for the registry's HTTP basic auth"
    )
    ssl_ca_location: str = Field(
        "", description="CA file (PEM) that signed the registry's certificate (https)"
    )

    @field_validator("basic_auth_user_info")
    @classmethod
    def _user_and_password(cls, value: SecretStr) -> SecretStr:
        text = value.get_secret_value()
        if text and ":" not in text:
            raise ValueError("must be user:password")
        return value


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
            "drain timeout, which it includes; the drain is shortened to leave "
            f"{AFTER_DRAIN_SECONDS:g} s of it to the final commit and leaving the group)"
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


GROUPS: tuple[type[SettingsGroup], ...] = (
    TolokaSettings,
    ApiSettings,
    KafkaSettings,
    UploaderSettings,
    WorkerSettings,
    PollerSettings,
    SchemaRegistrySettings,
    RuntimeSettings,
)
"""Every setting, in the order they are documented: what `run` and `check` use."""

API_GROUPS: tuple[type[SettingsGroup], ...] = (TolokaSettings, ApiSettings)
"""What calling the Apps API takes."""
