"""What the poller loop tells readiness (`connector.poller.role.Poller.readiness`): where it
stands and how the leader is progressing. Written by the loop's thread (and by the keepalive
thread while the loop waits for a listing), read by the health server's: each field is one
assignment of an immutable value."""

from __future__ import annotations

from dataclasses import dataclass

from connector.poller.leadership import Standing


@dataclass
class PollerStatus:
    last_listing_at: float
    """Monotonic time of the last listing answered (set at take-over)."""
    last_commit_at: float
    """Monotonic time of the last transaction committed (set at take-over)."""
    standing: Standing = Standing.STARTING
    kafka_problem: str | None = None
    """Why the last transaction or take-over failed; None once one succeeds."""
    listing_failure: str | None = None
    """Why the last listing failed; None once one is answered."""
