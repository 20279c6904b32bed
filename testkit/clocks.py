"""The fake `connector.clock.Clock` of unit tests: time moves only when the code under test waits
on it (by what it asked for) or when a test moves it."""

from __future__ import annotations

import threading
from collections.abc import Callable

WALL_START = 1_700_000_000.0


class FakeClock:
    """`wait(event, seconds)` returns at once: it records `seconds` (`waits`), calls `on_wait`
    (a test's hook: it may set the event, or fail when nothing may sleep), moves both clocks by
    `seconds` (at least `min_step`), and answers whether the event is set. `stop` is set once
    the wall clock reaches `stop_at`."""

    def __init__(
        self,
        wall: float = WALL_START,
        monotonic: float = 1000.0,
        *,
        stop_at: float | None = None,
        min_step: float = 0.001,
        on_wait: Callable[[], None] | None = None,
    ) -> None:
        self.now = wall
        self.mono = monotonic
        self.stop_at = stop_at
        self.min_step = min_step
        self.stop = threading.Event()
        self.waits: list[float] = []
        self.on_wait = on_wait

    def time(self) -> float:
        return self.now

    def monotonic(self) -> float:
        return self.mono

    def advance(self, seconds: float) -> None:
        self.now += seconds
        self.mono += seconds
        if self.stop_at is not None and self.now >= self.stop_at:
            self.stop.set()

    def step_wall_clock(self, seconds: float) -> None:
        """The wall clock jumps (NTP, an operator); the monotonic clock does not."""
        self.now += seconds

    def wait(self, event: threading.Event, seconds: float) -> bool:
        self.waits.append(seconds)
        if self.on_wait is not None:
            self.on_wait()
        self.advance(max(seconds, self.min_step))
        return event.is_set()


def never_waits() -> None:
    """An `on_wait` for code that must never sleep on the clock."""
    raise AssertionError("this code must never sleep on the clock")
