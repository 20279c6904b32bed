"""Waiting for conditions: poll with a deadline, never a bare sleep as synchronisation."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import TypeVar

from benchmarks.errors import BenchError

T = TypeVar("T")

_TICK = threading.Event()  # never set: `wait` on it is an interruptible pause between polls


def wait_until(
    probe: Callable[[], T | None],
    *,
    timeout: float,
    what: str,
    interval: float = 0.05,
    guard: Callable[[], None] | None = None,
) -> T:
    """Call `probe` until it returns something other than None (or False); return that.

    `guard` runs before each probe and raises when waiting is pointless (a process died).
    Raises BenchError naming `what` after `timeout` seconds.
    """
    deadline = time.monotonic() + timeout
    while True:
        if guard is not None:
            guard()
        result = probe()
        if result is not None and result is not False:
            return result
        left = deadline - time.monotonic()
        if left <= 0:
            raise BenchError(f"timed out after {timeout:g}s waiting for {what}")
        _TICK.wait(min(interval, left))


def pause(seconds: float, stop: threading.Event | None = None) -> bool:
    """A fixed pacing or sampling interval (not synchronisation); True when `stop` was set."""
    return (stop or _TICK).wait(max(seconds, 0.0))
