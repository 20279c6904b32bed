"""Scenario 5, scale: two `toloka-connector upload` processes in one group versus one, each
run a fresh group draining the memory scenario's backlog, alternated over `ROUNDS` rounds,
medians reported.

Both measure the same way: the simulator answers slowly until every member holds partitions,
then at full speed, and the window opens at that moment, so two members start on equal shares
(with the embedded broker's zero initial rebalance delay the first member would otherwise drain
alone through the two rounds of a cooperative rebalance, ~6 s). The CPU each process used in
the window explains the gap to 2x: the uploaders, the simulator (one asyncio thread) and the
broker share the machine's cores.
"""

from __future__ import annotations

import os
import statistics

from benchmarks.context import Bench
from benchmarks.procs import MACHINE
from benchmarks.report import Row, ScenarioResult
from benchmarks.scenarios.memory import big_backlog
from benchmarks.scenarios.upload import UploadRun, commit_rows, measure_upload, median_run

SCENARIO = "s5"
ROUNDS = 3


def _cores(cores: dict[str, float]) -> str:
    return ", ".join(f"{label} {used:.2f}" for label, used in cores.items())


def run(bench: Bench) -> ScenarioResult:
    result = ScenarioResult(5, "Scale: two uploaders in one group")
    if bench.is_mock:
        result.skipped = (
            "the mock cluster rebalances a group in ~45 s and does not describe groups, so two "
            "members never start on equal shares; run with --broker kafka"
        )
        return result
    backlog = big_backlog(bench)
    ones: list[UploadRun] = []
    twos: list[UploadRun] = []
    for round_number in range(1, ROUNDS + 1):
        bench.say(f"round {round_number}/{ROUNDS}: one uploader")
        ones.append(
            measure_upload(bench, backlog, bench.name(SCENARIO, f"one{round_number}"), hold=True)
        )
        bench.say(f"round {round_number}/{ROUNDS}: two uploaders in one group")
        twos.append(
            measure_upload(
                bench, backlog, bench.name(SCENARIO, f"two{round_number}"), processes=2, hold=True
            )
        )
    one_rate = statistics.median(run.steady.rate for run in ones)
    two_rate = statistics.median(run.steady.rate for run in twos)
    one, two = median_run(ones), median_run(twos)
    result.rows += [
        Row("scale: 2 uploader processes, one group", two_rate, "items/s",
            "1 uploader process", one_rate, "2x ideal"),
    ]  # fmt: skip
    rows, notes = commit_rows("scale", ones + twos)
    result.rows += rows
    result.notes += notes
    total_one = sum(v for k, v in one.cores.items() if k != MACHINE)
    total_two = sum(v for k, v in two.cores.items() if k != MACHINE)
    uploaders_two = sum(v for k, v in two.cores.items() if k.startswith("uploader"))
    result.notes += [
        f"{backlog.count:,} records in {len(backlog.partitions)} partitions, drained by a fresh "
        f"group each time; {os.cpu_count()} cores on this machine. Medians of {ROUNDS} "
        "alternating rounds: one uploader "
        + ", ".join(f"{r.steady.rate:,.0f}" for r in ones)
        + "; two uploaders "
        + ", ".join(f"{r.steady.rate:,.0f}" for r in twos)
        + " items/s.",
        f"Cores used, one uploader: {_cores(one.cores)} (ours {total_one:.2f}).",
        f"Cores used, two uploaders: {_cores(two.cores)} (ours {total_two:.2f}; the two "
        f"uploaders {uploaders_two:.2f}).",
        "The simulator serves every request on one asyncio thread and the broker, the "
        "simulator and the uploaders share the cores: where the machine's busy cores reach "
        "the core count, the machine is the limit, not the group; the machine figure minus "
        "ours is other work on a shared machine.",
    ]
    result.raw.update(
        one=[r.as_json() for r in ones], two=[r.as_json() for r in twos], cpu_count=os.cpu_count()
    )
    return result
