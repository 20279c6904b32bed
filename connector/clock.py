"""The one clock seam: code asks a Clock for time and sleeps, tests hand in a fake one. And the
one rule for datetimes the connector reads: without an offset, they are UTC (`as_utc`)."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime
from typing import Protocol


class Clock(Protocol):
    def time(self) -> float:
        """Wall-clock seconds since the epoch."""

    def monotonic(self) -> float:
        """Seconds from an arbitrary start, never going backwards."""

    def wait(self, event: threading.Event, seconds: float) -> bool:
        """Sleep up to `seconds`, waking early when `event` is set; True when it was set."""


class SystemClock:
    def time(self) -> float:
        return time.time()

    def monotonic(self) -> float:
        return time.monotonic()

    def wait(self, event: threading.Event, seconds: float) -> bool:
        return event.wait(seconds)


def as_utc(value: datetime) -> datetime:
    """The API (and an old state record) writes UTC without an offset: a naive datetime is UTC."""
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
