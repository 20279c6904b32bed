"""The roles of a connector process (`run`: both, `upload`, `poll`), built from the settings."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from connector.app.clients import build_client
from connector.app.readiness import CheckedRole
from connector.app.topics import topic_needs
from connector.config import (
    API_GROUPS,
    KafkaSettings,
    PollerSettings,
    RuntimeSettings,
    SchemaRegistrySettings,
    Settings,
    SettingsGroup,
    UploaderSettings,
)
from connector.kafka.availability import KafkaAvailability
from connector.kafka.topic_watch import TopicWatch
from connector.lifecycle import Role
from connector.metrics import Metrics
from connector.outstanding import OutstandingItems
from connector.toloka.availability import ApiAvailability

ROLE_SETTINGS: dict[str, Sequence[type[SettingsGroup]]] = {
    "uploader": (
        *API_GROUPS,
        KafkaSettings,
        UploaderSettings,
        SchemaRegistrySettings,
        RuntimeSettings,
    ),
    "poller": (*API_GROUPS, KafkaSettings, PollerSettings, SchemaRegistrySettings, RuntimeSettings),
}
"""The settings groups each role uses; a command uses those of its roles."""


def build_roles(
    names: tuple[str, ...],
    settings: Settings,
    metrics: Metrics,
    kafka: KafkaAvailability | None = None,
) -> list[Role]:
    """The roles `names`, each ready only when Kafka is reachable and its topics are right;
    their Kafka clients report to `kafka` (a tracker of their own without it)."""
    # Imported here so that `simulator` or `check` never pay for the roles' imports.
    from connector.poller import build_poller  # noqa: PLC0415
    from connector.uploader import build_uploader  # noqa: PLC0415

    outstanding = OutstandingItems() if len(names) > 1 else None
    availability = ApiAvailability(metrics)
    kafka = kafka or KafkaAvailability(settings.kafka.bootstrap_servers, metrics)
    needs = {name: topic_needs(settings, name) for name in names}
    watch = TopicWatch(
        settings.kafka.client_config(),
        [need for name in names for need in needs[name]],
        kafka=kafka,
    )
    builders: dict[str, Callable[[], Role]] = {
        "uploader": lambda: build_uploader(
            settings,
            build_client(
                settings, metrics, availability, in_flight=settings.uploader.max_in_flight
            ),
            metrics,
            outstanding,
            kafka,
        ),
        "poller": lambda: build_poller(
            settings,
            build_client(settings, metrics, availability),
            metrics,
            outstanding,
            kafka=kafka,
        ),
    }
    return [
        CheckedRole(builders[name](), kafka, watch, [need.topic for need in needs[name]])
        for name in names
    ]
