"""Per-request fault and latency draws, from their own seeded random source so that turning a
fault knob never changes how items are processed."""

from __future__ import annotations

import enum
import random

from connector.simulator.knobs import Knobs


class Fault(enum.Enum):
    TOO_MANY_REQUESTS = 429
    INTERNAL_ERROR = 500
    BAD_GATEWAY = 502
    UNAVAILABLE = 503
    RESET = "reset"  # connection reset before the request is applied
    LOST_RESPONSE = "lost"  # request applied, then the connection is reset
    REDIRECT = "redirect"  # a 3xx pointing elsewhere, not applied
    OVERSIZED_PAGE = "oversized_page"  # a huge HTML page (a proxy's), not applied


_IN_RATIO_ORDER = (
    Fault.TOO_MANY_REQUESTS,
    Fault.INTERNAL_ERROR,
    Fault.BAD_GATEWAY,
    Fault.UNAVAILABLE,
    Fault.RESET,
    Fault.LOST_RESPONSE,
    Fault.REDIRECT,
    Fault.OVERSIZED_PAGE,
)


class FaultInjector:
    def __init__(self, rng: random.Random) -> None:
        self._rng = rng

    def draw(self, knobs: Knobs, method: str) -> Fault | None:
        """The fault this request suffers, if any."""
        ratios = knobs.http_fault_ratios()
        if not any(ratios):
            return None
        scope = knobs.fault_scope
        if (scope == "read" and method != "GET") or (scope == "write" and method == "GET"):
            return None
        roll = self._rng.random()
        for fault, ratio in zip(_IN_RATIO_ORDER, ratios, strict=True):
            if roll < ratio:
                return fault
            roll -= ratio
        return None

    def latency(self, knobs: Knobs) -> float:
        """Seconds to hold this response back."""
        if knobs.latency_jitter:
            return knobs.latency + self._rng.random() * knobs.latency_jitter
        return knobs.latency


def read_latency(knobs: Knobs, method: str) -> float:
    """Seconds a GET (a listing) is held back on top of every request's latency."""
    return knobs.read_latency if method == "GET" else 0.0
