"""Scenario 4, memory under back-pressure: a large backlog, a slow and rate-limiting simulator
(latency per response, a share of 429s), and `toloka-connector upload` sampled for its resident
memory (psutil, every half second) for a fixed window; it need not drain the backlog.

Baseline, same run: the connector's own RSS once it uploads (the median of the first tenth of
the window after its first committed offset). The trend is the slope of a least-squares line
over the second half of the window; flat means it grows less than 5 % of the peak over it.
"""

from __future__ import annotations

import time
from typing import Any

from benchmarks.context import Bench
from benchmarks.kafka_io import GroupOffsets
from benchmarks.procs import RssSampler
from benchmarks.progress import Progress
from benchmarks.report import Row, ScenarioResult
from benchmarks.scenarios.upload import Backlog, produce_topic
from testkit.waiting import pause

SCENARIO = "s4"
PREFIX = "mem"
MIB = 1024 * 1024
PEAK_LIMIT_MIB = 300.0
FLAT_SHARE = 0.05
PROGRESS_INTERVAL = 1.0


def slope_per_minute(samples: list[tuple[float, int]]) -> float:
    """Least-squares slope of RSS over time, in MiB per minute."""
    if len(samples) < 2:
        return 0.0
    xs = [t for t, _ in samples]
    ys = [rss / MIB for _, rss in samples]
    mean_x, mean_y = sum(xs) / len(xs), sum(ys) / len(ys)
    spread = sum((x - mean_x) ** 2 for x in xs)
    if spread == 0:
        return 0.0
    return sum((x - mean_x) * (y - mean_y) for x, y in zip(xs, ys, strict=True)) / spread * 60


def _median(values: list[int]) -> float:
    ordered = sorted(values)
    return float(ordered[len(ordered) // 2]) if ordered else 0.0


def big_backlog(bench: Bench) -> Backlog:
    """The memory scenario's backlog, produced once per run (the scale scenario drains it too
    with groups of its own)."""
    cached = bench.shared.get("big_backlog")
    if isinstance(cached, Backlog):
        return cached
    backlog = produce_topic(bench, SCENARIO, PREFIX, bench.sizes.memory_backlog)
    bench.shared["big_backlog"] = backlog
    return backlog


def run(bench: Bench) -> ScenarioResult:
    result = ScenarioResult(4, "Memory under back-pressure")
    sizes = bench.sizes
    backlog = big_backlog(bench)
    count, settings, topic = backlog.count, backlog.settings, backlog.topic
    partitions, produced = len(backlog.partitions), backlog.produced

    bench.sim.reset()
    bench.sim.set_knobs(latency=sizes.memory_latency, http_429_ratio=sizes.memory_429_ratio)
    offsets = GroupOffsets(bench.bootstrap, settings["CONNECTOR_GROUP_ID"], topic, bench.inspector)
    bench.say(f"toloka-connector upload against a slow API for {sizes.memory_seconds:g}s")
    proc = bench.start("upload", settings, "s4-upload")
    sampler = RssSampler([proc.pid]).start()
    progress = Progress(started=proc.started)
    deadline = time.monotonic() + sizes.memory_seconds
    try:
        while time.monotonic() < deadline:
            proc.check_alive()
            progress.record(offsets.done())
            pause(PROGRESS_INTERVAL)
    finally:
        sampler.stop()
        stats = bench.sim.stats()
        code = proc.terminate()
        offsets.close()
        bench.sim.reset(restore_knobs=True)

    samples = sampler.samples
    first_at = next((t - progress.started for t, done in progress.samples if done), None)
    uploading = [s for s in samples if first_at is not None and s[0] >= first_at]
    window = samples[-1][0] - (first_at or 0.0)
    early = [rss for t, rss in uploading if t <= (first_at or 0.0) + window / 10]
    baseline = _median(early) / MIB if early else samples[0][1] / MIB
    half = [s for s in uploading if s[0] >= (first_at or 0.0) + window / 2]
    slope = slope_per_minute(half)
    peak = sampler.peak / MIB
    growth = slope * (half[-1][0] - half[0][0]) / 60 if len(half) > 1 else 0.0
    flat = growth < FLAT_SHARE * peak
    committed = progress.done
    statuses: dict[str, Any] = stats.get("requests_by_status", {})
    result.rows += [
        Row("memory: peak RSS under back-pressure", peak, "MiB", "RSS once uploading", baseline,
            f"< {PEAK_LIMIT_MIB:.0f} MiB", maximum=PEAK_LIMIT_MIB),
        Row("memory: RSS trend, second half", slope, "MiB/min", "", None,
            f"flat (< {FLAT_SHARE:.0%} of peak)", met=flat),
        Row("memory: items uploaded in the window", float(stats.get("items_created", 0)),
            "items", "backlog", float(count)),
    ]  # fmt: skip
    result.notes += [
        f"Backlog of {count:,} records ({produced.rate:,.0f} items/s to produce), simulator "
        f"latency {sizes.memory_latency * 1000:.0f} ms per response and "
        f"{sizes.memory_429_ratio:.0%} answered 429 (Retry-After 1 s); RSS sampled every "
        f"{sampler.interval:g}s for {samples[-1][0]:.0f}s ({len(samples)} samples).",
        f"Committed {committed:,} offsets; requests by status {statuses}; RSS grew "
        f"{growth:+.1f} MiB over the second half; exit code {code}.",
        "RSS at each tenth of the window (MiB): "
        + ", ".join(f"{rss / MIB:.0f}" for rss in _tenths(samples)),
    ]
    result.raw.update(
        backlog=count,
        partitions=partitions,
        produce=produced.as_json(),
        latency_seconds=sizes.memory_latency,
        http_429_ratio=sizes.memory_429_ratio,
        peak_rss_mib=round(peak, 1),
        baseline_rss_mib=round(baseline, 1),
        slope_mib_per_minute_second_half=round(slope, 3),
        growth_mib_second_half=round(growth, 2),
        flat=flat,
        committed=committed,
        items_created=stats.get("items_created"),
        requests_by_status=statuses,
        rss_samples=[[round(t, 2), round(rss / MIB, 1)] for t, rss in samples],
        exit_code=code,
    )
    return result


def _tenths(samples: list[tuple[float, int]]) -> list[int]:
    if not samples:
        return []
    end = samples[-1][0]
    picked = []
    for tenth in range(1, 11):
        at = end * tenth / 10
        picked.append(min(samples, key=lambda s: abs(s[0] - at))[1])
    return picked
