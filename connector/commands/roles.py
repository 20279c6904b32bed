"""`run`, `upload` and `poll`: the connector's roles, together or one at a time."""

from __future__ import annotations

import argparse
import logging
from collections.abc import Callable

from connector.commands.common import SettingsGroups, add_settings_arguments, settings_from_args
from connector.config import (
    API_GROUPS,
    KafkaSettings,
    PollerSettings,
    RuntimeSettings,
    Settings,
    UploaderSettings,
)
from connector.kafka.availability import KafkaAvailability
from connector.kafka.topic_watch import TopicWatch
from connector.lifecycle import Role
from connector.logs import configure_logging
from connector.metrics import Metrics
from connector.outstanding import OutstandingItems
from connector.readiness import CheckedRole, topic_needs
from connector.runner import run_roles
from connector.toloka.availability import ApiAvailability
from connector.toloka.client import Timeouts, TolokaClient
from connector.toloka.retry import RetryPolicy

log = logging.getLogger(__name__)

ROLE_COMMANDS: dict[str, tuple[tuple[str, ...], str]] = {
    "run": (("uploader", "poller"), "uploader and poller in one process (the normal deployment)"),
    "upload": (("uploader",), "the uploader only: input topic → Toloka (scale it out)"),
    "poll": (("poller",), "the poller only: finished items → output topic, exactly once"),
}

ROLE_SETTINGS: dict[str, SettingsGroups] = {
    "uploader": (*API_GROUPS, KafkaSettings, UploaderSettings, RuntimeSettings),
    "poller": (*API_GROUPS, KafkaSettings, PollerSettings, RuntimeSettings),
}
"""The settings groups each role uses; a command uses those of its roles."""


def build_client(
    settings: Settings,
    metrics: Metrics,
    availability: ApiAvailability | None = None,
    *,
    in_flight: int = 1,
) -> TolokaClient:
    """One API client per role, so that one role's shutdown cannot cut the other's retries.

    `in_flight` is how many requests its user may have in flight at once (the uploader's bulk
    uploads); the pool has two connections more.

    Retries are bounded here; each role retries a failed operation again on its own terms (the
    uploader never gives up a batch, the poller retries the page), and reports itself not ready
    meanwhile, which an unbounded client retry would hide.
    """
    api = settings.api
    return TolokaClient(
        settings.toloka.base_url,
        settings.toloka.api_key,
        settings.toloka.app_project_id,
        timeouts=Timeouts(
            connect=api.connect_timeout_seconds,
            read=api.timeout_seconds,
            write=api.timeout_seconds,
            pool=api.timeout_seconds,
        ),
        retry=RetryPolicy(
            max_attempts=api.max_attempts,
            base_delay_seconds=api.backoff_base_seconds,
            max_delay_seconds=api.backoff_cap_seconds,
        ),
        max_connections=in_flight + 2,
        max_response_bytes=api.max_response_bytes,
        verify_tls=api.tls_verify,
        metrics=metrics,
        availability=availability,
    )


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


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    for command, (roles, summary) in ROLE_COMMANDS.items():
        parser = subparsers.add_parser(command, help=summary, description=summary)
        add_settings_arguments(parser, [group for role in roles for group in ROLE_SETTINGS[role]])
        parser.set_defaults(func=_runner_for(roles))


def _runner_for(roles: tuple[str, ...]) -> Callable[[argparse.Namespace], int]:
    def run(args: argparse.Namespace) -> int:
        settings = settings_from_args(args)
        configure_logging(settings.runtime.log_format, settings.runtime.log_level)
        metrics = Metrics()
        log.info("starting %s", " and ".join(roles))
        kafka = KafkaAvailability(
            settings.kafka.bootstrap_servers,
            metrics,
            refusal_timeout_seconds=settings.runtime.kafka_refusal_timeout_seconds,
        )
        run_roles(
            build_roles(roles, settings, metrics, kafka),
            metrics,
            metrics_host=settings.runtime.metrics_host,
            metrics_port=settings.runtime.metrics_port,
            shutdown_timeout_seconds=settings.runtime.shutdown_timeout_seconds,
            liveness_timeout_seconds=settings.runtime.liveness_timeout_seconds,
            fatal=kafka.fatal_problem,
        )
        log.info("stopped cleanly")
        return 0

    return run
