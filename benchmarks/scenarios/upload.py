"""Scenario 1, the upload flow: a pre-produced backlog drained by `toloka-connector upload`.

Completion is the group's committed offsets reaching the end of the topic (the simulator's
`items_created` is checked against the count afterwards, with its duplicate count). Baselines,
same records, same run: a raw batch consume with confluent-kafka (no decoding), raw bulk POSTs
of pre-serialised 1,000-item bodies with httpx (as many in flight as the uploader allows), and a
naive bridge (consume one record, POST it, commit it) on a sample.

The backlog drains in seconds, so the raw baselines and the connector are measured in
`ROUNDS` interleaved rounds and the medians reported (another run on a shared machine can stall
any single one). The profile adds up `PROFILE_RUNS` drains sampled at `PROFILE_RATE` Hz.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchmarks.context import DEFAULT_PARTITIONS, Bench
from benchmarks.errors import BenchError
from benchmarks.http_io import bulk_bodies, naive_bridge, raw_bulk_posts
from benchmarks.kafka_io import GroupMembers, GroupOffsets, produce_backlog, raw_consume
from benchmarks.procs import CpuWindow, labelled_processes, peak_rss_mib, with_workers
from benchmarks.profiling import Profiler
from benchmarks.progress import Progress, Throughput
from benchmarks.records import item_values, mean_value_bytes
from benchmarks.report import Row, ScenarioResult
from testkit.waiting import wait_for

SCENARIO = "s1"
PREFIX = "up"
BULK_ITEMS = 1000
IN_FLIGHT = 4  # CONNECTOR_MAX_IN_FLIGHT's default: the raw POST baseline uses as many
ROUNDS = 3
PROFILE_RUNS = 3
PROFILE_RATE = 200
WALL_PROFILE_RUNS = 2
WALL_ROOT = "UploadLoop.run"
COMMIT_STALL_SECONDS = 15.0
HOLD_LATENCY_SECONDS = 0.3
"""While the group forms (`hold`): each member uploads at most max_in_flight batches per this
many seconds, and the last slow answers arrive at most this long after the window opens."""


@dataclass
class Backlog:
    """A pre-produced input topic that several fresh groups drain."""

    settings: dict[str, str]
    topic: str
    partitions: list[int]
    count: int
    produced: Throughput


def produce_topic(bench: Bench, scenario: str, prefix: str, count: int) -> Backlog:
    """Create a scenario's topics and fill its input topic with `count` records (checked)."""
    settings = bench.settings(scenario)
    topic = settings["CONNECTOR_INPUT_TOPIC"]
    partitions = bench.partitions_for(count, mean_value_bytes(prefix))
    bench.create_topics(settings, partitions, DEFAULT_PARTITIONS)
    bench.say(f"producing {count:,} records to {topic} ({partitions} partitions)")
    produced = produce_backlog(bench.bootstrap, topic, item_values(prefix, count), partitions)
    stored = bench.inspector.count(topic)
    if stored != count:
        raise BenchError(f"{topic} holds {stored} records, {count} were produced")
    return Backlog(settings, topic, bench.inspector.partitions(topic), count, produced)


@dataclass
class UploadRun:
    processes: int
    steady: Throughput
    overall: Throughput
    cores: dict[str, float]
    sim_stats: dict[str, Any]
    exit_codes: list[int]
    profile_raw: Path | None = None
    stuck_commits: dict[int, tuple[int, int]] = field(default_factory=dict)
    """partition → (committed, end) when the group stopped committing short of the end although
    every item was created (the rate then runs on the simulator's items_created)."""
    peak_rss: dict[str, float] = field(default_factory=dict)
    """Each uploader process's peak resident memory (MiB), worker processes included."""

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
            "stuck_commits": {str(p): list(pair) for p, pair in self.stuck_commits.items()},
            "peak_rss_mib": {label: round(mib, 1) for label, mib in self.peak_rss.items()},
        }


