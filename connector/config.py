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
from pathlib import Path
from typing import TypeVar

from connector.errors import ConfigError
from connector.kafka_properties import (
    is_secret_kafka_property,
    kafka_property,
    kafka_variable,
    librdkafka_problems,
    mask_kafka_value,
)
from connector.settings_checks import (
    poller_producer_problems,
    registry_problems,
    related_setting_problems,
)
from connector.settings_groups import (
    API_GROUPS,
    GROUPS,
    ApiSettings,
    CursorSettings,
    CursorWriteSettings,
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
from connector.settings_loaded import Settings
from connector.settings_pipelines import PIPELINE_SETTINGS, own_topic_clashes, pipeline_clashes
from connector.settings_sources import (
    PipelineTable,
    Vocabulary,
    environment_variables,
    toml_settings,
)
from connector.settings_validation import validate_group

# The groups live in connector.settings_groups, the KAFKA_<PROPERTY> helpers in
# connector.kafka_properties, `Settings` in connector.settings_loaded and the keys of a
# `[[pipelines]]` table in connector.settings_pipelines; this module is where the rest of the code
# finds them.
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


def load_group(group: type[G], variables: Mapping[str, str]) -> G:
    """One settings group on its own, for commands that need only part of the settings."""
    instance, problems = validate_group(group, variables)
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
        instance, group_problems = validate_group(group, variables)
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


def documented_variables(
    groups: Iterable[type[SettingsGroup]] = GROUPS,
) -> list[tuple[str, str, str]]:
    """(variable, default, meaning) of every setting of `groups`: the source of --help, README."""
    rows: dict[str, tuple[str, str, str]] = {}
    for group in leaf_groups(groups):
        for row in group.documented():
            rows.setdefault(row[0], row)
    return list(rows.values())
