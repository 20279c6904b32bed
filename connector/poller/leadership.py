"""Who polls: one leader per app project, any number of standbys (the rule itself, shared with
`status` and `reset-cursor`: `connector.contract.leadership`).

Which process may lead a project is the leadership group's word (`connector.poller.group`). Once
granted, a standby follows the state topic and takes over when no cursor record arrived for
`leader_timeout_seconds`, or at once when there is no cursor or the last one names no holder
(released, or written by a command). Takeover time after a leader dies: the group's session
timeout (the same `leader_timeout_seconds`), the rebalance, plus the time Kafka needs to abort
the dead leader's open transaction during `init_transactions`.
"""

from __future__ import annotations

from enum import StrEnum

from connector.clock import Clock
from connector.contract.cursor import Cursor
from connector.contract.leadership import alive
from connector.poller.state import FeedUpdate


class Standing(StrEnum):
    """Where this poller stands: starting, waiting as a standby, or leading."""

    STARTING = "starting"
    STANDBY = "standby"
    LEADER = "leader"


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
        if self._latest is None:
            return True
        since = self._clock.monotonic() - self._last_sign_of_life
        return not alive(self._latest.holder, since, self._timeout)

    def holder(self) -> str | None:
        return None if self._latest is None else self._latest.holder
