"""Every metric the connector exports, in one place, on an injected registry.

Conventions: one prefix (`toloka_connector_`), base units (`_seconds`, `_bytes`), counters end in
`_total`, no ids in labels, and every known label set exists from the start at zero so that
dashboards and alerts see a flat line instead of "no data".
"""

from __future__ import annotations

import platform

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info

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


def result_status_label(status: str | None) -> str:
    """Unknown statuses share one label value so a new API status cannot grow the label set."""
    return status if status in RESULT_STATUSES else "OTHER"


class Metrics:
    """The connector's metric families. Create one per process (or per test) on a registry."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        r = self.registry

        self.build_info = Info(f"{PREFIX}_build", "Connector version and runtime.", registry=r)
        self.build_info.info({"version": __version__, "python": platform.python_version()})

        # --- Toloka API ---------------------------------------------------------------------
        self.api_request_duration = Histogram(
            f"{PREFIX}_api_request_duration_seconds",
            "Duration of Apps API requests by operation and status class (one per attempt).",
            ["operation", "status_class"],
            buckets=API_SECONDS_BUCKETS,
            registry=r,
        )
        self.api_retries = Counter(
            f"{PREFIX}_api_retries_total",
            "Apps API requests retried, by operation and cause.",
            ["operation", "cause"],
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
        self.records_consumed = Counter(
            f"{PREFIX}_records_consumed_total", "Records read from the input topic.", registry=r
        )
        self.items_uploaded = Counter(
            f"{PREFIX}_items_uploaded_total", "Items created in the app project.", registry=r
        )
        self.possible_duplicate_uploads = Counter(
            f"{PREFIX}_possible_duplicate_uploads_total",
            "Items whose upload was retried after an answer was lost (may exist twice).",
            registry=r,
        )
        self.dead_letters = Counter(
            f"{PREFIX}_dead_letters_total",
            "Records written to the dead-letter topic, by reason.",
            ["reason"],
            registry=r,
        )
        self.dead_letters_pending = Gauge(
            f"{PREFIX}_dead_letters_pending",
            "Dead letters written and not yet acknowledged by the broker.",
            registry=r,
        )
        self.dead_letter_delivery_failures = Counter(
            f"{PREFIX}_dead_letter_delivery_failures_total",
            "Dead-letter deliveries that failed (each is produced again after a backoff).",
            registry=r,
        )
        self.upload_batch_size = Histogram(
            f"{PREFIX}_upload_batch_items",
            "Items per bulk upload request.",
            buckets=BATCH_ITEMS_BUCKETS,
            registry=r,
        )
        self.upload_batch_bytes = Histogram(
            f"{PREFIX}_upload_batch_bytes",
            "Body size of bulk upload requests.",
            buckets=(1e3, 1e4, 1e5, 1e6, 4e6, 16e6, 64e6),
            registry=r,
        )
        self.uploads_in_flight = Gauge(
            f"{PREFIX}_upload_requests_in_flight",
            "Bulk upload requests awaiting an answer.",
            registry=r,
        )
        self.upload_in_flight_limit = Gauge(
            f"{PREFIX}_upload_in_flight_limit",
            "Bulk upload requests the uploader keeps in flight now: CONNECTOR_MAX_IN_FLIGHT, "
            "halved on each 429 and grown back by one per two rounds of successes (AIMD).",
            registry=r,
        )
        self.paused_partitions = Gauge(
            f"{PREFIX}_paused_partitions",
            "Input partitions paused while the API is retried, the in-flight limit is reached, "
            "or their dead letters are not acknowledged.",
            registry=r,
        )
        self.consumer_lag = Gauge(
            f"{PREFIX}_consumer_lag_messages",
            "Records behind the end of each assigned input partition (librdkafka statistics).",
            ["topic", "partition"],
            registry=r,
        )
        self.reconciliations = Counter(
            f"{PREFIX}_reconciliations_total",
            "Checks of which items exist before sending again, by cause (lost_answer, takeover) "
            "and outcome (complete; failed: the listing did not answer, sent at least once; "
            "no_intent: a hand-over without a recorded intent, sent at least once).",
            ["cause", "outcome"],
            registry=r,
        )
        self.reconciled_items = Counter(
            f"{PREFIX}_reconciled_items_total",
            "Records a reconciliation looked for: found (taken as created, not sent again) or "
            "sent (missing, sent again).",
            ["result"],
            registry=r,
        )
        self.reconcile_listing_requests = Histogram(
            f"{PREFIX}_reconcile_listing_requests",
            "Listing requests (pages) one reconciliation made.",
            buckets=(0, 1, 2, 4, 8, 16, 32, 64, 128, 256, 1024),
            registry=r,
        )
        self.offsets_committed = Counter(
            f"{PREFIX}_offset_commits_total",
            "Consumer offset commits of the uploader.",
            registry=r,
        )

        # --- poller -------------------------------------------------------------------------
        self.results_published = Counter(
            f"{PREFIX}_results_published_total",
            "Finished items published to the output topic, by status.",
            ["status"],
            registry=r,
        )
        self.transactions = Counter(
            f"{PREFIX}_transactions_total",
            "Kafka transactions of the poller, by outcome.",
            ["outcome"],
            registry=r,
        )
        self.poll_page_size = Histogram(
            f"{PREFIX}_poll_page_items",
            "Finished items per listing page.",
            buckets=BATCH_ITEMS_BUCKETS,
            registry=r,
        )
        self.poll_duration = Histogram(
            f"{PREFIX}_poll_duration_seconds",
            "Time to fetch and publish one page, transaction included.",
            buckets=API_SECONDS_BUCKETS,
            registry=r,
        )
        self.cursor_age = Gauge(
            f"{PREFIX}_cursor_age_seconds",
            "Now minus the finished_at the poller cursor stands for.",
            registry=r,
        )
        self.poller_leader = Gauge(
            f"{PREFIX}_poller_leader",
            "1 while this process is the active poller, 0 as standby.",
            registry=r,
        )
        self.late_items = Counter(
            f"{PREFIX}_late_items_total",
            "Items that became visible after the cursor had passed their finished_at.",
            registry=r,
        )
        self.late_window_tracked_items = Gauge(
            f"{PREFIX}_late_window_tracked_items",
            "Published item ids the poller keeps (in memory and in the state topic) to publish "
            "late-visible items exactly once.",
            registry=r,
        )
        self.poller_page_limit = Gauge(
            f"{PREFIX}_poller_page_limit",
            "Items the poller asks for per listing now: CONNECTOR_PAGE_SIZE, fewer after pages "
            "that could not be read.",
            registry=r,
        )
        self.unreadable_pages = Counter(
            f"{PREFIX}_unreadable_pages_total",
            "Listing pages that could not be read (over the response-size limit, or "
            "undecodable); each is asked for again with fewer items.",
            registry=r,
        )
        self.poller_takeovers = Counter(
            f"{PREFIX}_poller_takeovers_total",
            "Times this process became the active poller (start-up included).",
            registry=r,
        )
        self.poller_takeover_failures = Counter(
            f"{PREFIX}_poller_takeover_failures_total",
            "Take-overs that failed on Kafka (each is tried again, with back-off).",
            registry=r,
        )
        self.item_processing_time = Histogram(
            f"{PREFIX}_item_processing_seconds",
            "Time an item spent in Toloka: finished_at minus created_at.",
            buckets=PROCESSING_SECONDS_BUCKETS,
            registry=r,
        )

        # --- both roles in one process ------------------------------------------------------
        self.end_to_end_time = Histogram(
            f"{PREFIX}_end_to_end_seconds",
            "Input record timestamp to result publication (when both roles share the process).",
            buckets=PROCESSING_SECONDS_BUCKETS,
            registry=r,
        )
        self.items_outstanding = Gauge(
            f"{PREFIX}_items_outstanding",
            "Items uploaded by this process and not yet published (both roles in one process).",
            registry=r,
        )
        self.loop_heartbeat = Gauge(
            f"{PREFIX}_loop_heartbeat_timestamp_seconds",
            "Unix time of the last iteration of each role's loop (now while it waits in a call "
            "to Kafka or the API, which ends by its own timeout).",
            ["role"],
            registry=r,
        )

        self.role_ready = Gauge(
            f"{PREFIX}_role_ready",
            "1 while the role says it is ready (what /readyz answers), 0 otherwise.",
            ["role"],
            registry=r,
        )

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
            self.loop_heartbeat.labels(role)
            self.role_ready.labels(role)
