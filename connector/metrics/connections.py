"""The metrics of the connections: Apps API requests and retries by operation (a pipeline's), and
whether the API and Kafka answer (the process's)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from connector.metrics.labels import (
    API_OPERATIONS,
    API_SECONDS_BUCKETS,
    APP_PROJECT,
    PREFIX,
    RETRY_CAUSES,
    STATUS_CLASSES,
    Bound,
)


class ConnectionMetrics:
    """The Toloka API's and Kafka's families of `Metrics`."""

    api_request_duration: Bound[Histogram]
    api_retries: Bound[Counter]

    def _register_connections(self, r: CollectorRegistry) -> None:
        self._api_request_duration = Histogram(
            f"{PREFIX}_api_request_duration_seconds",
            "Duration of Apps API requests by operation and status class (one per attempt).",
            [APP_PROJECT, "operation", "status_class"],
            buckets=API_SECONDS_BUCKETS,
            registry=r,
        )
        self._api_retries = Counter(
            f"{PREFIX}_api_retries_total",
            "Apps API requests retried, by operation and cause.",
            [APP_PROJECT, "operation", "cause"],
            registry=r,
        )
        self.api_up = Gauge(
            f"{PREFIX}_api_up",
            "1 while the last Apps API attempt got an answer below 500, 0 during an outage.",
            registry=r,
        )

        self.kafka_up = Gauge(
            f"{PREFIX}_kafka_up",
            "1 while a Kafka broker connection is up, 0 during an outage and before the first.",
            registry=r,
        )

    def _bind_connections(self, app_project: str) -> None:
        self.api_request_duration = Bound(self._api_request_duration, app_project)
        self.api_retries = Bound(self._api_retries, app_project)
        for operation in API_OPERATIONS:
            for status_class in STATUS_CLASSES:
                self.api_request_duration.labels(operation, status_class)
            for cause in RETRY_CAUSES:
                self.api_retries.labels(operation, cause)
