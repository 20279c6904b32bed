"""Throughput from progress samples: (time, items done) pairs taken while something runs.

The steady rate runs from the first sample that shows progress to the sample that shows the
last item done, so start-up (imports, group joins, connections) is reported apart from it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from benchmarks.errors import BenchError


@dataclass(frozen=True)
class Throughput:
    items: int
    seconds: float

    @property
    def rate(self) -> float:
        return self.items / self.seconds if self.seconds > 0 else float("inf")

    def as_json(self) -> dict[str, float]:
        return {"items": self.items, "seconds": round(self.seconds, 4), "rate": round(self.rate)}


@dataclass
class Progress:
    """Samples of a counter against `time.perf_counter()`; `started` is when the work began."""

    started: float = field(default_factory=time.perf_counter)
    samples: list[tuple[float, int]] = field(default_factory=list)

    def record(self, done: int, at: float | None = None) -> None:
        self.samples.append((time.perf_counter() if at is None else at, done))

    @property
    def done(self) -> int:
        return self.samples[-1][1] if self.samples else 0

    def first_progress(self) -> tuple[float, int]:
        for sample in self.samples:
            if sample[1] > 0:
                return sample
        raise BenchError("no progress was recorded")

    def reached(self, target: int) -> tuple[float, int]:
        for sample in self.samples:
            if sample[1] >= target:
                return sample
        raise BenchError(f"the count never reached {target} (last {self.done})")

    def steady(self, target: int, since: tuple[float, int] | None = None) -> Throughput:
        """Items per second from the first progress (or from the sample `since`) to reaching
        `target`."""
        first_at, first_done = since or self.first_progress()
        end_at, end_done = self.reached(target)
        if end_at <= first_at:  # everything arrived in one sample
            return Throughput(end_done, max(end_at - self.started, 1e-9))
        return Throughput(end_done - first_done, end_at - first_at)

    def overall(self, target: int) -> Throughput:
        """Items per second from `started` (process spawn, first call) to reaching `target`."""
        end_at, end_done = self.reached(target)
        return Throughput(end_done, end_at - self.started)
