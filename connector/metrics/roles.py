"""The metrics both roles write: the end-to-end time and the items outstanding between them when
they share the process, and each role's heartbeat and readiness."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Gauge, Histogram

from connector.metrics.labels import APP_PROJECT, PREFIX, PROCESSING_SECONDS_BUCKETS, ROLES


class RoleMetrics:
    """The families of `Metrics` that both roles share."""

    def _register_roles(self, r: CollectorRegistry) -> None:
        self._end_to_end_time = Histogram(
            f"{PREFIX}_end_to_end_seconds",
            "Input record timestamp to result publication (when both roles share the process).",
            buckets=PROCESSING_SECONDS_BUCKETS,
            labelnames=[APP_PROJECT],
            registry=r,
        )
        self._items_outstanding = Gauge(
            f"{PREFIX}_items_outstanding",
            "Items uploaded by this process and not yet published (both roles in one process).",
            labelnames=[APP_PROJECT],
            registry=r,
        )
        self.loop_heartbeat = Gauge(
            f"{PREFIX}_loop_heartbeat_timestamp_seconds",
            "Unix time of the last iteration of each role's loop (now while it waits in a call "
            "to Kafka or the API, which ends by its own timeout).",
            ["role", APP_PROJECT],
            registry=r,
        )

        self.role_ready = Gauge(
            f"{PREFIX}_role_ready",
            "1 while the role says it is ready (what /readyz answers), 0 otherwise.",
            ["role", APP_PROJECT],
            registry=r,
        )

    def _bind_roles(self, app_project: str) -> None:
        self.end_to_end_time = self._end_to_end_time.labels(app_project)
        self.items_outstanding = self._items_outstanding.labels(app_project)
        for role in ROLES:
            self.loop_heartbeat.labels(role, app_project)
            self.role_ready.labels(role, app_project)
