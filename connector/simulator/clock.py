"""The simulator's clock: wall time in integer microseconds that never runs backwards and that the
admin API can move forward, plus the API's datetime format in both directions.

Every item timestamp comes from this clock, so a test can make items finish by advancing it
instead of sleeping, and the finished-order index can rely on time never decreasing.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime

MICROS = 1_000_000
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class SimClock:
    """UTC microseconds since the epoch; monotonic, and advanceable by tests."""

    __slots__ = ("_mono_at_start", "_offset", "_wall_at_start")

    def __init__(self) -> None:
        self._wall_at_start = time.time_ns() // 1000
        self._mono_at_start = time.monotonic_ns() // 1000
        self._offset = 0  # only ever grows, so now() never steps back

    def now(self) -> int:
        elapsed = time.monotonic_ns() // 1000 - self._mono_at_start
        return self._wall_at_start + elapsed + self._offset

    def advance(self, micros: int) -> int:
        """Jump forward by `micros` (>= 0); returns the new now."""
        if micros < 0:
            raise ValueError("the clock only moves forward")
        self._offset += micros
        return self.now()

    def advance_to(self, target: int) -> None:
        """Make sure `now()` is at least `target` from here on."""
        behind = target - self.now()
        if behind > 0:
            self._offset += behind


class DatetimeFormatter:
    """Formats microsecond timestamps as the API does (`2021-10-03T10:10:27.561182`).

    Listing pages format thousands of timestamps that mostly share their second, so the
    `YYYY-MM-DDThh:mm:ss` part is cached per second.
    """

    __slots__ = ("_seconds",)
    _CACHE_LIMIT = 65_536

    def __init__(self) -> None:
        self._seconds: dict[int, str] = {}

    def format(self, micros: int) -> str:
        second, fraction = divmod(micros, MICROS)
        prefix = self._seconds.get(second)
        if prefix is None:
            if len(self._seconds) >= self._CACHE_LIMIT:
                self._seconds.clear()
            prefix = datetime.fromtimestamp(second, UTC).strftime("%Y-%m-%dT%H:%M:%S.%%06d")
            self._seconds[second] = prefix
        return prefix % fraction


def parse_api_datetime(text: str) -> int:
    """A filter value (`2022-12-01`, `2022-12-01T10:00:00.5`, optional `Z`/offset) in UTC micros.

    Raises ValueError for anything else. Naive values are UTC, as the API documents.
    """
    value = datetime.fromisoformat(text)
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    delta = value - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * MICROS + delta.microseconds
