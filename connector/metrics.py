"""Every metric the connector exports, in one place, on an injected registry.

Conventions: one prefix (`toloka_connector_`), base units (`_seconds`, `_bytes`), counters end in
`_total`, no ids in labels but the app project's, and every known label set exists from the start
at zero so that dashboards and alerts see a flat line instead of "no data".

Several app projects (pipelines) share one process and one registry: every metric of a pipeline's
work carries an `app_project` label (one pipeline: its project id). A `Metrics` is bound to one
project (`for_project` gives another project's view of the same families), so the roles write
`metrics.items_uploaded.inc()` without knowing the label; a family with labels of its own is a
`Bound` view (`metrics.dead_letters.labels(reason)`). The process's own metrics (build, Kafka and
API availability, the items outstanding between the two roles, and the end-to-end time they
measure together) have no project; a role's heartbeat and readiness have its project.
"""

from __future__ import annotations

import copy
import platform
from typing import Generic, TypeVar

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info
from prometheus_client.metrics import MetricWrapperBase

from connector import __version__
from connector.contract.dead_letters import POLLER_REASONS, UPLOADER_REASONS

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
LOCAL_SECONDS_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


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


class Metrics:
    """The connector's metric families. Create one per process (or per test) on a registry;
    `for_project` gives each pipeline its view."""

    api_request_duration: Bound[Histogram]
    api_retries: Bound[Counter]
    records_consumed: Counter
    items_uploaded: Counter
    possible_duplicate_uploads: Counter
    dead_letters: Bound[Counter]
    dead_letters_pending: Gauge
    dead_letter_delivery_failures: Counter
    upload_batch_size: Histogram
    upload_batch_bytes: Histogram
    uploads_in_flight: Gauge
    upload_in_flight_limit: Gauge
    paused_partitions: Gauge
    consumer_lag: Bound[Gauge]
    reconciliations: Bound[Counter]
    reconciled_items: Bound[Counter]
    reconcile_listing_requests: Histogram
    offsets_committed: Counter
    results_published: Bound[Counter]
    transactions: Bound[Counter]
    poll_page_size: Histogram
    poll_duration: Histogram
    cursor_age: Gauge
    poller_leader: Gauge
    late_items: Counter
    late_window_tracked_items: Gauge
    poller_page_limit: Gauge
    unreadable_pages: Counter
    poller_takeovers: Counter
    poller_takeover_failures: Counter
    item_processing_time: Histogram

    def __init__(self, registry: CollectorRegistry | None = None, app_project: str = "") -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        r = self.registry

        self.build_info = Info(f"{PREFIX}_build", "Connector version and runtime.", registry=r)
        self.build_info.info({"version": __version__, "python": platform.python_version()})

        # --- Toloka API ---------------------------------------------------------------------
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

        # --- uploader -----------------------------------------------------------------------
        self._records_consumed = Counter(
            f"{PREFIX}_records_consumed_total",
            "Records of the input topic routed to this app project's pipeline (on a topic "
            "shared by header, its own and, for the first pipeline, the unrouted ones).",
            [APP_PROJECT],
            registry=r,
        )
        self._items_uploaded = Counter(
            f"{PREFIX}_items_uploaded_total",
            "Items created in the app project.",
            [APP_PROJECT],
            registry=r,
        )
        self._possible_duplicate_uploads = Counter(
            f"{PREFIX}_possible_duplicate_uploads_total",
            "Items whose upload was retried after an answer was lost (may exist twice).",
            labelnames=[APP_PROJECT],
            registry=r,
        )
        self._dead_letters = Counter(
            f"{PREFIX}_dead_letters_total",
            "Records written to the dead-letter topic, by reason.",
            [APP_PROJECT, "reason"],
            registry=r,
        )
        self._dead_letters_pending = Gauge(
            f"{PREFIX}_dead_letters_pending",
            "Dead letters written and not yet acknowledged by the broker.",
            labelnames=[APP_PROJECT],
            registry=r,
        )
        self._dead_letter_delivery_failures = Counter(
            f"{PREFIX}_dead_letter_delivery_failures_total",
            "Dead-letter deliveries that failed (each is produced again after a backoff).",
            labelnames=[APP_PROJECT],
            registry=r,
        )
        self._upload_batch_size = Histogram(
            f"{PREFIX}_upload_batch_items",
            "Items per bulk upload request.",
            buckets=BATCH_ITEMS_BUCKETS,
            labelnames=[APP_PROJECT],
            registry=r,
        )
        self._upload_batch_bytes = Histogram(
            f"{PREFIX}_upload_batch_bytes",
            "Body size of bulk upload requests.",
            buckets=(1e3, 1e4, 1e5, 1e6, 4e6, 16e6, 64e6),
            labelnames=[APP_PROJECT],
            registry=r,
        )
        self._uploads_in_flight = Gauge(
            f"{PREFIX}_upload_requests_in_flight",
            "Bulk upload requests awaiting an answer.",
            labelnames=[APP_PROJECT],
            registry=r,
        )
        self._upload_in_flight_limit = Gauge(
            f"{PREFIX}_upload_in_flight_limit",
            "Bulk upload requests the uploader keeps in flight now: CONNECTOR_MAX_IN_FLIGHT, "
            "halved on each 429 and grown back by one per two rounds of successes (AIMD).",
            labelnames=[APP_PROJECT],
            registry=r,
        )
        self._paused_partitions = Gauge(
            f"{PREFIX}_paused_partitions",
            "Input partitions paused while the API is retried, the in-flight limit is reached, "
            "or their dead letters are not acknowledged.",
            labelnames=[APP_PROJECT],
            registry=r,
        )
        self._consumer_lag = Gauge(
            f"{PREFIX}_consumer_lag_messages",
            "Records behind the end of each assigned input partition (librdkafka statistics).",
            [APP_PROJECT, "topic", "partition"],
            registry=r,
        )
        self._reconciliations = Counter(
            f"{PREFIX}_reconciliations_total",
            "Checks of which items exist before sending again, by cause (lost_answer, takeover) "
            "and outcome (complete; failed: the listing did not answer, sent at least once; "
            "no_intent: a hand-over without a recorded intent, sent at least once).",
            [APP_PROJECT, "cause", "outcome"],
            registry=r,
        )
        self._reconciled_items = Counter(
            f"{PREFIX}_reconciled_items_total",
            "Records a reconciliation looked for: found (taken as created, not sent again) or "
            "sent (missing, sent again).",
            [APP_PROJECT, "result"],
            registry=r,
        )
        self._reconcile_listing_requests = Histogram(
            f"{PREFIX}_reconcile_listing_requests",
            "Listing requests (pages) one reconciliation made.",
            buckets=(0, 1, 2, 4, 8, 16, 32, 64, 128, 256, 1024),
            labelnames=[APP_PROJECT],
            registry=r,
        )
        self._offsets_committed = Counter(
            f"{PREFIX}_offset_commits_total",
            "Consumer offset commits of the uploader.",
            labelnames=[APP_PROJECT],
            registry=r,
        )

        # --- poller -------------------------------------------------------------------------
        self._results_published = Counter(
            f"{PREFIX}_results_published_total",
            "Finished items published to the output topic, by status.",
            [APP_PROJECT, "status"],
            registry=r,
        )
        self._transactions = Counter(
            f"{PREFIX}_transactions_total",
            "Kafka transactions of the poller, by outcome.",
            [APP_PROJECT, "outcome"],
            registry=r,
        )
        self._poll_page_size = Histogram(
            f"{PREFIX}_poll_page_items",
            "Finished items per listing page.",
            buckets=BATCH_ITEMS_BUCKETS,
            labelnames=[APP_PROJECT],
            registry=r,
        )
        self._poll_duration = Histogram(
            f"{PREFIX}_poll_duration_seconds",
            "Time to fetch and publish one page, transaction included.",
            buckets=API_SECONDS_BUCKETS,
            labelnames=[APP_PROJECT],
            registry=r,
        )
        self._cursor_age = Gauge(
            f"{PREFIX}_cursor_age_seconds",
            "Now minus the finished_at the poller cursor stands for.",
            labelnames=[APP_PROJECT],
            registry=r,
        )
        self._poller_leader = Gauge(
            f"{PREFIX}_poller_leader",
            "1 while this process is the active poller, 0 as standby.",
            labelnames=[APP_PROJECT],
            registry=r,
        )
        self._late_items = Counter(
            f"{PREFIX}_late_items_total",
            "Items that became visible after the cursor had passed their finished_at.",
            labelnames=[APP_PROJECT],
            registry=r,
        )
        self._late_window_tracked_items = Gauge(
            f"{PREFIX}_late_window_tracked_items",
            "Published item ids the poller keeps (in memory and in the state topic) to publish "
            "late-visible items exactly once.",
            labelnames=[APP_PROJECT],
            registry=r,
        )
        self._poller_page_limit = Gauge(
            f"{PREFIX}_poller_page_limit",
            "Items the poller asks for per listing now: CONNECTOR_PAGE_SIZE, fewer after pages "
            "that could not be read.",
            labelnames=[APP_PROJECT],
            registry=r,
        )
        self._unreadable_pages = Counter(
            f"{PREFIX}_unreadable_pages_total",
            "Listing pages that could not be read (over the response-size limit, or "
            "undecodable); each is asked for again with fewer items.",
            labelnames=[APP_PROJECT],
            registry=r,
        )
        self._poller_takeovers = Counter(
            f"{PREFIX}_poller_takeovers_total",
            "Times this process became the active poller (start-up included).",
            labelnames=[APP_PROJECT],
            registry=r,
        )
        self._poller_takeover_failures = Counter(
            f"{PREFIX}_poller_takeover_failures_total",
            "Take-overs that failed on Kafka (each is tried again, with back-off).",
            labelnames=[APP_PROJECT],
            registry=r,
        )
        self._item_processing_time = Histogram(
            f"{PREFIX}_item_processing_seconds",
            "Time an item spent in Toloka: finished_at minus created_at.",
            buckets=PROCESSING_SECONDS_BUCKETS,
            labelnames=[APP_PROJECT],
            registry=r,
        )

        # --- both roles in one process ------------------------------------------------------
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

        self._bind(app_project)

    def for_project(self, app_project: str) -> Metrics:
        """This registry's metrics, bound to `app_project` (its label sets exist from now on)."""
        view = copy.copy(self)
        view._bind(app_project)
        return view

    def sample(self, name: str, labels: dict[str, str] | None = None) -> float | None:
        """The value of sample `name` with `labels`, of this view's project when the metric has
        one (`CollectorRegistry.get_sample_value` otherwise)."""
        own = {APP_PROJECT: self.app_project, **(labels or {})}
        value = self.registry.get_sample_value(name, own)
        return value if value is not None else self.registry.get_sample_value(name, labels)

    def _bind(self, app_project: str) -> None:
        self.app_project = app_project
        self.api_request_duration = Bound(self._api_request_duration, app_project)
        self.api_retries = Bound(self._api_retries, app_project)
        self.records_consumed = self._records_consumed.labels(app_project)
        self.items_uploaded = self._items_uploaded.labels(app_project)
        self.possible_duplicate_uploads = self._possible_duplicate_uploads.labels(app_project)
        self.dead_letters = Bound(self._dead_letters, app_project)
        self.dead_letters_pending = self._dead_letters_pending.labels(app_project)
        self.dead_letter_delivery_failures = self._dead_letter_delivery_failures.labels(app_project)
        self.upload_batch_size = self._upload_batch_size.labels(app_project)
        self.upload_batch_bytes = self._upload_batch_bytes.labels(app_project)
        self.uploads_in_flight = self._uploads_in_flight.labels(app_project)
        self.upload_in_flight_limit = self._upload_in_flight_limit.labels(app_project)
        self.paused_partitions = self._paused_partitions.labels(app_project)
        self.consumer_lag = Bound(self._consumer_lag, app_project)
        self.reconciliations = Bound(self._reconciliations, app_project)
        self.reconciled_items = Bound(self._reconciled_items, app_project)
        self.reconcile_listing_requests = self._reconcile_listing_requests.labels(app_project)
        self.offsets_committed = self._offsets_committed.labels(app_project)
        self.results_published = Bound(self._results_published, app_project)
        self.transactions = Bound(self._transactions, app_project)
        self.poll_page_size = self._poll_page_size.labels(app_project)
        self.poll_duration = self._poll_duration.labels(app_project)
        self.cursor_age = self._cursor_age.labels(app_project)
        self.poller_leader = self._poller_leader.labels(app_project)
        self.late_items = self._late_items.labels(app_project)
        self.late_window_tracked_items = self._late_window_tracked_items.labels(app_project)
        self.poller_page_limit = self._poller_page_limit.labels(app_project)
        self.unreadable_pages = self._unreadable_pages.labels(app_project)
        self.poller_takeovers = self._poller_takeovers.labels(app_project)
        self.poller_takeover_failures = self._poller_takeover_failures.labels(app_project)
        self.item_processing_time = self._item_processing_time.labels(app_project)
        self.end_to_end_time = self._end_to_end_time.labels(app_project)
        self.items_outstanding = self._items_outstanding.labels(app_project)
        self._initialise_label_sets()

    def _initialise_label_sets(self) -> None:
        for operation in API_OPERATIONS:
            for status_class in STATUS_CLASSES:
                self.api_request_duration.labels(operation, status_class)
            for cause in RETRY_CAUSES:
                self.api_retries.labels(operation, cause)
        for reason in UPLOADER_REASONS + POLLER_REASONS:
            self.dead_letters.labels(reason)
        for status in RESULT_STATUSES:
            self.results_published.labels(status)
        for outcome in TRANSACTION_OUTCOMES:
            self.transactions.labels(outcome)
        for cause in RECONCILE_CAUSES:
            for outcome in RECONCILE_OUTCOMES:
                self.reconciliations.labels(cause, outcome)
        for result in RECONCILED_RESULTS:
            self.reconciled_items.labels(result)
        for role in ROLES:
            self.loop_heartbeat.labels(role, self.app_project)
            self.role_ready.labels(role, self.app_project)


