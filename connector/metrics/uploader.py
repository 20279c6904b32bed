"""The uploader's metrics: records consumed, items uploaded and dead-lettered, the bulk requests
and their limit, paused partitions, consumer lag, reconciliations and offset commits."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from connector.contract.dead_letters import POLLER_REASONS, UPLOADER_REASONS
from connector.metrics.labels import (
    APP_PROJECT,
    BATCH_ITEMS_BUCKETS,
    PREFIX,
    RECONCILE_CAUSES,
    RECONCILE_OUTCOMES,
    RECONCILED_RESULTS,
    Bound,
)


class UploaderMetrics:
    """The uploader's families of `Metrics` (the dead letters' are the poller's too)."""

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

    def _register_uploader(self, r: CollectorRegistry) -> None:
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

    def _bind_uploader(self, app_project: str) -> None:
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
        for reason in UPLOADER_REASONS + POLLER_REASONS:
            self.dead_letters.labels(reason)
        for cause in RECONCILE_CAUSES:
            for outcome in RECONCILE_OUTCOMES:
                self.reconciliations.labels(cause, outcome)
        for result in RECONCILED_RESULTS:
            self.reconciled_items.labels(result)
