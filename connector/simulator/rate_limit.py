"""The simulator's request-rate limit: a token bucket in front of the API, as a gateway would
keep one per API key. A request that finds no token is answered 429 at once (never delayed by the
latency knobs: the limiter is not the API) with a `Retry-After` of the whole seconds until a token
is back (at least the `retry_after` knob), and takes no token.

It also tells whether a Retry-After it sent is still running, for the statistics to count the
requests that arrive meanwhile: a client that holds all its requests for it sends none then.
Requests arriving within `ON_THE_WAY_SECONDS` of the 429 are not counted: the client may have
sent them before the 429 reached it."""

from __future__ import annotations

import math
import time
from collections.abc import Callable

from connector.simulator.knobs import Knobs

ON_THE_WAY_SECONDS = 0.05


class RateLimiter:
    def __init__(self, monotonic: Callable[[], float] = time.monotonic) -> None:
        self._monotonic = monotonic
        self._tokens: float | None = None  # None: full (the bucket's size follows the knobs)
        self._refilled_at = monotonic()
        self._quiet_from = 0.0
        self._quiet_until = 0.0

    def in_retry_after(self) -> bool:
        """Whether a Retry-After this limiter sent is running (and reached the client)."""
        now = self._monotonic()
        return self._quiet_from + ON_THE_WAY_SECONDS <= now < self._quiet_until

    def admit(self, knobs: Knobs) -> int | None:
        """None when the request may pass (it takes a token), else the Retry-After seconds."""
        now = self._monotonic()
        rate = knobs.rate_limit
        if rate <= 0:
            self._tokens = None
            return None
        size = float(knobs.rate_limit_burst or max(1, math.ceil(rate)))
        tokens = size if self._tokens is None else self._tokens
        tokens = min(size, tokens + (now - self._refilled_at) * rate)
        self._refilled_at = now
        if tokens >= 1.0:
            self._tokens = tokens - 1.0
            return None
        self._tokens = tokens
        retry_after = max(knobs.retry_after, math.ceil((1.0 - tokens) / rate))
        if now >= self._quiet_until:
            self._quiet_from = now
        self._quiet_until = max(self._quiet_until, now + retry_after)
        return retry_after
