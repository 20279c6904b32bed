"""When and how long to wait before repeating an Apps API request that failed retryably.

Backoff is exponential with full jitter (a uniform delay between 0 and the exponential envelope),
so that many uploader threads hit by the same outage do not come back in lockstep. A server's
`Retry-After` replaces the jittered delay, still capped by the policy's maximum delay.
"""

from __future__ import annotations

import email.utils
import math
import random
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC
from typing import TypeVar

from connector.clock import Clock
from connector.errors import RetryableApiError

T = TypeVar("T")

_MAX_DOUBLINGS = 64
"""The envelope stops growing long before this; the bound keeps 2**n from overflowing a float
when an unbounded policy has been retrying for days."""


@dataclass(frozen=True)
class RetryPolicy:
    """How long to keep repeating a request that failed retryably.

    `max_attempts` counts the first try. `max_elapsed_seconds` bounds the time from the first try
    to the start of the last one: a retry whose wait would end past it is not made. With both
    None the request is retried forever with the delay capped at `max_delay_seconds` — the
    uploader's choice, since it must not drop a batch while the API is down.
    """

    max_attempts: int | None = 5
    max_elapsed_seconds: float | None = None
    base_delay_seconds: float = 0.5
    max_delay_seconds: float = 30.0

    def __post_init__(self) -> None:
        if self.max_attempts is not None and self.max_attempts < 1:
            raise ValueError("max_attempts must be at least 1 (or None for no limit)")
        if self.max_elapsed_seconds is not None and self.max_elapsed_seconds < 0:
            raise ValueError("max_elapsed_seconds must not be negative (or None for no limit)")
        if self.base_delay_seconds < 0:
            raise ValueError("base_delay_seconds must not be negative")
        if self.max_delay_seconds < self.base_delay_seconds:
            raise ValueError("max_delay_seconds must be at least base_delay_seconds")

    def backoff_envelope(self, retry_number: int) -> float:
        """The largest jittered delay before the `retry_number`-th retry (1 for the first)."""
        doublings = min(retry_number - 1, _MAX_DOUBLINGS)
        return min(self.max_delay_seconds, self.base_delay_seconds * 2.0**doublings)

    def delay_before_retry(
        self, retry_number: int, retry_after: float | None, rng: random.Random
    ) -> float:
        if retry_after is not None:
            return min(retry_after, self.max_delay_seconds)
        return rng.uniform(0.0, self.backoff_envelope(retry_number))

    def permits_retry(self, attempts_made: int, elapsed_at_next_attempt: float) -> bool:
        if self.max_attempts is not None and attempts_made >= self.max_attempts:
            return False
        return (
            self.max_elapsed_seconds is None or elapsed_at_next_attempt <= self.max_elapsed_seconds
        )


SINGLE_ATTEMPT = RetryPolicy(max_attempts=1)


def parse_retry_after(value: str | None, now: float) -> float | None:
    """Seconds to wait from a `Retry-After` header (delta seconds or HTTP-date); None if absent
    or unreadable. A date in the past means "now"."""
    if value is None:
        return None
    text = value.strip()
    try:
        seconds = float(text)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(text)
        except (TypeError, ValueError):
            return None
        if when.tzinfo is None:  # "-0000" parses naive; HTTP-dates are always GMT
            when = when.replace(tzinfo=UTC)
        seconds = when.timestamp() - now
    return max(seconds, 0.0) if math.isfinite(seconds) else None


def call_with_retries(
    attempt: Callable[[], T],
    *,
    policy: RetryPolicy,
    clock: Clock,
    rng: random.Random,
    stop: threading.Event,
    on_retry: Callable[[RetryableApiError, int, float], None],
) -> T:
    """Call `attempt` until it returns or raises a non-retryable error. The last retryable error
    propagates when the policy allows no more retries or `stop` is set (a shutdown must not wait
    out an unbounded policy). `on_retry(error, attempt_number, delay)` runs before each wait."""
    started = clock.monotonic()
    attempts_made = 0
    while True:
        attempts_made += 1
        try:
            return attempt()
        except RetryableApiError as error:
            delay = policy.delay_before_retry(attempts_made, error.retry_after, rng)
            elapsed_at_next = clock.monotonic() - started + delay
            if stop.is_set() or not policy.permits_retry(attempts_made, elapsed_at_next):
                raise
            on_retry(error, attempts_made, delay)
            if clock.wait(stop, delay):
                raise
