"""The roles of a connector process (`run`: both, `upload`, `poll`), built from the settings."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from connector.app.clients import build_client
from connector.app.readiness import CheckedRole
from connector.app.topics import topic_needs
from connector.clock import SystemClock
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
from connector.toloka.pacing import Pacing

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
        "uploader": lambda: _uploader(settings, metrics, availability, outstanding, kafka),
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


def _uploader(
    settings: Settings,
    metrics: Metrics,
    availability: ApiAvailability,
    outstanding: OutstandingItems | None,
    kafka: KafkaAvailability,
) -> Role:
    """The uploader, with an API client whose 429s adapt its requests in flight (unless
    CONNECTOR_ADAPTIVE_IN_FLIGHT is off)."""
    from connector.uploader import build_uploader  # noqa: PLC0415 - see build_roles

    uploading = settings.uploader
    pacing = (
        Pacing.adaptive(uploading.max_in_flight, SystemClock(), metrics)
        if uploading.adaptive_in_flight
        else None
    )
    client = build_client(
        settings, metrics, availability, in_flight=uploading.max_in_flight, pacing=pacing
    )
    limit = None if pacing is None else pacing.limit
    return build_uploader(settings, client, metrics, outstanding, kafka, in_flight_limit=limit)
