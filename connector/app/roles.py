"""The roles of a connector process (`run`: both, `upload`, `poll`), built from the settings."""

from __future__ import annotations

from collections.abc import Sequence

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
from connector.errors import ConfigError
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
    """The roles `names` of every pipeline (app project), each ready only when Kafka is
    reachable and its topics are right; their Kafka clients report to `kafka` (a tracker of
    their own without it). Each pipeline's roles write its metrics (`app_project` label)."""
    # Imported here so that `simulator` or `check` never pay for the roles' imports.
    from connector.poller import PollerPipeline, build_pollers  # noqa: PLC0415
    from connector.uploader import build_uploader  # noqa: PLC0415

    if "uploader" in names:
        refuse_shared_input_topics(settings)
    outstanding = OutstandingItems() if len(names) > 1 else None
    availability = ApiAvailability(metrics)
    kafka = kafka or KafkaAvailability(settings.kafka.bootstrap_servers, metrics)
    pipelines = settings.pipelines
    needs = {(p, name): topic_needs(pipeline, name) for p, pipeline in enumerate(pipelines)
             for name in names}  # fmt: skip
    watch = TopicWatch(
        settings.kafka.client_config(),
        [need for role_needs in needs.values() for need in role_needs],
        kafka=kafka,
    )

    views = [metrics.for_project(pipeline.toloka.app_project_id) for pipeline in pipelines]
    # One leadership group member for every pipeline's poller: the group spreads the
    # pipelines over the instances (connector.poller.group).
    pollers = (
        build_pollers(
            [
                PollerPipeline(pipeline, build_client(pipeline, view, availability), view)
                for pipeline, view in zip(pipelines, views, strict=True)
            ],
            outstanding,
            kafka=kafka,
        )
        if "poller" in names
        else []
    )

    def build(name: str, p: int, pipeline: Settings, pipeline_metrics: Metrics) -> Role:
        if name == "uploader":
            in_flight = pipeline.uploader.max_in_flight
            client = build_client(pipeline, pipeline_metrics, availability, in_flight=in_flight)
            return build_uploader(pipeline, client, pipeline_metrics, outstanding, kafka)
        return pollers[p]

    roles: list[Role] = []
    for p, pipeline in enumerate(pipelines):
        project = pipeline.toloka.app_project_id
        pipeline_metrics = views[p]
        for name in names:
            role = build(name, p, pipeline, pipeline_metrics)
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


def refuse_shared_input_topics(settings: Settings) -> None:
    """Pipelines sharing an input topic (route_by_header) need records routed by header, which
    the uploader does not do yet: refused rather than uploaded to the wrong project."""
    first_on: dict[str, str] = {}
    for pipeline in settings.pipelines:
        topic, project = pipeline.uploader.input_topic, pipeline.toloka.app_project_id
        other = first_on.setdefault(topic, project)
        if other != project:
            raise ConfigError(
                [
                    f"{UploaderSettings.variable('route_by_header')}: app projects {other} and "
                    f"{project} share the input topic {topic}: routing by the "
                    "toloka-app-project-id header is not supported yet; give each its own topic"
                ]
            )
