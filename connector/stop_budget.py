"""How the uploader's stop fits CONNECTOR_SHUTDOWN_TIMEOUT_SECONDS.

A stop drains (uploads what was read, for CONNECTOR_DRAIN_TIMEOUT_SECONDS at most), then takes
steps that each wait a bounded time when Kafka does not answer: the dead letters' flush and the
final commit (each at least a second, even when the drain used up its time), leaving the group,
and closing. The drain gets what the budget leaves after those steps (`drain_seconds`), so a
stop always ends within the budget. Seen: with the budget between the drain timeout and the
drain timeout + 7 s (settings that were accepted), a drain cut short by a slow API was followed
by a final commit and a group leave the broker did not answer, and `run` exited 1 "did not
finish draining in time".

Every deadline counts from when the stop was requested (`lifecycle.StopRequest`: a signal's
arrival, a worker's parent's request), and a step the uploader is in when it comes ends by the
drain's end: a commit or flush waiting for Kafka is cut short, and a read that cannot be
interrupted (inside a rebalance callback) is made in calls no longer than the drain. Seen: a
stop that came during a 5 s commit got its whole drain after it, and overran the budget.
"""

from __future__ import annotations

MIN_FLUSH_SECONDS = 1.0
"""After the drain, the dead letters get at least this long to be acknowledged."""
MIN_COMMIT_SECONDS = 1.0
"""After the drain, the final commit waits for the broker at least this long."""
LEAVE_GROUP_SECONDS = 5.0
"""How long leaving a consumer group may take at the end, after the drain."""
CLOSE_SECONDS = 1.0
"""What the rest of the stop may take (the upload threads told to end, the role's return)."""
AFTER_DRAIN_SECONDS = MIN_FLUSH_SECONDS + MIN_COMMIT_SECONDS + LEAVE_GROUP_SECONDS + CLOSE_SECONDS
"""The part of the shutdown budget the stop keeps after its drain."""

WORKER_MARGIN_SECONDS = 5.0
WORKER_MARGIN_SHARE = 1 / 3
"""A worker's shutdown budget is the parent's less this margin (at most this share of it): the
time the parent keeps to collect a worker's end (the line saying why, its exit: 0.3-0.7 s for
the interpreter's teardown on a busy 2-core machine) after the worker's own runner gave up on an
overrunning role. With the same budget, a worker that drained for nearly all of it was still
running when the parent's ran out: reported late and killed, its own account lost."""


def drain_seconds(drain_timeout: float, shutdown_timeout: float) -> float:
    """How long a stop's drain may take: CONNECTOR_DRAIN_TIMEOUT_SECONDS, shortened so that the
    steps after it (`AFTER_DRAIN_SECONDS`) still fit the shutdown budget."""
    return max(0.0, min(drain_timeout, shutdown_timeout - AFTER_DRAIN_SECONDS))


def worker_shutdown_seconds(shutdown_timeout: float) -> float:
    """The shutdown budget of a worker process (`CONNECTOR_WORKERS`) of a parent with
    `shutdown_timeout`."""
    return shutdown_timeout - min(WORKER_MARGIN_SECONDS, shutdown_timeout * WORKER_MARGIN_SHARE)
