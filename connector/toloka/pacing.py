"""Pacing of one API client's requests under a rate limit: a shared pause and an adaptive number
of requests in flight.

A 429 says the API key sends faster than the API accepts. Waiting out its `Retry-After` in the
one request that got it (each request on its own) keeps the other requests coming, which is what
the API asked to stop: they meet 429s too, and the share of requests refused grows with the
concurrency. Instead:
- `PauseGate`: a 429's `Retry-After` closes the gate of the whole client until it runs out; every
  request waits at the gate before it is sent (the one that got the 429 and every other);
- `InFlightLimit`: how many bulk requests the uploader keeps in flight, adapted by AIMD
  (additive increase, multiplicative decrease): halved on a 429, grown by one per two rounds of
  successes (a round: as many as the limit), between 1 and the configured maximum. The
  decrease happens once per congestion signal: 429s of requests sent before the last decrease
  answer the same overload and do not halve the limit again.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

from connector.clock import Clock
from connector.metrics import Metrics

DECREASE_FACTOR = 0.5
"""The limit is multiplied by this on a 429 (TCP's choice: it converges to a fair share)."""
ROUNDS_PER_INCREASE = 2
"""The limit grows by one per this many rounds of successes (a round: as many successes as the
limit). One per round, TCP's pace, met the simulator's token bucket again ~1 s after each
pause: 4.6-6.6 % of the requests were answered 429 (docs/benchmarks.md, scenario 6)."""


class PauseGate:
    """Closed from a 429 until its `Retry-After` ran out; thread-safe."""

    def __init__(self, clock: Clock) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._open_at = 0.0  # monotonic

    def pause(self, seconds: float) -> None:
        """Close the gate for `seconds` from now (a pause already longer is kept)."""
        with self._lock:
            self._open_at = max(self._open_at, self._clock.monotonic() + seconds)

    def closed_for(self) -> float:
        """Seconds until the gate opens (0 when it is open)."""
        with self._lock:
            return max(self._open_at - self._clock.monotonic(), 0.0)

    def wait(self, stop: threading.Event) -> bool:
        """Wait until the gate is open; False when `stop` was set first. A pause that grows
        meanwhile (another 429) is waited out too."""
        while not stop.is_set():
            left = self.closed_for()
            if left <= 0:
                return True
            if self._clock.wait(stop, left):
                return False
        return False


class InFlightLimit:
    """AIMD on the number of requests in flight; thread-safe. `current` is what to keep in
    flight now; each request takes `sent()` before it leaves and reports its outcome with the
    generation it got."""

    def __init__(self, maximum: int, metrics: Metrics | None = None) -> None:
        if maximum < 1:
            raise ValueError("the in-flight maximum must be at least 1")
        self.maximum = maximum
        self._metrics = metrics
        self._lock = threading.Lock()
        self._current = maximum  # starts open: without 429s nothing changes
        self._successes = 0  # since the last change
        self._generation = 0
        self._publish()

    @property
    def current(self) -> int:
        return self._current

    def sent(self) -> int:
        """The generation a request leaves in (the number of decreases so far)."""
        return self._generation

    def throttled(self, generation: int) -> None:
        """A request sent in `generation` got a 429: halve the limit, once per generation."""
        with self._lock:
            if generation != self._generation:
                return  # answers the overload already acted on
            self._generation += 1
            self._current = max(1, int(self._current * DECREASE_FACTOR))
            self._successes = 0
            self._publish()

    def succeeded(self) -> None:
        """A request was accepted: grow by one per `ROUNDS_PER_INCREASE` rounds of successes."""
        with self._lock:
            if self._current >= self.maximum:
                return
            self._successes += 1
            if self._successes < self._current * ROUNDS_PER_INCREASE:
                return
            self._current += 1
            self._successes = 0
            self._publish()

    def _publish(self) -> None:
        """Under the lock (or before the limit is shared): two threads' changes reach the
        gauge in the order they were made."""
        if self._metrics is not None:
            self._metrics.upload_in_flight_limit.set(self._current)


@dataclass(frozen=True)
class Pacing:
    """What an API client shares among its requests: the pause gate (one per process: every
    client of every pipeline sends with the one API key, which the rate limit is about), and
    the in-flight limit its user follows (the uploader's; None for the pollers)."""

    gate: PauseGate
    limit: InFlightLimit | None = None

    @classmethod
    def adaptive(
        cls,
        maximum: int,
        clock: Clock,
        metrics: Metrics | None = None,
        *,
        gate: PauseGate | None = None,
    ) -> Pacing:
        return cls(gate or PauseGate(clock), InFlightLimit(maximum, metrics))
