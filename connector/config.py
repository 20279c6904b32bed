"""Settings: environment variables, an optional TOML file, and command-line overrides.

Precedence: command line > environment > TOML file > defaults. Every setting is an environment
variable named after its group prefix and field (`CONNECTOR_INPUT_TOPIC`); the TOML file uses the
same names, flat (`CONNECTOR_INPUT_TOPIC = "x"`) or grouped in tables by prefix
(`[connector] input_topic = "x"`, `[kafka] "security.protocol" = "SSL"`). A name the connector
does not know is an error (`connector.settings_sources`).

Settings come in groups (`connector.settings_groups`), each holding settings that are used
together. A command declares the
groups it uses (`load_settings(groups=…)`): only those are read and required, and its `--help`
lists only their variables. A group it did not declare is absent from its `Settings`: reading one
raises instead of quietly returning defaults. Larger groups are built from smaller ones by
inheritance (`UploaderSettings` is an `InputTopicSettings`), so the roles read
`settings.uploader.input_topic` while `replay-dlq` declares only the input topics.

Several app projects: `[[pipelines]]` tables in the TOML file, one per project (each with
`app_project_id` and any per-pipeline setting, `PIPELINE_SETTINGS`), over the defaults that all
other sources give. `Settings.pipelines` holds one `Settings` per pipeline, in file order;
without tables, the one pipeline the single-project variables define. A table's keys win over
every other source: they are that project's own, the rest is every project's default.

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
from typing import Any, TypeVar

from pydantic import SecretStr, TypeAdapter, ValidationError
from pydantic.fields import FieldInfo

from connector.contract.leadership import transactional_id
from connector.errors import ConfigError
from connector.kafka_properties import (
    is_secret_kafka_property,
    kafka_property,
    kafka_variable,
    librdkafka_problems,
    mask_kafka_value,
    new_producer_error,
    transactional_producer_settings,
)
from connector.logs import MASK
from connector.settings_groups import (
    API_GROUPS,
    GROUPS,
    ApiSettings,
    CursorSettings,
    CursorWriteSettings,
    DeadLetterTopicSettings,
    EndpointSettings,
    GroupSettings,
    InputTopicSettings,
    KafkaSettings,
    PollerSettings,
    ProjectSettings,
    ReconcileSettings,
    RoutingSettings,
    RuntimeSettings,
    SchemaRegistrySettings,
    SettingsGroup,
    TolokaSettings,
    UploaderSettings,
    WorkerSettings,
)
from connector.settings_sources import (
    PipelineTable,
    Vocabulary,
    environment_variables,
    toml_settings,
)

# The groups live in connector.settings_groups and the KAFKA_<PROPERTY> helpers in
# connector.kafka_properties; this module is where the rest of the code finds them.
__all__ = [
    "API_GROUPS",
    "GROUPS",
    "PIPELINE_SETTINGS",
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
    "ReconcileSettings",
    "RoutingSettings",
    "RuntimeSettings",
    "SchemaRegistrySettings",
    "Settings",
    "SettingsGroup",
    "TolokaSettings",
    "UploaderSettings",
    "WorkerSettings",
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

G = TypeVar("G", bound=SettingsGroup)

OPEN_PREFIXES = (KafkaSettings.prefix,)
"""Any variable under these may be a setting: librdkafka decides about KAFKA_<PROPERTY>."""


SHARED_ROLE_SETTINGS = frozenset(
    {
        "group_id",  # one consumer group over every pipeline's input topic
        "state_topic",  # every pipeline's cursor, keyed by its project
        "leader_timeout_seconds",
        "transaction_timeout_seconds",  # held to the leader timeout
        "drain_timeout_seconds",  # held to the process's shutdown timeout
        "commit_interval_ms",
        "dlq_max_pending_bytes",
        "dlq_timeout_seconds",
    }
)
"""Settings of the roles' groups that are one setting for every pipeline of the process."""


def _pipeline_settings() -> dict[str, str]:
    keys = {"app_project_id": ProjectSettings.variable("app_project_id")}
    for group in (UploaderSettings, PollerSettings):
        for name in group.model_fields:
            if name not in SHARED_ROLE_SETTINGS:
                keys.setdefault(name, group.variable(name))
    return keys


