"""The settings one command loaded: `Settings`, the groups it declared, validated (with one
`Settings` per pipeline under `[[pipelines]]`); what `check` prints of them, and the secrets they
hold. Read and checked by `connector.config`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypeVar

from pydantic import SecretStr

from connector.kafka_properties import is_secret_kafka_property, kafka_variable, mask_kafka_value
from connector.logs import MASK
from connector.settings_groups import (
    ApiSettings,
    KafkaSettings,
    PollerSettings,
    ProjectSettings,
    RuntimeSettings,
    SettingsGroup,
    TolokaSettings,
    UploaderSettings,
    WorkerSettings,
)

G = TypeVar("G", bound=SettingsGroup)


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
