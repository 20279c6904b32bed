"""Scenario 2, the poll flow: finished items seeded in the simulator, published by
`toloka-connector poll` in Kafka transactions.

Completion is a read_committed consumer counting every item on the output topic (distinct keys
checked). Baseline, same run: the very records it read (keys, values, headers) produced raw in
transactions of the poller's page size to a topic of as many partitions.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks.context import Bench
from benchmarks.errors import BenchError
from benchmarks.kafka_io import TopicReader, transactional_produce
from benchmarks.procs import CpuWindow, labelled_processes
from benchmarks.profiling import Profiler
from benchmarks.progress import Throughput
from benchmarks.report import Row, ScenarioResult
from testkit.waiting import wait_for

PAGE_SIZE = 1000  # CONNECTOR_PAGE_SIZE's default
OUTPUT_PARTITIONS = 6  # as `check --create-topics` makes the output topic
RESULT_BYTES = 450  # an output record of the text moderation app, roughly
ROUNDS = 2
PROFILE_RATE = 100
WALL_ROOT = "PollerLoop.run"


@dataclass
class PollRun:
    steady: Throughput
    overall: Throughput
    cores: dict[str, float]
    exit_code: int
    reader: TopicReader
    profile_raw: Path | None

    def as_json(self) -> dict[str, Any]:
        return {
            "steady": self.steady.as_json(),
            "overall_including_start": self.overall.as_json(),
            "cores_used": self.cores,
            "exit_code": self.exit_code,
        }


def output_partitions(bench: Bench, count: int) -> int:
    if bench.is_mock:
        return bench.partitions_for(count, RESULT_BYTES)
    return OUTPUT_PARTITIONS


def measure_poll(
    bench: Bench,
    scenario: str,
    count: int,
    *,
    keep: bool,
    profile_rate: int | None = None,
    mode: str = "gil",
    knobs: dict[str, Any] | None = None,
    overrides: dict[str, str] | None = None,
) -> PollRun:
    """Reset the simulator, seed `count` finished items, set `knobs`, run the poller (with the
    settings `overrides`) on fresh topics until a read_committed reader has them all, stop it
    (SIGTERM)."""
    settings = bench.settings(scenario, CONNECTOR_PAGE_SIZE=str(PAGE_SIZE), **(overrides or {}))
    bench.create_topics(settings, 1, output_partitions(bench, count))
    output = settings["CONNECTOR_OUTPUT_TOPIC"]
    bench.sim.reset()
    bench.sim.seed(count)
    if knobs:
        bench.sim.set_knobs(**knobs)
    reader = TopicReader(
        bench.bootstrap, output, bench.inspector.partitions(output), keep=keep
    ).start()
    proc = bench.start("poll", settings, scenario)
    reader.progress.started = proc.started
    window = CpuWindow(labelled_processes({"poller": proc.pid}))
    profiler: Profiler | None = None
    started: list[float] = []

    def published() -> bool:
        nonlocal profiler
        if reader.count and not started:  # start-up is over: measure and profile from here
            started.append(time.perf_counter())
            window.start()
            if profile_rate:
                profiler = bench.profiler(proc.pid, scenario, profile_rate, mode)
        return reader.count >= count

    try:
        wait_for(
            published,
            timeout=max(180.0, count / 500),
            what=f"{count:,} results on {output}",
            guard=proc.check_alive,
        )
        window.stop()
    finally:
        raw = profiler.stop() if profiler is not None else None
        code = proc.terminate()
        reader.stop()
    if reader.count != count:
        raise BenchError(f"{output} holds {reader.count} results for {count} items")
    if keep and len({record.key for record in reader.kept}) != count:
        raise BenchError(f"{output}: some of the {count} results were published twice")
    progress = reader.progress
    return PollRun(
        progress.steady(count), progress.overall(count), window.cores(), code, reader, raw
    )


def run(bench: Bench) -> ScenarioResult:
    result = ScenarioResult(2, "Poll flow")
    count = bench.sizes.poll_items
    partitions = output_partitions(bench, count)
    runs: list[PollRun] = []
    raws: list[Throughput] = []
    raw_cpu: list[float] = []  # µs of the harness's CPU per item, each round
    mean_bytes = 0.0
    for round_number in range(1, ROUNDS + 1):
        bench.say(f"round {round_number}/{ROUNDS}: toloka-connector poll, {count:,} items")
        measured = measure_poll(bench, f"s2r{round_number}", count, keep=True)
        runs.append(measured)
        bench.say(f"round {round_number}/{ROUNDS}: raw transactional produce")
        raw_topic = bench.name(f"s2r{round_number}", "raw")
        bench.create_topic(raw_topic, partitions)
        records = measured.reader.kept
        mean_bytes = sum(len(record.value) for record in records) / len(records)
        cpu = time.process_time()
        raws.append(
            transactional_produce(bench.bootstrap, raw_topic, records, PAGE_SIZE).steady(count)
        )
        raw_cpu.append((time.process_time() - cpu) / count * 1e6)
        del records
        measured.reader.kept.clear()

    median = sorted(runs, key=lambda run: run.steady.rate)[len(runs) // 2]
    rate = statistics.median(run.steady.rate for run in runs)
    raw_rate = statistics.median(t.rate for t in raws)
    result.rows += [
        Row("poll: toloka-connector poll", rate, "items/s",
            f"raw transactional produce ({PAGE_SIZE:,}/txn)", raw_rate, ">= 0.50x",
            minimum_ratio=0.5),
        Row("poll: incl. process start", median.overall.rate, "items/s", "steady",
            median.steady.rate),
        Row("poll: CPU per item, toloka-connector poll",
            median.cores.get("poller", 0.0) / median.steady.rate * 1e6, "µs/item",
            "raw transactional produce", statistics.median(raw_cpu)),
    ]  # fmt: skip
    result.notes += [
        f"{count:,} finished items seeded; page size {PAGE_SIZE:,}; output topic of "
        f"{partitions} partitions; results of {mean_bytes:.0f} bytes on average; rates run "
        "from the first result a read_committed consumer sees to the last.",
        f"Medians of {ROUNDS} interleaved rounds: poller "
        + ", ".join(f"{r.steady.rate:,.0f}" for r in runs)
        + "; raw transactional produce "
        + ", ".join(f"{t.rate:,.0f}" for t in raws)
        + " items/s.",
        f"Every result read exactly once (distinct keys = {count:,}); poller exit codes "
        f"{[r.exit_code for r in runs]}.",
        "CPU cores used while publishing (median run): "
        + ", ".join(f"{k} {v:.2f}" for k, v in median.cores.items()),
    ]
    result.raw.update(
        items=count,
        page_size=PAGE_SIZE,
        output_partitions=partitions,
        mean_result_bytes=round(mean_bytes),
        connector=[r.as_json() for r in runs],
        raw_transactional_produce=[t.as_json() for t in raws],
        raw_transactional_produce_cpu_us_per_item=[round(x, 2) for x in raw_cpu],
    )
    if bench.profiling:
        profile_poller(bench, result, count, rate)
    return result


def profile_poller(bench: Bench, result: ScenarioResult, count: int, rate: float) -> None:
    """Two profiled runs: the Python CPU (GIL holder), and the wall clock of the loop thread."""
    views = (
        ("gil", f"poller CPU (scenario 2, toloka-connector poll; GIL holder, {PROFILE_RATE} Hz)"),
        ("wall", f"poller loop thread wall clock (scenario 2; waits included, {PROFILE_RATE} Hz)"),
    )
    for mode, label in views:
        bench.say(f"profiled run of toloka-connector poll (py-spy, {mode})")
        profiled = measure_poll(
            bench, f"s2p{mode}", count, keep=False, profile_rate=PROFILE_RATE, mode=mode
        )
        result.raw[f"profiled_run_{mode}"] = profiled.as_json()
        result.notes.append(
            f"Profiled run ({mode}, py-spy attached): {profiled.steady.rate:,.0f} items/s "
            f"({profiled.steady.rate / rate:.2f}x the unprofiled median)."
        )
        raws = [profiled.profile_raw] if profiled.profile_raw else []
        only_under = WALL_ROOT if mode == "wall" else None
        summary = bench.summary(raws, label, only_under)
        if summary is not None:
            if mode == "wall":
                summary.unit = "samples of the poller's loop thread, busy or waiting"
            result.profiles.append(summary)
