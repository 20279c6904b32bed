"""Whether the Apps API is answering, as the clients of one process see it.

An outage begins with an attempt that gets no answer or a 5xx, and ends with the next attempt
answered below 500 (a 429 is the API answering, slowly). Each change is one log line (the
`state_change` event) and the `toloka_connector_api_up` gauge; the clients of a process share
one tracker, so two roles seeing the same outage log it once.
"""

from __future__ import annotations

import threading

from connector.clock import Clock, SystemClock
from connector.logs import state_change
from connector.metrics import Metrics


class ApiAvailability:
    def __init__(self, metrics: Metrics | None = None, clock: Clock | None = None) -> None:
        self._metrics = metrics
        self._clock: Clock = clock or SystemClock()
        self._lock = threading.Lock()
        self._down_since: float | None = None

    @property
    def up(self) -> bool:
        return self._down_since is None

    def observe(self, answered_below_500: bool, operation: str, outcome: str) -> None:
        with self._lock:
            if answered_below_500 and self._down_since is not None:
                lasted = self._clock.monotonic() - self._down_since
                self._down_since = None
                state_change("toloka-api", "down", "up", f"outage ended after {lasted:.1f}s")
            elif not answered_below_500 and self._down_since is None:
                self._down_since = self._clock.monotonic()
                state_change("toloka-api", "up", "down", f"outage began: {operation} {outcome}")
        if self._metrics is not None:
            self._metrics.api_up.set(1 if answered_below_500 else 0)
