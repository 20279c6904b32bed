"""The metrics across processes: how the gauges of several processes of one run merge."""

from __future__ import annotations

from connector.metrics.labels import PREFIX

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
