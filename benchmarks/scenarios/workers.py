"""Scenario 8, worker processes: one `toloka-connector upload` with `CONNECTOR_WORKERS=2` (two
uploader processes of one group under one command) against one with `CONNECTOR_WORKERS=1`, on
the same backlog and the zero-latency simulator (the CPU-bound case), alternated over `ROUNDS`
rounds, medians reported.

Both measure as scenario 5 does: the simulator answers slowly until every member holds
partitions, then at full speed, when the window opens. CPU per item counts every uploader
process (the workers too); the simulator serves every request on one asyncio thread and the
broker runs beside them, so the cores they use are reported next to it: on a machine with two
cores the three share them, and 2x is out of reach there whatever the connector does.
"""

from __future__ import annotations

import os
import statistics

from benchmarks.context import Bench
from benchmarks.procs import MACHINE
from benchmarks.report import Row, ScenarioResult
from benchmarks.scenarios.upload import (
    UploadRun,
    commit_rows,
    cpu_per_item,
    measure_upload,
    median_run,
    produce_topic,
)

SCENARIO = "s8"
PREFIX = "wk"
ROUNDS = 3
PEAK_RSS_TARGET_MIB = 300.0


def _cores(run: UploadRun) -> str:
    return ", ".join(f"{label} {used:.2f}" for label, used in run.cores.items())


def _peak(runs: list[UploadRun]) -> float:
    return max((mib for run in runs for mib in run.peak_rss.values()), default=0.0)


def run(bench: Bench) -> ScenarioResult:
    result = ScenarioResult(8, "Workers: CONNECTOR_WORKERS=2 in one upload command")
    if bench.is_mock:
        result.skipped = (
            "the mock cluster rebalances a group in ~45 s and does not describe groups, so two "
            "members never start on equal shares; run with --broker kafka"
        )
        return result
    backlog = produce_topic(bench, SCENARIO, PREFIX, bench.sizes.upload_items)
    ones: list[UploadRun] = []
    twos: list[UploadRun] = []
    for round_number in range(1, ROUNDS + 1):
        bench.say(f"round {round_number}/{ROUNDS}: upload --workers 1")
        ones.append(
            measure_upload(bench, backlog, bench.name(SCENARIO, f"n1r{round_number}"), hold=True)
        )
        bench.say(f"round {round_number}/{ROUNDS}: upload --workers 2")
        twos.append(
            measure_upload(
                bench, backlog, bench.name(SCENARIO, f"n2r{round_number}"), hold=True, workers=2
            )
        )
    one, two = median_run(ones), median_run(twos)
    one_rate = statistics.median(r.steady.rate for r in ones)
    two_rate = statistics.median(r.steady.rate for r in twos)
    peak = max(_peak(ones), _peak(twos))
    result.rows += [
        Row("workers: upload --workers 2", two_rate, "items/s",
            "upload --workers 1", one_rate, "2x ideal"),
        Row("workers: CPU per item, --workers 2 (both processes)", cpu_per_item(two), "µs/item",
            "--workers 1", cpu_per_item(one)),
        Row("workers: simulator cores, --workers 2", two.cores.get("simulator", 0.0), "cores",
            "--workers 1", one.cores.get("simulator", 0.0)),
        Row("workers: peak RSS of any uploader process", peak, "MiB",
            target="< 300 MiB", met=peak < PEAK_RSS_TARGET_MIB),
    ]  # fmt: skip
    rows, notes = commit_rows("workers", ones + twos)
    result.rows += rows
    result.notes += notes
    result.notes += [
        f"{backlog.count:,} records in {len(backlog.partitions)} partitions, drained by a fresh "
        f"group each time; {os.cpu_count()} cores on this machine. Medians of {ROUNDS} "
        "alternating rounds: --workers 1 "
        + ", ".join(f"{r.steady.rate:,.0f}" for r in ones)
        + "; --workers 2 "
        + ", ".join(f"{r.steady.rate:,.0f}" for r in twos)
        + " items/s.",
        f"Cores used, --workers 1 (median run): {_cores(one)}.",
        f"Cores used, --workers 2 (median run): {_cores(two)}.",
        "Peak RSS per uploader process (median runs): "
        + ", ".join(f"{k} {v:.0f} MiB" for k, v in {**one.peak_rss, **two.peak_rss}.items())
        + ".",
        f"Where '{MACHINE}' reaches the core count, the machine is the limit: the simulator, "
        "the broker and the uploaders share the cores.",
    ]
    result.raw.update(
        one=[r.as_json() for r in ones], two=[r.as_json() for r in twos], cpu_count=os.cpu_count()
    )
    return result