def measure_upload(
    bench: Bench,
    backlog: Backlog,
    group: str,
    *,
    processes: int = 1,
    profile_rate: int | None = None,
    profile_mode: str = "gil",
    hold: bool = False,
    knobs: dict[str, Any] | None = None,
    workers: int = 1,
) -> UploadRun:
    """Reset the simulator, start `processes` uploaders in a fresh `group`, wait until the group
    has committed the whole topic, stop them (SIGTERM), and read the simulator's counts.

    The measured window starts at the first committed offset. With `hold`, the simulator
    answers slowly (`HOLD_LATENCY_SECONDS`) until every process holds partitions, and the window
    starts when it is set back to zero: several members then start on equal shares, instead of
    the first one draining alone while the others join.
    When every item was created but the committed offsets stop short of the end for
    `COMMIT_STALL_SECONDS`, the run ends there: the rate comes from the simulator's
    `items_created` and the stuck partitions are reported.
    Each process runs `workers` uploader processes (`CONNECTOR_WORKERS`): the group has
    `processes * workers` members, and the CPU window counts each worker process as
    `uploader-<i>-worker-<n>`."""
    bench.sim.reset()
    if knobs:  # the simulator's knobs for the whole run (`hold` sets latency apart)
        bench.sim.set_knobs(**knobs)
    if hold:
        bench.sim.set_knobs(latency=HOLD_LATENCY_SECONDS)
    settings = {**backlog.settings, "CONNECTOR_GROUP_ID": group, "CONNECTOR_WORKERS": str(workers)}
    offsets = GroupOffsets(bench.bootstrap, group, backlog.topic, bench.inspector)
    members = GroupMembers(bench.bootstrap, group, backlog.topic)
    expected = offsets.end
    procs = [bench.start("upload", settings, f"{group}-{i}") for i in range(processes)]
    committed = Progress(started=procs[0].started)
    created = Progress(started=procs[0].started)
    uploaders = {f"uploader-{i}": p.pid for i, p in enumerate(procs)}
    window = CpuWindow(labelled_processes(uploaders))  # the workers join when they exist
    profiler: Profiler | None = None
    since: list[int] = []  # index of the sample that opened the window
    last_move = [time.perf_counter(), 0]

    def window_opens(done: int) -> bool:
        if not hold:
            return done > 0
        if members.assigned() < processes * workers:
            return False
        bench.sim.set_knobs(latency=0.0)
        return True

    def finished() -> str | None:
        nonlocal profiler
        now = time.perf_counter()
        done = offsets.done()
        made = int(bench.sim.stats().get("items_created", 0))
        committed.record(done, now)
        created.record(made, now)
        if done != last_move[1]:
            last_move[:] = [now, done]
        if not since and done < expected and window_opens(done):
            if hold:  # the progress when the simulator answers at full speed again
                now = time.perf_counter()
                committed.record(offsets.done(), now)
                created.record(int(bench.sim.stats().get("items_created", 0)), now)
            since.append(len(committed.samples) - 1)
            if workers > 1:
                window.processes = labelled_processes(with_workers(uploaders))
            window.start()
            if profile_rate:
                profiler = bench.profiler(procs[0].pid, group, profile_rate, profile_mode)
        if done >= expected:
            return "committed"
        if made >= expected and now - last_move[0] > COMMIT_STALL_SECONDS:
            return "stalled"
        return None

    def alive() -> None:
        for proc in procs:
            proc.check_alive()

    try:
        outcome = wait_for(
            finished,
            timeout=max(180.0, expected / 1000),
            what=f"group {group} to commit {expected:,} offsets",
            guard=alive,
            interval=0.05,
        )
        window.stop()
        stuck = offsets.lagging() if outcome == "stalled" else {}
    finally:
        raw = profiler.stop() if profiler is not None else None
        peaks = {
            label: peak_rss_mib(process)
            for label, process in window.processes.items()
            if label.startswith("uploader-")
        }
        codes = [proc.terminate() for proc in procs]
        offsets.close()
    if not since:
        raise BenchError(f"the backlog was drained before the window opened ({group})")
    stats = bench.sim.stats()
    made = int(stats.get("items_created", 0))
    if made < expected:
        raise BenchError(f"committed {expected} offsets but the simulator created {made}")
    progress = created if stuck else committed
    start = progress.samples[since[0]]
    return UploadRun(
        processes, progress.steady(expected, start), progress.overall(expected),
        window.cores(), stats, codes, raw, stuck, peaks,
    )  # fmt: skip


