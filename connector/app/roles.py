"""The roles of a connector process (`run`: both, `upload`, `poll`), built from the settings."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

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
    WorkerSettings,
)
from connector.kafka.availability import KafkaAvailability
from connector.kafka.topic_watch import TopicWatch
from connector.lifecycle import Role
from connector.metrics import Metrics
from connector.outstanding import OutstandingItems
from connector.toloka.availability import ApiAvailability
from connector.toloka.pacing import Pacing, PauseGate

if TYPE_CHECKING:
    from connector.uploader.role import UploaderPipeline

ROLE_SETTINGS: dict[str, Sequence[type[SettingsGroup]]] = {
    "uploader": (
        *API_GROUPS,
        KafkaSettings,
        UploaderSettings,
        WorkerSettings,
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
    """The roles `names` of every pipeline (app project), each ready only when Kafka is
    reachable and its topics are right; their Kafka clients report to `kafka` (a tracker of
    their own without it). Each pipeline's roles write its metrics (`app_project` label)."""
    # Imported here so that `simulator` or `check` never pay for the roles' imports.
    from connector.poller import PollerPipeline, build_pollers  # noqa: PLC0415
    from connector.uploader.role import build_uploaders  # noqa: PLC0415

    pipelines = settings.pipelines
    # Per project: the gauge and the end-to-end histogram are labelled by it.
    outstanding = {
        pipeline.toloka.app_project_id: OutstandingItems()
        for pipeline in pipelines
        if len(names) > 1
    }
    availability = ApiAvailability(metrics)
    kafka = kafka or KafkaAvailability(settings.kafka.bootstrap_servers, metrics)
    needs = {(p, name): topic_needs(pipeline, name) for p, pipeline in enumerate(pipelines)
             for name in names}  # fmt: skip
    watch = TopicWatch(
        settings.kafka.client_config(),
        [need for role_needs in needs.values() for need in role_needs],
        kafka=kafka,
    )

    views = [metrics.for_project(pipeline.toloka.app_project_id) for pipeline in pipelines]
    # One pause for the process: a 429's Retry-After holds every request sent with the key.
    gate = PauseGate(SystemClock())
    # One leadership group member for every pipeline's poller: the group spreads the
    # pipelines over the instances (connector.poller.group).
    pollers = (
        build_pollers(
            [
                PollerPipeline(
                    pipeline,
                    build_client(pipeline, view, availability, pacing=Pacing(gate)),
                    view,
                    outstanding.get(pipeline.toloka.app_project_id),
                )
                for pipeline, view in zip(pipelines, views, strict=True)
            ],
            kafka=kafka,
        )
        if "poller" in names
        else []
    )

    # One consumer in one group reads every pipeline's input topic (connector.uploader.shared).
    uploaders = (
        build_uploaders(
            [
                _uploader(
                    pipeline,
                    view,
                    availability,
                    gate,
                    outstanding.get(pipeline.toloka.app_project_id),
                )
                for pipeline, view in zip(pipelines, views, strict=True)
            ],
            kafka,
        )
        if "uploader" in names
        else []
    )

    roles: list[Role] = []
    for p, pipeline in enumerate(pipelines):
        project = pipeline.toloka.app_project_id
        for name in names:
            role: Role = uploaders[p] if name == "uploader" else pollers[p]
            topics = [need.topic for need in needs[p, name]]
            roles.append(
                CheckedRole(
                    role,
                    kafka,
                    watch,
                    topics,
                    app_project=project,
                    named_by_project=len(pipelines) > 1,
                )
            )
    return roles


def _uploader(
    settings: Settings,
    metrics: Metrics,
    availability: ApiAvailability,
    gate: PauseGate,
    outstanding: OutstandingItems | None,
) -> UploaderPipeline:
    """The uploader of one pipeline, with an API client whose 429s adapt its requests in
    flight (unless CONNECTOR_ADAPTIVE_IN_FLIGHT is off)."""
    from connector.uploader.role import UploaderPipeline  # noqa: PLC0415 - see build_roles

    uploading = settings.uploader
    pacing = (
        Pacing.adaptive(uploading.max_in_flight, SystemClock(), metrics, gate=gate)
        if uploading.adaptive_in_flight
        else None
    )
    if pacing is None:
        metrics.upload_in_flight_limit.set(uploading.max_in_flight)
    client = build_client(
        settings, metrics, availability, in_flight=uploading.max_in_flight, pacing=pacing
    )
    limit = None if pacing is None else pacing.limit
    return UploaderPipeline(settings, client, metrics, limit, outstanding)
