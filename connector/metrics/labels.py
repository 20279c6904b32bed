"""What the metric families share: the name prefix, the `app_project` label and the values of the
label sets that exist from the start, the histograms' buckets, and `Bound` (a family with its
project given)."""

from __future__ import annotations

from typing import Generic, TypeVar

from prometheus_client.metrics import MetricWrapperBase

PREFIX = "toloka_connector"

API_OPERATIONS = ("bulk_create", "list_items", "get_item", "get_project", "get_app")
STATUS_CLASSES = ("2xx", "3xx", "4xx", "5xx", "transport_error")
RETRY_CAUSES = ("rate_limited", "server_error", "transport_error", "timeout")
RESULT_STATUSES = ("COMPLETED", "ERROR", "CANCELLED", "OTHER")
TRANSACTION_OUTCOMES = ("committed", "aborted")
ROLES = ("uploader", "poller")
RECONCILE_CAUSES = ("lost_answer", "takeover")
RECONCILE_OUTCOMES = ("complete", "failed", "no_intent")
RECONCILED_RESULTS = ("found", "sent")

# The API answers a bulk request of 1,000 items in tens of milliseconds and a slow gateway in
# tens of seconds: the default buckets (5 ms … 10 s) would put every outage in +Inf.
API_SECONDS_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
BATCH_ITEMS_BUCKETS = (1, 5, 10, 50, 100, 250, 500, 1000, 2500, 5000, 10000)
# Labelling by people takes seconds to hours.
PROCESSING_SECONDS_BUCKETS = (1, 5, 15, 30, 60, 120, 300, 600, 1800, 3600, 7200, 21600, 86400)


APP_PROJECT = "app_project"
"""The label every metric of a pipeline's work carries."""

F = TypeVar("F", bound=MetricWrapperBase)


class Bound(Generic[F]):
    """A labelled family with its `app_project` label given: `.labels(reason)` is the family's
    `.labels(project, reason)`."""

    def __init__(self, family: F, app_project: str) -> None:
        self.family = family
        self._project = app_project

    def labels(self, *values: str) -> F:
        return self.family.labels(self._project, *values)

    def remove(self, *values: str) -> None:
        self.family.remove(self._project, *values)


def result_status_label(status: str | None) -> str:
    """Unknown statuses share one label value so a new API status cannot grow the label set."""
    return status if status in RESULT_STATUSES else "OTHER"
