"""Scenario 6, an API that limits the request rate: the simulator's token bucket
(`rate_limit` requests/s, a burst of one second's worth, 429 at once with Retry-After) and
answers taking `LATENCY_SECONDS`, drained by `toloka-connector upload` with its adaptive
in-flight limit (the default) and, side by side, with the fixed concurrency of before
(`CONNECTOR_ADAPTIVE_IN_FLIGHT=false`), both allowed `MAX_IN_FLIGHT` requests.

The backlog is larger than a window drains; each run counts the items the simulator created and
the requests it answered over a fixed window that opens `WARM_UP_SECONDS` after the first item
(the baseline: the limit in items/s, requests/s x items per full batch). Modes alternate over
`ROUNDS` rounds, each with a fresh group, and the medians are reported.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from benchmarks.context import Bench
from benchmarks.procs import RssSampler
from benchmarks.report import Row, ScenarioResult
from benchmarks.scenarios.upload import produce_topic
from testkit.waiting import pause, wait_for

SCENARIO = "s6"
PREFIX = "rl"
RATE_LIMIT = 20.0
"""Requests per second the simulator accepts (its bucket holds one second's worth)."""
BATCH_ITEMS = 500
LATENCY_SECONDS = 0.2
MAX_IN_FLIGHT = 16
"""Fixed at this many, the uploader would send 80 requests/s: four times the limit."""
WARM_UP_SECONDS = 5.0
ROUNDS = 2
MIB = 1024 * 1024
PEAK_LIMIT_MIB = 300.0
SHARE_429_LIMIT = 0.05


@dataclass
class LimitedRun:
    adaptive: bool
    items: int
    seconds: float
    requests: int
    refused: int
    during_retry_after: int
    peak_rss_mib: float
    exit_code: int

    @property
    def rate(self) -> float:
        return self.items / self.seconds

    @property
    def share_429(self) -> float:
        return self.refused / self.requests if self.requests else 0.0

    def as_json(self) -> dict[str, Any]:
        return {
            "adaptive": self.adaptive,
            "items": self.items,
            "seconds": round(self.seconds, 2),
            "rate": round(self.rate),
            "bulk_requests": self.requests,
            "answered_429": self.refused,
            "share_429": round(self.share_429, 4),
            "requests_during_retry_after": self.during_retry_after,
            "peak_rss_mib": round(self.peak_rss_mib, 1),
            "exit_code": self.exit_code,
        }


def _counts(bench: Bench) -> tuple[int, int, int, int]:
    """Items created, bulk requests, of them answered 429, requests during a Retry-After."""
    stats = bench.sim.stats()
    requests = int(stats.get("requests_by_route", {}).get("bulk_create", 0))
    return (
        int(stats.get("items_created", 0)), requests, int(stats.get("rate_limited", 0)),
        int(stats.get("requests_during_retry_after", 0)),
    )  # fmt: skip


def measure(bench: Bench, settings: dict[str, str], group: str, adaptive: bool) -> LimitedRun:
    bench.sim.reset()
    bench.sim.set_knobs(latency=LATENCY_SECONDS, rate_limit=RATE_LIMIT)
    run_settings = {
        **settings,
        "CONNECTOR_GROUP_ID": group,
        "CONNECTOR_BATCH_MAX_ITEMS": str(BATCH_ITEMS),
        "CONNECTOR_MAX_IN_FLIGHT": str(MAX_IN_FLIGHT),
        "CONNECTOR_ADAPTIVE_IN_FLIGHT": "true" if adaptive else "false",
    }
    proc = bench.start("upload", run_settings, group)
    sampler = RssSampler([proc.pid]).start()
    try:
        wait_for(lambda: _counts(bench)[0] > 0, "the first item created", timeout=120.0,
                 guard=proc.check_alive)  # fmt: skip
        pause(WARM_UP_SECONDS)
        proc.check_alive()
        opened, first = time.perf_counter(), _counts(bench)
        pause(bench.sizes.rate_limit_seconds)
        proc.check_alive()
        closed, last = time.perf_counter(), _counts(bench)
    finally:
        sampler.stop()
        code = proc.terminate()
    items, requests, refused, during = (b - a for a, b in zip(first, last, strict=True))
    return LimitedRun(adaptive, items, closed - opened, requests, refused, during,
                      sampler.peak / MIB, code)  # fmt: skip


def run(bench: Bench) -> ScenarioResult:
    result = ScenarioResult(6, "Rate limit: adaptive in-flight requests")
    window = bench.sizes.rate_limit_seconds
    rounds = 1 if bench.sizes.rate_limit_seconds < 30 else ROUNDS
    # Enough that no window drains it: the limit's rate over warm-up and window, every run.
    per_run = RATE_LIMIT * BATCH_ITEMS * (window + WARM_UP_SECONDS + 30)
    backlog = produce_topic(bench, SCENARIO, PREFIX, int(per_run))
    limit = RATE_LIMIT * BATCH_ITEMS
    runs: dict[bool, list[LimitedRun]] = {True: [], False: []}
    for number in range(1, rounds + 1):
        for adapting in (True, False):
            mode = "adaptive" if adapting else "fixed"
            bench.say(f"round {number}/{rounds}: toloka-connector upload, {mode} in flight, "
                      f"{window:g}s against {RATE_LIMIT:g} requests/s")  # fmt: skip
            group = bench.name(SCENARIO, f"{mode}{number}")
            runs[adapting].append(measure(bench, backlog.settings, group, adapting))
    bench.sim.reset(restore_knobs=True)

    def median(adaptive: bool) -> LimitedRun:
        ordered = sorted(runs[adaptive], key=lambda r: r.rate)
        return ordered[len(ordered) // 2]

    adaptive, fixed = median(True), median(False)
    peak = max(r.peak_rss_mib for rs in runs.values() for r in rs)
    result.rows += [
        Row("rate limit: adaptive in flight", adaptive.rate, "items/s",
            f"the limit ({RATE_LIMIT:g} requests/s x {BATCH_ITEMS})", limit, ">= 0.90x",
            minimum_ratio=0.9),
        Row("rate limit: adaptive, bulk requests answered 429", adaptive.share_429 * 100, "%",
            "", None, f"< {SHARE_429_LIMIT:.0%}", met=adaptive.share_429 < SHARE_429_LIMIT),
        Row(f"rate limit: fixed {MAX_IN_FLIGHT} in flight (before)", fixed.rate, "items/s",
            "the limit", limit),
        Row("rate limit: fixed, bulk requests answered 429", fixed.share_429 * 100, "%"),
        Row("rate limit: requests sent during a Retry-After, adaptive", float(
            adaptive.during_retry_after), "requests", "fixed", float(fixed.during_retry_after)),
        Row("rate limit: peak RSS (every run)", peak, "MiB", "", None,
            f"< {PEAK_LIMIT_MIB:.0f} MiB", maximum=PEAK_LIMIT_MIB),
    ]  # fmt: skip
    result.notes += [
        f"Backlog of {backlog.count:,} records in {len(backlog.partitions)} partitions; the "
        f"simulator accepts {RATE_LIMIT:g} requests/s (token bucket of {RATE_LIMIT:g}), answers "
        f"the rest 429 at once with Retry-After 1 s, and every accepted answer after "
        f"{LATENCY_SECONDS * 1000:.0f} ms; batches of {BATCH_ITEMS}, CONNECTOR_MAX_IN_FLIGHT="
        f"{MAX_IN_FLIGHT}; each window {window:g}s from {WARM_UP_SECONDS:g}s after the first "
        "item created.",
        f"Medians of {rounds} alternating round(s): adaptive "
        + ", ".join(f"{r.rate:,.0f} ({r.share_429:.1%} 429)" for r in runs[True])
        + "; fixed "
        + ", ".join(f"{r.rate:,.0f} ({r.share_429:.1%} 429)" for r in runs[False])
        + " items/s.",
        "Requests sent during a Retry-After: counted by the simulator, from 50 ms after the "
        "429 (requests already on their way then are not the client's choice).",
    ]
    result.raw.update(
        rate_limit_requests_per_second=RATE_LIMIT,
        batch_items=BATCH_ITEMS,
        latency_seconds=LATENCY_SECONDS,
        max_in_flight=MAX_IN_FLIGHT,
        adaptive=[r.as_json() for r in runs[True]],
        fixed=[r.as_json() for r in runs[False]],
    )
    return result
