"""Scenario 2, the poll flow: finished items seeded in the simulator, published by
`toloka-connector poll` in Kafka transactions.

Completion is a read_committed consumer counting every item on the output topic (distinct keys
checked). Baseline, same run: the very records it read (keys, values, headers) produced raw in
transactions of the poller's page size to a topic of as many partitions.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from benchmarks.context import Bench
from benchmarks.errors import BenchError
from benchmarks.kafka_io import TopicReader, transactional_produce
from benchmarks.procs import CpuWindow, labelled_processes
from benchmarks.profiling import Profiler, ProfileSummary
from benchmarks.progress import Progress, Throughput
from benchmarks.report import Row, ScenarioResult
from benchmarks.waiting import wait_until

PAGE_SIZE = 1000  # CONNECTOR_PAGE_SIZE's default
OUTPUT_PARTITIONS = 6  # as `check --create-topics` makes the output topic
RESULT_BYTES = 450  # an output record of the text moderation app, roughly


@dataclass
class PollRun:
    progress: Progress
    steady: Throughput
    overall: Throughput
    cores: dict[str, float]
    exit_code: int
    reader: TopicReader
    profile: ProfileSummary | None

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
    bench: Bench, scenario: str, count: int, *, keep: bool, profile_label: str | None = None
) -> PollRun:
    """Reset the simulator, seed `count` finished items, run the poller on fresh topics until a
    read_committed reader has them all, stop it (SIGTERM)."""
    settings = bench.settings(scenario, CONNECTOR_PAGE_SIZE=str(PAGE_SIZE))
    bench.create_topics(settings, 1, output_partitions(bench, count))
    output = settings["CONNECTOR_OUTPUT_TOPIC"]
    bench.sim.reset()
    bench.sim.seed(count)
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
            if profile_label:
                profiler = bench.profiler(proc.pid, scenario)
        return reader.count >= count

    try:
        wait_until(
            published,
            timeout=max(180.0, count / 500),
            what=f"{count:,} results on {output}",
            guard=proc.check_alive,
        )
        window.stop()
        summary = bench.summary(profiler, profile_label) if profile_label else None
    finally:
        code = proc.stop()
        reader.stop()
    if reader.count != count:
        raise BenchError(f"{output} holds {reader.count} results for {count} items")
    if keep and len({record.key for record in reader.kept}) != count:
        raise BenchError(f"{output}: some of the {count} results were published twice")
    progress = reader.progress
    return PollRun(
        progress, progress.steady(count), progress.overall(count), window.cores(), code,
        reader, summary,
    )  # fmt: skip


def run(bench: Bench) -> ScenarioResult:
    result = ScenarioResult(2, "Poll flow")
    count = bench.sizes.poll_items
    bench.say(f"toloka-connector poll: {count:,} seeded items")
    measured = measure_poll(bench, "s2", count, keep=True)
    records = measured.reader.kept

    bench.say("baseline: raw transactional produce")
    raw_topic = bench.name("s2", "raw")
    partitions = output_partitions(bench, count)
    bench.create_topic(raw_topic, partitions)
    raw = transactional_produce(bench.bootstrap, raw_topic, records, PAGE_SIZE).steady(count)
    stored = bench.inspector.count(raw_topic)
    mean_bytes = sum(len(record.value) for record in records) / len(records)
    del records
    measured.reader.kept.clear()

    rate = measured.steady.rate
    result.rows += [
        Row("poll: toloka-connector poll", rate, "items/s",
            f"raw transactional produce ({PAGE_SIZE:,}/txn)", raw.rate, "≥ 0.50x",
            minimum_ratio=0.5),
        Row("poll: incl. process start", measured.overall.rate, "items/s", "steady", rate),
    ]  # fmt: skip
    result.notes += [
        f"{count:,} finished items seeded; page size {PAGE_SIZE:,}; output topic of "
        f"{partitions} partitions; results of {mean_bytes:.0f} bytes on average; rates run "
        "from the first result a read_committed consumer sees to the last.",
        f"Every result read exactly once (distinct keys = {count:,}); poller exit code "
        f"{measured.exit_code}.",
        "CPU cores used while publishing: "
        + ", ".join(f"{k} {v:.2f}" for k, v in measured.cores.items()),
        f"Raw baseline topic holds {stored:,} offsets (records plus one commit marker per "
        "partition and transaction).",
    ]
    result.raw.update(
        items=count,
        page_size=PAGE_SIZE,
        output_partitions=partitions,
        mean_result_bytes=round(mean_bytes),
        connector=measured.as_json(),
        raw_transactional_produce=raw.as_json(),
    )
    if bench.profiling:
        bench.say("profiled run of toloka-connector poll (py-spy)")
        profiled = measure_poll(
            bench, "s2p", count, keep=False,
            profile_label="poller (scenario 2, toloka-connector poll)",
        )  # fmt: skip
        result.raw["profiled_run"] = profiled.as_json()
        result.notes.append(
            f"Profiled run (py-spy attached, 100 Hz): {profiled.steady.rate:,.0f} items/s "
            f"({profiled.steady.rate / rate:.2f}x the unprofiled run)."
        )
        if profiled.profile is not None:
            result.profiles.append(profiled.profile)
    return result