GAUGE_ACROSS_PROCESSES: dict[str, str] = {
    # What the process's uploaders and the poller hold between them: the total.
    f"{PREFIX}_dead_letters_pending": "sum",
    f"{PREFIX}_upload_requests_in_flight": "sum",
    f"{PREFIX}_upload_in_flight_limit": "sum",
    f"{PREFIX}_paused_partitions": "sum",
    f"{PREFIX}_items_outstanding": "sum",
    # One process holds a partition (max: not twice while a rebalance moves it); the poller
    # runs in one process and the others show 0.
    f"{PREFIX}_consumer_lag_messages": "max",
    f"{PREFIX}_cursor_age_seconds": "max",
    f"{PREFIX}_poller_leader": "max",
    f"{PREFIX}_late_window_tracked_items": "max",
    f"{PREFIX}_poller_page_limit": "max",
    # Up, ready and alive only when every process says so: an alert on any one fires.
    f"{PREFIX}_api_up": "min",
    f"{PREFIX}_kafka_up": "min",
    f"{PREFIX}_role_ready": "min",
    f"{PREFIX}_loop_heartbeat_timestamp_seconds": "min",
}
"""How one `/metrics` shows a gauge that several processes of one run write (`CONNECTOR_WORKERS`,
`connector.app.worker_metrics`): sum, max or min of the processes' values, by the gauge's
meaning. Counters and histograms are summed."""
