"""What the runner needs from a role (uploader, poller): run until told to stop, say if ready.

Each role runs its loop in a thread of its own. The loop calls `heartbeat.beat()` on every
iteration, so `/healthz` can tell a stuck loop from a quiet one, and wraps each call into a
dependency that can outlast the liveness limit (an API read retried through an outage, a Kafka
transaction waiting for a broker) in `heartbeat.waiting_on(...)`: such a call ends by its own
timeout, and a dependency's outage is for readiness (`readiness()`, shown by `/readyz`) to
report, not a reason to restart the process.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Protocol

from connector.clock import Clock, SystemClock

STOP_CHECK_SECONDS = 0.1
"""How often a `retries_end_on_stop` watcher looks at the stop event (a real wait: the clock
seam's fake clock would jump)."""


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
    waiting_for: str | None = None
    """The dependency a call in progress waits for, or None."""

    def __post_init__(self) -> None:
        self.last = self.clock.monotonic()

    def beat(self) -> None:
        self.last = self.clock.monotonic()

    def age(self) -> float:
        return self.clock.monotonic() - self.last

    @contextmanager
    def waiting_on(self, dependency: str) -> Iterator[None]:
        """Around a call into `dependency` that ends by its own timeout or retry budget. Calls
        nest (a heartbeat transaction written while the loop waits on a listing): the outer
        label is restored when the inner call ends."""
        outer, self.waiting_for = self.waiting_for, dependency
        try:
            yield
        finally:
            self.waiting_for = outer
            self.beat()


class StopRequest(threading.Event):
    """The stop event of a process's roles, which remembers when the stop was requested (on
    `clock`'s monotonic time): every deadline of the stop counts from the request (a SIGTERM),
    not from when a loop busy in a synchronous step (a commit, a read) notices it. Seen: a
    stop that came while the uploader waited seconds for a commit got its whole drain after
    that wait, and `run` exited 1, "did not finish draining in time"."""

    def __init__(self, clock: Clock | None = None) -> None:
        super().__init__()
        self._clock: Clock = clock or SystemClock()
        self._lock = threading.Lock()
        self.requested_at: float | None = None
        """When the first `set` asked for the stop (None until then)."""

    def set(self, at: float | None = None) -> None:
        """Ask for the stop, requested at `at` (monotonic; default: now). A later call keeps
        the first request's time."""
        with self._lock:
            if self.requested_at is None:
                self.requested_at = self._clock.monotonic() if at is None else at
        super().set()

    def clear(self) -> None:
        with self._lock:
            self.requested_at = None
            super().clear()


def stop_requested_at(stop: threading.Event, clock: Clock) -> float:
    """When `stop` (set) was requested: its own record for a `StopRequest`, else now (a plain
    event cannot say; the stop is taken as requested when it is noticed)."""
    requested = stop.requested_at if isinstance(stop, StopRequest) else None
    return clock.monotonic() if requested is None else requested


class Role(Protocol):
    """A long-running part of the connector."""

    name: str
    heartbeat: Heartbeat

    def run(self, stop: threading.Event) -> None:
        """Work until `stop` is set, then drain in-flight work, commit what is done, return,
        within the shutdown budget counted from when the stop was requested (`StopRequest`).

        Raise only for a fatal error (bad credentials, missing project): the process exits 1.
        """

    def readiness(self) -> Readiness:
        """Whether the role is doing its job now (API and Kafka reachable, leader or standby)."""


class InterruptibleClient(Protocol):
    """An API client whose retries can be ended from another thread (TolokaClient)."""

    def stop_retrying(self) -> None: ...


@contextmanager
def retries_end_on_stop(stop: threading.Event, client: InterruptibleClient) -> Iterator[None]:
    """While the block runs, a watcher thread tells `client` to stop retrying once `stop` is set:
    a call retried through an outage then ends with its last error instead of holding a shutdown
    for its whole retry budget. Wrap the whole life of a role's client in one."""
    done = threading.Event()

    def watch() -> None:
        while not done.is_set():
            if stop.wait(STOP_CHECK_SECONDS):
                client.stop_retrying()
                return

    watcher = threading.Thread(target=watch, name="stop-retrying", daemon=True)
    watcher.start()
    try:
        yield
    finally:
        done.set()
        if stop.is_set():  # the block may have seen the stop before the watcher did
            client.stop_retrying()
        watcher.join()
