"""The poller's metrics: results published, its transactions, listing pages, the cursor's age,
leadership and take-overs, late items, and how long items took in Toloka."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from connector.metrics.labels import (
    API_SECONDS_BUCKETS,
    APP_PROJECT,
    BATCH_ITEMS_BUCKETS,
    PREFIX,
    PROCESSING_SECONDS_BUCKETS,
    RESULT_STATUSES,
    TRANSACTION_OUTCOMES,
    Bound,
)


class PollerMetrics:
    """The poller's families of `Metrics`."""

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

    def _register_poller(self, r: CollectorRegistry) -> None:
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

    def _bind_poller(self, app_project: str) -> None:
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
        for status in RESULT_STATUSES:
            self.results_published.labels(status)
        for outcome in TRANSACTION_OUTCOMES:
            self.transactions.labels(outcome)
