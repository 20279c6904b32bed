"""The settings groups: every setting of the connector, by the group that uses it.

Each group is a pydantic model of the settings used together, named by a prefix and its field
(`CONNECTOR_INPUT_TOPIC` is `InputTopicSettings.input_topic`). Larger groups are built from
smaller ones by inheritance (`UploaderSettings` is an `InputTopicSettings`). How the settings are
read and checked, and the `Settings` a command gets: `connector.config`.

The groups live in modules by what uses them (`settings_api`, `settings_kafka`,
`settings_topics`, `settings_uploader`, `settings_poller`, `settings_registry`,
`settings_runtime`, on the base `settings_group`); this module names them all, in the order
they are documented.
"""

from __future__ import annotations

from connector.settings_api import (
    DEFAULT_MAX_RESPONSE_BYTES,
    ApiSettings,
    ProjectSettings,
    TolokaSettings,
)
from connector.settings_group import SettingsGroup, ValueFormat
from connector.settings_kafka import CLIENT_DEFAULTS, KafkaSettings
from connector.settings_poller import (
    LEADER_TIMEOUT_SECONDS,
    CursorSettings,
    CursorWriteSettings,
    PollerSettings,
)
from connector.settings_registry import SchemaRegistrySettings
from connector.settings_runtime import EndpointSettings, RuntimeSettings
from connector.settings_topics import (
    DeadLetterTopicSettings,
    GroupSettings,
    InputTopicSettings,
    KeyFieldSettings,
)
from connector.settings_uploader import (
    MAX_WORKERS,
    ReconcileSettings,
    RoutingSettings,
    UploaderSettings,
    WorkerSettings,
)

__all__ = [
    "API_GROUPS",
    "CLIENT_DEFAULTS",
    "DEFAULT_MAX_RESPONSE_BYTES",
    "GROUPS",
    "LEADER_TIMEOUT_SECONDS",
    "MAX_WORKERS",
    "ApiSettings",
    "CursorSettings",
    "CursorWriteSettings",
    "DeadLetterTopicSettings",
    "EndpointSettings",
    "GroupSettings",
    "InputTopicSettings",
    "KafkaSettings",
    "KeyFieldSettings",
    "PollerSettings",
    "ProjectSettings",
    "ReconcileSettings",
    "RoutingSettings",
    "RuntimeSettings",
    "SchemaRegistrySettings",
    "SettingsGroup",
    "TolokaSettings",
    "UploaderSettings",
    "ValueFormat",
    "WorkerSettings",
]

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
