"""Whether a dependency (the Toloka API, Kafka) serves this process: up, down, or not reached yet.

Observers report evidence: `reached()` when the dependency answered, `lost(reason)` when it did
not. Each change of state is one log line (the `state_change` event: one when an outage begins,
one when it ends, however many failures lie between) and a gauge that is 1 while the dependency
is up. The clients of several roles share one tracker, so an outage both roles see is logged
once. `connector.toloka.availability` and `connector.kafka.availability` feed it from their own
signals.
"""

from __future__ import annotations

import threading
from enum import StrEnum

from prometheus_client import Gauge

from connector.clock import Clock, SystemClock
from connector.logs import state_change


class State(StrEnum):
    STARTING = "starting"
    """Not reached yet: nothing is known."""
    UP = "up"
    DOWN = "down"


class Availability:
    def __init__(
        self,
        dependency: str,
        *,
        gauge: Gauge | None = None,
        clock: Clock | None = None,
        initial: State = State.UP,
    ) -> None:
        self.dependency = dependency
        self._gauge = gauge
        self._clock: Clock = clock or SystemClock()
        self._lock = threading.Lock()
        self._state = initial
        self._since = self._clock.monotonic()
        self._reason = ""
        if gauge is not None:
            gauge.set(1 if initial is State.UP else 0)

    @property
    def state(self) -> State:
        return self._state

    @property
    def up(self) -> bool:
        return self._state is State.UP

    @property
    def reason(self) -> str:
        """Why it is down (the reason given when the outage began); empty otherwise."""
        return self._reason

    def seconds_in_state(self) -> float:
        return self._clock.monotonic() - self._since

    def reached(self) -> None:
        with self._lock:
            previous = self._state
            if previous is not State.UP:
                lasted = self.seconds_in_state()
                self._enter(State.UP, "")
                if previous is State.DOWN:
                    state_change(self.dependency, "down", "up", f"outage ended after {lasted:.1f}s")
        if self._gauge is not None:
            self._gauge.set(1)

    def lost(self, reason: str) -> None:
        with self._lock:
            previous = self._state
            if previous is not State.DOWN:
                self._enter(State.DOWN, reason)
                began = "outage began" if previous is State.UP else "not reached"
                state_change(self.dependency, previous.value, "down", f"{began}: {reason}")
        if self._gauge is not None:
            self._gauge.set(0)

    def _enter(self, state: State, reason: str) -> None:
        self._state = state
        self._since = self._clock.monotonic()
        self._reason = reason
