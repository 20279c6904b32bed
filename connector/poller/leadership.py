"""Who polls: one leader per app project, any number of standbys.

Safety comes from Kafka's fencing: every poller of a project uses the same transactional id, and
whoever initialises it fences all older holders, so a paused or cut-off former leader can never
commit again. Liveness comes from the state topic: the leader writes a cursor record in every
transaction and at least every quarter of `leader_timeout_seconds` when nothing moves. A standby
follows the topic and takes over when no cursor record arrived for `leader_timeout_seconds`, or
at once when there is no cursor or the last one was written by a command (no holder).

Takeover time after a leader dies: at most `leader_timeout_seconds`, plus the time Kafka needs to
abort the dead leader's open transaction during `init_transactions`.
"""

from __future__ import annotations

from enum import StrEnum

from connector.clock import Clock
from connector.poller.cursor import Cursor
from connector.poller.state import FeedUpdate

HEARTBEATS_PER_TIMEOUT = 4


class Role(StrEnum):
    STARTING = "starting"
    STANDBY = "standby"
    LEADER = "leader"


def heartbeat_interval(leader_timeout_seconds: float) -> float:
    return leader_timeout_seconds / HEARTBEATS_PER_TIMEOUT


class LeaderWatch:
    """A standby's judgement of the leader's liveness from the cursor records it sees.

    Records read while catching up are judged by their own `written_at` (another host's clock;
    a skew only shifts one decision, and fencing keeps a wrong takeover safe); after that, by the
    arrival of new records on this host's monotonic clock.
    """

    def __init__(self, leader_timeout_seconds: float, clock: Clock) -> None:
        self._timeout = leader_timeout_seconds
        self._clock = clock
        self._caught_up = False
        self._latest: Cursor | None = None
        self._last_sign_of_life = 0.0

    def observe(self, update: FeedUpdate) -> None:
        now = self._clock.monotonic()
        if update.cursors:
            self._latest = update.cursors[-1]
            self._last_sign_of_life = now
        if update.caught_up and not self._caught_up:
            self._caught_up = True
            if self._latest is not None:
                age = self._clock.time() - self._latest.written_at.timestamp()
                self._last_sign_of_life = now - min(max(age, 0.0), self._timeout)

    def leader_gone(self) -> bool:
        if not self._caught_up:
            return False
        if self._latest is None or self._latest.holder is None:
            return True
        return self._clock.monotonic() - self._last_sign_of_life >= self._timeout

    def holder(self) -> str | None:
        return None if self._latest is None else self._latest.holder
