"""One connector process (`run`, `upload`, `poll`, and the demo's pipeline): its roles built from
the settings and run until a signal or `stop` drains them (`connector.app.runner`), with the
process's Kafka availability tracker, and the uploader worker processes CONNECTOR_WORKERS asks
for (`connector.app.workers`) run as roles of it, behind its one metrics endpoint."""

from __future__ import annotations

import logging
import threading

from connector.app.roles import build_roles
from connector.app.runner import run_roles
from connector.app.worker_metrics import run_registry
from connector.app.workers import collect_metrics, worker_processes
from connector.config import Settings
from connector.kafka.availability import KafkaAvailability
from connector.metrics import Metrics

log = logging.getLogger(__name__)


def run_connector(
    roles: tuple[str, ...],
    settings: Settings,
    *,
    metrics: Metrics | None = None,
    stop: threading.Event | None = None,
) -> None:
    """Run `roles` ("uploader", "poller") until SIGTERM or SIGINT (or `stop`), then drain;
    RoleFailedError when one failed, or when the brokers refused every connection since
    start-up."""
    if metrics is None:  # bound to a project of the process: no series without one
        metrics = Metrics(app_project=settings.pipelines[0].toloka.app_project_id)
    log.info("starting %s", " and ".join(roles))
    kafka = KafkaAvailability(
        settings.kafka.bootstrap_servers,
        metrics,
        refusal_timeout_seconds=settings.runtime.kafka_refusal_timeout_seconds,
    )
    workers = worker_processes(settings, roles)
    exposed = run_registry(metrics.registry, lambda: collect_metrics(workers)) if workers else None
    try:
        built = build_roles(roles, settings, metrics, kafka)
        run_roles(
            [*built, *workers],
            metrics,
            metrics_host=settings.runtime.metrics_host,
            metrics_port=settings.runtime.metrics_port,
            shutdown_timeout_seconds=settings.runtime.shutdown_timeout_seconds,
            liveness_timeout_seconds=settings.runtime.liveness_timeout_seconds,
            stop=stop,
            fatal=kafka.fatal_problem,
            exposed=exposed,
        )
    finally:
        for worker in workers:
            worker.close()
    log.info("stopped cleanly")
