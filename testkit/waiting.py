"""Waiting for a condition with a deadline: the only way the suites wait (never a bare sleep
as synchronisation)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TypeVar

from connector.devtools.processes import poll_until

T = TypeVar("T")

_NEVER = threading.Event()  # never set: a wait on it is an interruptible pause


class WaitTimeoutError(AssertionError):
    """What was waited for did not come within the deadline; the message names it."""


def wait_for(
    condition: Callable[[], T | None],
    what: str = "the condition",
    timeout: float = 90.0,
    *,
    interval: float = 0.02,
    guard: Callable[[], None] | None = None,
) -> T:
    """Poll `condition` until it is truthy and return what it returned; WaitTimeoutError naming
    `what` after `timeout` seconds. `guard` runs before each poll and raises when waiting is
    pointless (a process died)."""
    found = poll_until(condition, timeout=timeout, interval=interval, guard=guard)
    if not found:
        raise WaitTimeoutError(f"timed out after {timeout:.0f} s waiting for {what}")
    return found


def pause(seconds: float, stop: threading.Event | None = None) -> bool:
    """A fixed pacing or sampling interval (not synchronisation); True when `stop` was set."""
    return (stop or _NEVER).wait(max(seconds, 0.0))