def cpu_per_item(run: UploadRun) -> float:
    """Microseconds of the uploader processes' CPU (every thread) per item while draining."""
    cores = sum(v for k, v in run.cores.items() if k.startswith("uploader-"))
    return cores / run.steady.rate * 1e6


def median_run(runs: list[UploadRun]) -> UploadRun:
    return sorted(runs, key=lambda run: run.steady.rate)[len(runs) // 2]


def commit_rows(label: str, runs: list[UploadRun]) -> tuple[list[Row], list[str]]:
    """A row counting the runs whose group committed every offset, and a note per run whose
    commits stopped short of the end although every item was uploaded."""
    complete = sum(1 for run in runs if not run.stuck_commits)
    row = Row(f"{label}: runs whose group committed every offset", float(complete), "runs",
              "runs", float(len(runs)), "all", met=complete == len(runs))  # fmt: skip
    notes = [
        f"Run {n} ({run.processes} process(es)): every item was uploaded but the committed "
        "offsets stopped short for good (partition: committed/end "
        + ", ".join(f"{p}: {c:,}/{e:,}" for p, (c, e) in sorted(run.stuck_commits.items()))
        + f"), checked for {COMMIT_STALL_SECONDS:.0f}s after the last item: a restart would "
        "upload those records again. Its rate counts items created instead."
        for n, run in enumerate(runs, start=1)
        if run.stuck_commits
    ]
    return [row], notes


def run(bench: Bench) -> ScenarioResult:
    result = ScenarioResult(1, "Upload flow")
    count = bench.sizes.upload_items
    backlog = produce_topic(bench, SCENARIO, PREFIX, count)

    sample = min(bench.sizes.naive_sample, count)
    bench.say(f"baseline: naive bridge on {sample:,} records")
    bench.sim.reset()
    naive = naive_bridge(
        bench.bootstrap, bench.sim, topic=backlog.topic, partitions=backlog.partitions,
        group=bench.name(SCENARIO, "naive"), count=sample, timeout=300.0,
    )  # fmt: skip

    bodies = bulk_bodies(list(item_values(PREFIX, count)), BULK_ITEMS)
    consumed: list[Throughput] = []
    posted: list[Throughput] = []
    consume_cpu: list[float] = []  # µs of the harness's CPU per item, each round
    post_cpu: list[float] = []
    runs: list[UploadRun] = []
    for round_number in range(1, ROUNDS + 1):
        bench.say(f"round {round_number}/{ROUNDS}: raw consume, raw bulk POST, the uploader")
        cpu = time.process_time()
        progress = raw_consume(bench.bootstrap, backlog.topic, backlog.partitions, count, 120.0)
        consume_cpu.append((time.process_time() - cpu) / count * 1e6)
        consumed.append(progress.steady(count))
        bench.sim.reset()
        cpu = time.process_time()
        posted.append(raw_bulk_posts(bench.sim, bodies, BULK_ITEMS, IN_FLIGHT).steady(count))
        post_cpu.append((time.process_time() - cpu) / count * 1e6)
        runs.append(measure_upload(bench, backlog, bench.name(SCENARIO, f"g{round_number}")))
    del bodies

    raw_consume_rate = statistics.median(t.rate for t in consumed)
    raw_post_rate = statistics.median(t.rate for t in posted)
    measured = median_run(runs)
    rate = measured.steady.rate
    slower_name, slower = min(
        ("raw consume", raw_consume_rate), ("raw bulk POST", raw_post_rate),
        key=lambda pair: pair[1],
    )  # fmt: skip
    result.rows += [
        Row("upload: toloka-connector upload", rate, "items/s",
            f"slower raw baseline ({slower_name})", slower, ">= 0.50x", minimum_ratio=0.5),
        Row("upload: toloka-connector upload", rate, "items/s",
            "naive bridge", naive.rate, ">= 20x", minimum_ratio=20.0),
        Row("upload: raw batch consume (confluent-kafka)", raw_consume_rate, "items/s"),
        Row(f"upload: raw bulk POST (httpx, {IN_FLIGHT} in flight)", raw_post_rate, "items/s"),
        Row(f"upload: naive bridge ({sample:,}-record sample)", naive.rate, "items/s"),
        Row("upload: incl. process start", measured.overall.rate, "items/s", "steady", rate),
        Row("upload: CPU per item, toloka-connector upload", cpu_per_item(measured), "µs/item",
            "raw consume + raw bulk POST", statistics.median(consume_cpu)
            + statistics.median(post_cpu)),
        Row("upload: CPU per item, raw batch consume", statistics.median(consume_cpu), "µs/item"),
        Row("upload: CPU per item, raw bulk POST (client side)", statistics.median(post_cpu),
            "µs/item"),
    ]  # fmt: skip
    rows, notes = commit_rows("upload", runs)
    result.rows += rows
    result.notes += notes
    result.notes += [
        f"{count:,} records of {mean_value_bytes(PREFIX):.0f} bytes "
        f"({backlog.produced.rate:,.0f} items/s to produce) in {len(backlog.partitions)} "
        f"partitions; default settings (batch 1,000, linger 50 ms, {IN_FLIGHT} requests in "
        "flight); the rate runs from the first committed offset to the last (start-up apart: "
        "the 'incl. process start' row).",
        f"Medians of {ROUNDS} interleaved rounds: uploader "
        + ", ".join(f"{r.steady.rate:,.0f}" for r in runs)
        + "; raw consume "
        + ", ".join(f"{t.rate:,.0f}" for t in consumed)
        + "; raw bulk POST "
        + ", ".join(f"{t.rate:,.0f}" for t in posted)
        + " items/s.",
        "The raw consume sets fetch.queue.backoff.ms=0: with librdkafka's default (1 s) a "
        "batch consume of a finite backlog often stalls on its tail (170k instead of 1M "
        "items/s), which would make the target easier, not the baseline truer.",
        f"Simulator after the median run: {measured.sim_stats.get('items_created'):,} items "
        f"created, {measured.sim_stats.get('duplicate_creates')} duplicates; exit codes "
        f"{measured.exit_codes}.",
        "CPU cores used while draining (median run): "
        + ", ".join(f"{k} {v:.2f}" for k, v in measured.cores.items()),
    ]
    result.raw.update(
        records=count,
        partitions=len(backlog.partitions),
        produce=backlog.produced.as_json(),
        raw_consume=[t.as_json() for t in consumed],
        raw_bulk_post=[t.as_json() for t in posted],
        raw_consume_cpu_us_per_item=[round(x, 2) for x in consume_cpu],
        raw_bulk_post_cpu_us_per_item=[round(x, 2) for x in post_cpu],
        naive_bridge=naive.as_json(),
        connector=[r.as_json() for r in runs],
    )
    if bench.profiling:
        profile_uploader(bench, backlog, result, rate)
    return result


def profile_uploader(bench: Bench, backlog: Backlog, result: ScenarioResult, rate: float) -> None:
    """The Python CPU of the process (GIL holder) over `PROFILE_RUNS` drains, then the wall clock
    of the loop thread (busy or waiting) over `WALL_PROFILE_RUNS` more."""
    views = (
        ("gil", PROFILE_RUNS, "uploader CPU (scenario 1, toloka-connector upload; GIL holder"),
        ("wall", WALL_PROFILE_RUNS, "uploader loop thread wall clock (scenario 1; waits included"),
    )
    for mode, runs, title in views:
        bench.say(f"{runs} profiled drains of toloka-connector upload (py-spy, {mode})")
        profiled = [
            measure_upload(
                bench,
                backlog,
                bench.name(SCENARIO, f"p{mode}{n}"),
                profile_rate=PROFILE_RATE,
                profile_mode=mode,
            )
            for n in range(runs)
        ]
        raws = [run.profile_raw for run in profiled if run.profile_raw is not None]
        label = f"{title}, {len(raws)} drains at {PROFILE_RATE} Hz)"
        summary = bench.summary(raws, label, WALL_ROOT if mode == "wall" else None)
        median = statistics.median(run.steady.rate for run in profiled)
        result.raw[f"profiled_runs_{mode}"] = [run.as_json() for run in profiled]
        result.notes.append(
            f"Profiled drains ({mode}, py-spy attached): median {median:,.0f} items/s "
            f"({median / rate:.2f}x the unprofiled median)."
        )
        if summary is not None:
            if mode == "wall":
                summary.unit = "samples of the uploader's loop thread, busy or waiting"
            result.profiles.append(summary)
