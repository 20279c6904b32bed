"""Scenario 1, the upload flow: a pre-produced backlog drained by `toloka-connector upload`.

Completion is the group's committed offsets reaching the end of the topic (the simulator's
`items_created` is checked against the count afterwards, with its duplicate count). Baselines,
same records, same run: a raw batch consume with confluent-kafka (no decoding), raw bulk POSTs
of pre-serialised 1,000-item bodies with httpx (as many in flight as the uploader allows), and a
naive bridge (consume one record, POST it, commit it) on a sample.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from benchmarks.context import DEFAULT_PARTITIONS, Bench
from benchmarks.errors import BenchError
from benchmarks.http_io import bulk_bodies, naive_bridge, raw_bulk_posts
from benchmarks.kafka_io import GroupOffsets, produce_backlog, raw_consume
from benchmarks.procs import CpuWindow, labelled_processes
from benchmarks.profiling import Profiler, ProfileSummary
from benchmarks.progress import Progress, Throughput
from benchmarks.records import item_values, mean_value_bytes
from benchmarks.report import Row, ScenarioResult
from benchmarks.waiting import wait_until

SCENARIO = "s1"
PREFIX = "up"
BULK_ITEMS = 1000
IN_FLIGHT = 4  # CONNECTOR_MAX_IN_FLIGHT's default: the raw POST baseline uses as many


@dataclass
class Backlog:
    """The pre-produced input topic, shared by scenarios 1 and 5."""

    settings: dict[str, str]
    topic: str
    partitions: list[int]
    count: int
    produced: Throughput


def upload_backlog(bench: Bench) -> Backlog:
    """Create and fill the upload scenario's input topic once per run."""
    cached = bench.shared.get("upload_backlog")
    if isinstance(cached, Backlog):
        return cached
    count = bench.sizes.upload_items
    settings = bench.settings(SCENARIO)
    topic = settings["CONNECTOR_INPUT_TOPIC"]
    partitions = bench.partitions_for(count, mean_value_bytes(PREFIX))
    bench.create_topics(settings, partitions, DEFAULT_PARTITIONS)
    bench.say(f"producing {count:,} records to {topic} ({partitions} partitions)")
    produced = produce_backlog(bench.bootstrap, topic, item_values(PREFIX, count), partitions)
    stored = bench.inspector.count(topic)
    if stored != count:
        raise BenchError(f"{topic} holds {stored} records, {count} were produced")
    backlog = Backlog(settings, topic, bench.inspector.partitions(topic), count, produced)
    bench.shared["upload_backlog"] = backlog
    return backlog


@dataclass
class UploadRun:
    processes: int
    progress: Progress
    steady: Throughput
    overall: Throughput
    cores: dict[str, float]
    sim_stats: dict[str, Any]
    exit_codes: list[int]
    profile: ProfileSummary | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def as_json(self) -> dict[str, Any]:
        return {
            "processes": self.processes,
            "steady": self.steady.as_json(),
            "overall_including_start": self.overall.as_json(),
            "cores_used": self.cores,
            "items_created": self.sim_stats.get("items_created"),
            "duplicate_creates": self.sim_stats.get("duplicate_creates"),
            "requests_by_status": self.sim_stats.get("requests_by_status"),
            "exit_codes": self.exit_codes,
        }


def measure_upload(
    bench: Bench,
    backlog: Backlog,
    group: str,
    *,
    processes: int = 1,
    profile_label: str | None = None,
) -> UploadRun:
    """Reset the simulator, start `processes` uploaders in `group`, wait until the group has
    committed the whole topic, stop them (SIGTERM), and read the simulator's counts."""
    bench.sim.reset()
    settings = {**backlog.settings, "CONNECTOR_GROUP_ID": group}
    offsets = GroupOffsets(bench.bootstrap, group, backlog.topic, bench.inspector)
    expected = offsets.end
    procs = [bench.start("upload", settings, f"{group}-{i}") for i in range(processes)]
    progress = Progress(started=procs[0].started)
    window = CpuWindow(
        labelled_processes({f"uploader-{i}": p.pid for i, p in enumerate(procs)})
    )
    profiler: Profiler | None = None
    first_seen: list[float] = []

    def committed() -> bool:
        nonlocal profiler
        done = offsets.done()
        progress.record(done)
        if done and not first_seen:  # start-up is over: measure and profile from here
            first_seen.append(time.perf_counter())
            window.start()
            if profile_label:
                profiler = bench.profiler(procs[0].pid, group)
        return done >= expected

    def alive() -> None:
        for proc in procs:
            proc.check_alive()

    try:
        wait_until(
            committed,
            timeout=max(180.0, expected / 1000),
            what=f"group {group} to commit {expected:,} offsets",
            guard=alive,
        )
        window.stop()
        summary = bench.summary(profiler, profile_label) if profile_label else None
    finally:
        codes = [proc.stop() for proc in procs]
        offsets.close()
    stats = bench.sim.stats()
    created = int(stats.get("items_created", 0))
    if created < expected:
        raise BenchError(f"committed {expected} offsets but the simulator created {created}")
    return UploadRun(
        processes, progress, progress.steady(expected), progress.overall(expected),
        window.cores(), stats, codes, summary,
    )  # fmt: skip


