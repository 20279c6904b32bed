"""Scenario 5, scale: two `toloka-connector upload` processes in one group versus one, on the
upload scenario's backlog (each run a fresh group, back to back).

The CPU each process used while draining explains the gap to 2x: the uploaders, the simulator
(one asyncio thread) and the broker share the machine's cores.
"""

from __future__ import annotations

import os

from benchmarks.context import Bench
from benchmarks.report import Row, ScenarioResult
from benchmarks.scenarios.upload import SCENARIO, measure_upload, upload_backlog


def _cores(cores: dict[str, float]) -> str:
    return ", ".join(f"{label} {used:.2f}" for label, used in cores.items())


def run(bench: Bench) -> ScenarioResult:
    result = ScenarioResult(5, "Scale: two uploaders in one group")
    backlog = upload_backlog(bench)
    bench.say("one uploader")
    one = measure_upload(bench, backlog, bench.name(SCENARIO, "scale-one"), processes=1)
    bench.say("two uploaders in one group")
    two = measure_upload(bench, backlog, bench.name(SCENARIO, "scale-two"), processes=2)
    result.rows += [
        Row("scale: 2 uploader processes, one group", two.steady.rate, "items/s",
            "1 uploader process", one.steady.rate, "2x ideal"),
    ]  # fmt: skip
    total_one = sum(v for k, v in one.cores.items())
    total_two = sum(v for k, v in two.cores.items())
    sim_two = two.cores.get("simulator", 0.0)
    result.notes += [
        f"{backlog.count:,} records in {len(backlog.partitions)} partitions; "
        f"{os.cpu_count()} cores on this machine.",
        f"Cores used, one uploader: {_cores(one.cores)} (total {total_one:.2f}).",
        f"Cores used, two uploaders: {_cores(two.cores)} (total {total_two:.2f}).",
        f"The simulator serves every request on one asyncio thread: {sim_two:.2f} of a core "
        "with two uploaders. Where the total is near the core count, the machine is the limit, "
        "not the group.",
        "The second member joins a group that is already consuming: one cooperative rebalance "
        "falls into the measured window.",
    ]
    result.raw.update(one=one.as_json(), two=two.as_json(), cpu_count=os.cpu_count())
    return result
