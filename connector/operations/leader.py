"""Is a poller active? Judged from the cursor record alone, as a standby judges it.

The leader writes a cursor record at least every quarter of `CONNECTOR_LEADER_TIMEOUT_SECONDS`,
so a record with a holder younger than the timeout means a poller is leading now. The record's
`written_at` comes from the leader's clock: a skew between hosts shifts the judgement by as much.
"""

from __future__ import annotations

from dataclasses import dataclass

from connector.poller.cursor import Cursor


@dataclass(frozen=True)
class LeaderStatus:
    holder: str | None
    """The poller instance that wrote the cursor; None when a command wrote it."""
    seconds_since_write: float
    alive: bool
    """The holder wrote within the leader timeout: a poller is leading."""


def leader_status(cursor: Cursor, *, now: float, leader_timeout_seconds: float) -> LeaderStatus:
    since = max(0.0, now - cursor.written_at.timestamp())
    # The same boundary as LeaderWatch: a standby takes over once `since` reaches the timeout.
    alive = cursor.holder is not None and since < leader_timeout_seconds
    return LeaderStatus(cursor.holder, since, alive)