PIPELINE_SETTINGS: Mapping[str, str] = _pipeline_settings()
"""Key of a `[[pipelines]]` table → the variable it sets for that pipeline: the project, its
topics, key field, formats and tuning (the names of the `[connector]` table)."""


def _vocabulary() -> Vocabulary:
    variables = {variable for group in GROUPS for variable, _, _ in group.documented()}
    variables.discard("KAFKA_<PROPERTY>")
    prefixes = {group.prefix for group in GROUPS}
    return Vocabulary(
        variables=frozenset(variables),
        strict_prefixes=tuple(sorted(prefixes - set(OPEN_PREFIXES))),
        open_prefixes=OPEN_PREFIXES,
        tables={prefix.rstrip("_").lower(): prefix for prefix in prefixes},
        pipeline_keys=PIPELINE_SETTINGS,
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
    several: tuple[Settings, ...] = ()
    """Each pipeline's settings when the file has `[[pipelines]]` (`groups` are the first's)."""

    @property
    def pipelines(self) -> tuple[Settings, ...]:
        """One `Settings` per app project, in file order: its project, topics, key field,
        formats and tuning; the process-wide groups (Kafka, API, runtime) are the same in each.
        Without `[[pipelines]]`, these settings alone."""
        return self.several or (self,)

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

    @property
    def workers(self) -> WorkerSettings:
        return self.get(WorkerSettings)

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
                shown = MASK if isinstance(value, SecretStr) else str(value)
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


def registry_problems(loaded: Iterable[SettingsGroup]) -> list[str]:
    """A value format other than json needs the registry: one line per format setting that asks
    for it while SCHEMA_REGISTRY_URL is empty."""
    groups = list(loaded)
    registry = next((g for g in groups if isinstance(g, SchemaRegistrySettings)), None)
    if registry is None or registry.url:
        return []
    formats = [
        (type(group).variable(name), getattr(group, name))
        for group in groups
        for name in ("input_format", "output_format")
        if name in type(group).model_fields
    ]
    url = SchemaRegistrySettings.variable("url")
    return [
        f"{url}: is required by {variable}={value}"
        for variable, value in formats
        if value != "json"
    ]


def related_setting_problems(groups: Iterable[SettingsGroup]) -> list[str]:
    """Settings that only make sense together, where a command uses both (one line per clash,
    naming both):

    - the shutdown timeout includes the uploader's drain (above it, or the process exits 1 in
      the middle of the drain, without committing the offsets of what it finished);
    - liveness must outlast a drain, which a rebalance may take (or the pod is killed for it);
    - a leader's keepalive is its cursor record, written every quarter of the leader timeout
      in a transaction: a commit may take up to the transaction timeout, and a transaction
      another poller holds open on the shared state partition hides later records from the
      standby for up to the same. At most half the leader timeout keeps a live leader's
      keepalives visible within the leader timeout, so a slow commit never hands leadership
      over (and back: the two fence each other in turn)."""
    found = {type(group): group for group in groups}
    uploader = next((g for g in found.values() if isinstance(g, UploaderSettings)), None)
    runtime = next((g for g in found.values() if isinstance(g, RuntimeSettings)), None)
    cursor = next((g for g in found.values() if isinstance(g, CursorWriteSettings)), None)
    problems: list[str] = []
    if uploader is not None and runtime is not None:
        drain = UploaderSettings.variable("drain_timeout_seconds")
        for name in ("shutdown_timeout_seconds", "liveness_timeout_seconds"):
            value = getattr(runtime, name)
            if value <= uploader.drain_timeout_seconds:
                problems.append(
                    f"{RuntimeSettings.variable(name)}: {value:g} must be above {drain} "
                    f"({uploader.drain_timeout_seconds:g})"
                )
    if cursor is not None and cursor.transaction_timeout_seconds > (
        cursor.leader_timeout_seconds / 2
    ):
        problems.append(
            f"{CursorWriteSettings.variable('transaction_timeout_seconds')}: "
            f"{cursor.transaction_timeout_seconds:g} must be at most half of "
            f"{CursorSettings.variable('leader_timeout_seconds')} "
            f"({cursor.leader_timeout_seconds:g}): a commit that slow makes a live leader look "
            "dead to the standby"
        )
    return problems


# --- loading ---------------------------------------------------------------------------------


def _gather(
    config_file: Path | None,
    environ: Mapping[str, str] | None,
    overrides: Mapping[str, str] | None,
) -> tuple[dict[str, str], list[PipelineTable], list[str]]:
    """File, then environment, then command line (later ones win); the file's pipeline
    tables; every unknown name."""
    if config_file is None:
        merged: dict[str, str] = {}
        tables: list[PipelineTable] = []
        problems: list[str] = []
    else:
        found = toml_settings(config_file, VOCABULARY)
        merged, tables, problems = found.variables, found.pipelines, found.problems
    environment, unknown = environment_variables(
        os.environ if environ is None else environ, VOCABULARY
    )
    merged.update(environment)
    merged.update(overrides or {})
    return merged, tables, problems + unknown


def gather_variables(
    config_file: Path | None,
    environ: Mapping[str, str] | None = None,
    overrides: Mapping[str, str] | None = None,
) -> tuple[dict[str, str], list[str]]:
    """File, then environment, then command line (later ones win), and every unknown name."""
    merged, _, problems = _gather(config_file, environ, overrides)
    return merged, problems


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
    variables, tables, problems = _gather(config_file, environ, overrides)
    leaves = leaf_groups(groups)
    if not tables:
        settings, found = _validated(leaves, variables, problems)
        _add_once(problems, found)
        if not problems:
            problems.extend(own_topic_clashes(settings.groups))
        if problems:
            raise ConfigError(problems)
        return settings
    leaves = leaf_groups([*leaves, ProjectSettings])  # each pipeline knows its project
    project = ProjectSettings.variable("app_project_id")
    if project in variables:
        problems.append(
            f"{project}: not used when {config_file} has [[pipelines]] (each names its "
            "app_project_id): unset it"
        )
    pipelines: list[Settings] = []
    for table in tables:
        if project not in table.variables:
            continue  # the table's own problem says so
        pipeline, found = _validated(leaves, {**variables, **table.variables}, problems)
        _add_once(problems, [_in_table(line, table) for line in found])
        pipelines.append(pipeline)
    if not problems:
        problems.extend(pipeline_clashes(tables, variables))
    if problems:
        raise ConfigError(problems)
    return Settings(pipelines[0].groups, tuple(pipelines))


def _validated(
    leaves: list[type[SettingsGroup]], variables: Mapping[str, str], earlier: list[str]
) -> tuple[Settings, list[str]]:
    """The groups `leaves` read from `variables`, and their problems (the settings checked
    together only when no `earlier` problem or a group's own makes them moot)."""
    problems: list[str] = []
    loaded: list[SettingsGroup] = []
    for group in leaves:
        instance, group_problems = _validate_group(group, variables)
        _add_once(problems, group_problems)  # fields shared by groups: once
        if instance is not None:
            loaded.append(instance)
    if not problems and not earlier:
        problems.extend(related_setting_problems(loaded))
    kafka = next((g for g in loaded if isinstance(g, KafkaSettings)), None)
    cursor = next((g for g in loaded if isinstance(g, CursorWriteSettings)), None)
    if kafka is not None and cursor is not None and not problems and not earlier:
        problems.extend(poller_producer_problems(kafka, cursor))
    problems.extend(registry_problems(loaded))
    return Settings(tuple(loaded)), problems


def _add_once(problems: list[str], found: Iterable[str]) -> None:
    problems.extend(p for p in found if p not in problems)


def _in_table(problem: str, table: PipelineTable) -> str:
    """`problem` ("VARIABLE: what is wrong") naming the table's key when the table set it; a
    problem of a default is the same line for every pipeline, said once."""
    variable, colon, rest = problem.partition(": ")
    key = table.keys.get(variable)
    return f"{table.where} {key}: {rest}" if colon and key else problem


_IS_TRUE = TypeAdapter(bool)


def pipeline_clashes(tables: list[PipelineTable], defaults: Mapping[str, str]) -> list[str]:
    """Pipelines that would mix their work: one project twice, a topic the connector writes
    (an output, a dead-letter or the state topic) that is any other topic of any pipeline, a
    shared input topic unless every pipeline reading it routes by header."""

    def value(table: PipelineTable, group: type[SettingsGroup], name: str) -> str:
        variable = group.variable(name)
        default = group.model_fields[name].get_default()
        return table.variables.get(variable, defaults.get(variable, str(default)))

    def routed(table: PipelineTable) -> bool:
        try:
            return _IS_TRUE.validate_python(value(table, RoutingSettings, "route_by_header"))
        except ValidationError:
            return False  # the setting's own problem was reported

    problems: list[str] = []
    projects: dict[str, PipelineTable] = {}
    for table in tables:
        shown = value(table, ProjectSettings, "app_project_id")
        first = projects.setdefault(shown, table)
        if first is not table:
            problems.append(
                f"{table.where} app_project_id: {shown!r} is also pipeline #{first.number}'s; "
                "each pipeline is a different app project"
            )
    topics: list[tuple[type[SettingsGroup], str]] = [
        (PollerSettings, "output_topic"),
        (DeadLetterTopicSettings, "dlq_topic"),
        (InputTopicSettings, "input_topic"),
    ]
    state = value(tables[0], CursorSettings, "state_topic")  # one for every pipeline
    users: dict[str, tuple[PipelineTable | None, str]] = {state: (None, "state_topic")}
    for group, name in topics:
        for table in tables:
            shown = value(table, group, name)
            owner, owner_name = users.setdefault(shown, (table, name))
            if owner is table and owner_name == name:
                continue
            if (
                name == owner_name == "input_topic"
                and owner is not None
                and routed(owner)
                and routed(table)
            ):
                continue  # a shared input topic, routed by header
            problems.append(
                f"{table.where} {name}: {shown!r} is also {_topic_clash(owner, owner_name, name)}"
            )
    return problems


_TOPIC_FIELDS = ("state_topic", "output_topic", "dlq_topic", "input_topic")
"""The topics of one pipeline, those written alone first (the message names the one read)."""


def own_topic_clashes(groups: Iterable[SettingsGroup]) -> list[str]:
    """The one pipeline of the single-project settings: its input, output, dead-letter and
    state topics are four topics (results written to the input would be uploaded again; dead
    letters in the output would be taken for results). Only the topics of the groups a command
    loaded are compared. `pipeline_clashes` is the same rule across `[[pipelines]]`."""
    named: dict[str, tuple[str, str]] = {}
    for group in groups:
        for name in _TOPIC_FIELDS:
            if name in type(group).model_fields:
                named.setdefault(name, (type(group).variable(name), getattr(group, name)))
    seen: dict[str, str] = {}
    problems: list[str] = []
    for name in _TOPIC_FIELDS:
        if name not in named:
            continue
        variable, topic = named[name]
        other = seen.setdefault(topic, variable)
        if other != variable:
            problems.append(f"{variable}: {topic!r} is also {other}; {_WRITTEN_ALONE}")
    return problems


def _topic_clash(owner: PipelineTable | None, owner_name: str, name: str) -> str:
    """Whose topic a pipeline's `name` topic also is (`owner`'s `owner_name`; no `owner`: the
    state topic), and the rule that refuses it: what follows "… is also "."""
    if owner is None:
        return f"the state_topic (every pipeline's cursor); {_WRITTEN_ALONE}"
    if owner_name != name:
        return f"pipeline #{owner.number}'s {owner_name}; {_WRITTEN_ALONE}"
    if name == "input_topic":
        return (
            f"pipeline #{owner.number}'s; pipelines share an input topic only when each sets "
            "route_by_header = true"
        )
    return f"pipeline #{owner.number}'s; each pipeline needs its own"


_WRITTEN_ALONE = (
    "a topic the connector writes (output, dead letters, state) is used for nothing else"
)


def documented_variables(
    groups: Iterable[type[SettingsGroup]] = GROUPS,
) -> list[tuple[str, str, str]]:
    """(variable, default, meaning) of every setting of `groups`: the source of --help, README."""
    rows: dict[str, tuple[str, str, str]] = {}
    for group in leaf_groups(groups):
        for row in group.documented():
            rows.setdefault(row[0], row)
    return list(rows.values())