def run(bench: Bench) -> ScenarioResult:
    result = ScenarioResult(1, "Upload flow")
    backlog = upload_backlog(bench)
    count = backlog.count

    bench.say("baseline: raw batch consume")
    consumed = raw_consume(bench.bootstrap, backlog.topic, backlog.partitions, count, 120.0)
    raw_consume_rate = consumed.steady(count)

    bench.say("baseline: raw bulk POSTs")
    bench.sim.reset()
    bodies = bulk_bodies(list(item_values(PREFIX, count)), BULK_ITEMS)
    posted = raw_bulk_posts(bench.sim, bodies, BULK_ITEMS, IN_FLIGHT)
    del bodies
    raw_post_rate = posted.steady(count)

    sample = min(bench.sizes.naive_sample, count)
    bench.say(f"baseline: naive bridge on {sample:,} records")
    bench.sim.reset()
    naive = naive_bridge(
        bench.bootstrap, bench.sim, topic=backlog.topic, partitions=backlog.partitions,
        group=bench.name(SCENARIO, "naive"), count=sample, timeout=300.0,
    )  # fmt: skip

    bench.say("toloka-connector upload")
    measured = measure_upload(bench, backlog, bench.name(SCENARIO, "group"))

    slower_name, slower = min(
        ("raw consume", raw_consume_rate.rate), ("raw bulk POST", raw_post_rate.rate),
        key=lambda pair: pair[1],
    )  # fmt: skip
    rate = measured.steady.rate
    result.rows += [
        Row("upload: toloka-connector upload", rate, "items/s",
            f"slower raw baseline ({slower_name})", slower, "≥ 0.50x", minimum_ratio=0.5),
        Row("upload: toloka-connector upload", rate, "items/s",
            "naive bridge", naive.rate, "≥ 20x", minimum_ratio=20.0),
        Row("upload: raw batch consume (confluent-kafka)", raw_consume_rate.rate, "items/s"),
        Row(f"upload: raw bulk POST (httpx, {IN_FLIGHT} in flight)", raw_post_rate.rate,
            "items/s"),
        Row(f"upload: naive bridge ({sample:,}-record sample)", naive.rate, "items/s"),
        Row("upload: incl. process start", measured.overall.rate, "items/s",
            "steady", rate),
    ]  # fmt: skip
    result.notes += [
        f"{count:,} records ({backlog.produced.rate:,.0f} items/s to produce) in "
        f"{len(backlog.partitions)} partitions; default settings (batch 1,000, linger 50 ms, "
        f"{IN_FLIGHT} requests in flight); rates run from the first committed offset to the "
        "last (start-up apart: the 'incl. process start' row).",
        f"Simulator after the run: {measured.sim_stats.get('items_created'):,} items created, "
        f"{measured.sim_stats.get('duplicate_creates')} duplicates; exit codes "
        f"{measured.exit_codes}.",
        "CPU cores used while draining: "
        + ", ".join(f"{k} {v:.2f}" for k, v in measured.cores.items()),
    ]
    result.raw.update(
        records=count,
        partitions=len(backlog.partitions),
        produce=backlog.produced.as_json(),
        raw_consume=raw_consume_rate.as_json(),
        raw_bulk_post=raw_post_rate.as_json(),
        naive_bridge=naive.as_json(),
        connector=measured.as_json(),
    )
    if bench.profiling:
        bench.say("profiled run of toloka-connector upload (py-spy)")
        profiled = measure_upload(
            bench, backlog, bench.name(SCENARIO, "profiled"),
            profile_label="uploader (scenario 1, toloka-connector upload)",
        )  # fmt: skip
        result.raw["profiled_run"] = profiled.as_json()
        result.notes.append(
            f"Profiled run (py-spy attached, 100 Hz): {profiled.steady.rate:,.0f} items/s "
            f"({profiled.steady.rate / rate:.2f}x the unprofiled run)."
        )
        if profiled.profile is not None:
            result.profiles.append(profiled.profile)
    return result
