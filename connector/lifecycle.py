"""What the runner needs from a role (uploader, poller): run until told to stop, say if ready.

Each role runs its loop in a thread of its own. The loop calls `heartbeat.beat()` on every
iteration, so `/healthz` can tell a stuck loop from a quiet one, and reports readiness through
`ready()`, which `/readyz` shows.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Protocol

from connector.clock import Clock, SystemClock


@dataclass(frozen=True)
class Readiness:
    ready: bool
    detail: str


@dataclass
class Heartbeat:
    """The last time a loop went round; read from another thread, written by the loop."""

    role: str
    clock: Clock = field(default_factory=SystemClock)
    last: float = field(default=0.0)

    def __post_init__(self) -> None:
        self.last = self.clock.monotonic()

    def beat(self) -> None:
        self.last = self.clock.monotonic()

    def age(self) -> float:
        return self.clock.monotonic() - self.last


class Role(Protocol):
    """A long-running part of the connector."""

    name: str
    heartbeat: Heartbeat

    def run(self, stop: threading.Event) -> None:
        """Work until `stop` is set, then drain in-flight work, commit what is done, return.

        Raise only for a fatal error (bad credentials, missing project): the process exits 1.
        """

    def readiness(self) -> Readiness:
        """Whether the role is doing its job now (API and Kafka reachable, leader or standby)."""
