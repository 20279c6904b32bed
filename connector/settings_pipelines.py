"""Several pipelines' settings: what a `[[pipelines]]` table may set (the rest is one setting for
every pipeline of the process), and the topics that pipelines, or one pipeline's roles, must not
share."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from pydantic import TypeAdapter, ValidationError

from connector.settings_groups import (
    CursorSettings,
    DeadLetterTopicSettings,
    InputTopicSettings,
    PollerSettings,
    ProjectSettings,
    RoutingSettings,
    SettingsGroup,
    UploaderSettings,
)
from connector.settings_sources import PipelineTable

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
