"""`python -m benchmarks`: start a broker and the simulator, run the scenarios one after the
other, print the table, write docs/benchmarks.md and docs/benchmarks.json.

Scenarios run in order, one at a time (5, scale, drains the backlog 4 produced, with groups of
its own). A scenario that cannot be measured is reported as
failed and the others still run (exit code 1). `--strict` also exits 3 when a target is missed.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import resource
import shlex
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from confluent_kafka import KafkaException

from benchmarks import document, machine
from benchmarks.context import FULL, QUICK, Bench
from benchmarks.errors import BenchError
from benchmarks.report import ScenarioResult, read_json, terminal_table, write_json
from benchmarks.scenarios import (
    latency,
    latency_bound,
    memory,
    poll,
    rate_limit,
    scale,
    upload,
    workers,
)
from connector.devtools.brokers.base import BrokerKind
from connector.devtools.brokers.start import default_kind, start_broker
from connector.errors import ConnectorError
from connector.simulator.process import start_simulator_process
from testkit.processes import ProcessExitedError
from testkit.waiting import WaitTimeoutError

ROOT = Path(__file__).resolve().parent.parent
API_KEY = "bench-key"
PROJECT_ID = "bench-project"
EXECUTION_ORDER = (1, 2, 3, 4, 5, 6, 7, 8)
SCENARIOS: dict[int, tuple[str, Callable[[Bench], ScenarioResult]]] = {
    1: ("Upload flow", upload.run),
    2: ("Poll flow", poll.run),
    3: ("Latency at a steady rate", latency.run),
    4: ("Memory under back-pressure", memory.run),
    5: ("Scale: two uploaders in one group", scale.run),
    6: ("Rate limit: adaptive in-flight requests", rate_limit.run),
    7: ("Latency-bound: 250 ms per API answer", latency_bound.run),
    8: ("Workers: CONNECTOR_WORKERS=2 in one upload command", workers.run),
}
EXPECTED_FAILURES = (
    BenchError,
    ConnectorError,
    KafkaException,
    OSError,
    RuntimeError,
    WaitTimeoutError,
    ProcessExitedError,
)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument(
        "--broker",
        choices=(BrokerKind.KAFKA.value, BrokerKind.MOCK.value),
        default=None,
        help="real Apache Kafka (default where java and mvn exist) or librdkafka's mock cluster",
    )
    parser.add_argument("--quick", action="store_true", help="smaller sizes: a smoke run")
    parser.add_argument(
        "--only", default="", help="comma-separated scenario numbers (default: all)"
    )
    parser.add_argument("--no-profile", action="store_true", help="skip the py-spy runs")
    parser.add_argument(
        "--output-dir",
        type=Path,
        default=None,
        help="where benchmarks.md/.json go (default: docs/ for a full run; a --quick run "
        "writes nothing unless this is given)",
    )
    parser.add_argument("--keep-logs", action="store_true", help="keep the logs and profiles")
    parser.add_argument("--strict", action="store_true", help="exit 3 when a target is missed")
    parser.add_argument(
        "--render-only",
        action="store_true",
        help="measure nothing: rebuild benchmarks.md from benchmarks.json in the output dir "
        "(after editing benchmarks/analysis.md)",
    )
    return parser.parse_args(argv)


def chosen(only: str) -> list[int]:
    if not only.strip():
        return list(EXECUTION_ORDER)
    wanted = {int(part) for part in only.split(",") if part.strip()}
    unknown = wanted - set(SCENARIOS)
    if unknown:
        raise SystemExit(f"--only: no scenario {sorted(unknown)} (there are 1-{max(SCENARIOS)})")
    return [number for number in EXECUTION_ORDER if number in wanted]


def command_line(argv: list[str] | None) -> str:
    python = Path(sys.executable)
    try:
        shown = str(python.relative_to(ROOT))
    except ValueError:
        shown = str(python)
    return shlex.join([shown, "-m", "benchmarks", *(sys.argv[1:] if argv is None else argv)])


def run_scenario(bench: Bench, number: int) -> ScenarioResult:
    title, scenario = SCENARIOS[number]
    bench.say(f"scenario {number}: {title}")
    started = time.perf_counter()
    try:
        result = scenario(bench)
    except EXPECTED_FAILURES as error:
        bench.say(f"scenario {number} failed: {error}")
        traceback.print_exc(file=sys.stderr)
        result = ScenarioResult(number, title, error=" ".join(str(error).split())[:300])
    result.seconds = time.perf_counter() - started
    bench.say(f"scenario {number} took {result.seconds:.0f}s")
    return result


def peak_rss_mib() -> float:
    """The harness's own peak resident memory (ru_maxrss is in KiB on Linux)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def render_only(output: Path) -> int:
    header, results = read_json(output / "benchmarks.json")
    (output / "benchmarks.md").write_text(document.render(header, results) + "\n")
    print(f"rebuilt {output / 'benchmarks.md'} from {output / 'benchmarks.json'}")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.render_only:
        return render_only(args.output_dir or ROOT / "docs")
    numbers = chosen(args.only)
    kind = BrokerKind(args.broker) if args.broker else default_kind()
    output = args.output_dir or (None if args.quick else ROOT / "docs")
    started = time.perf_counter()
    header: dict[str, Any] = {
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "command": command_line(argv),
        "quick": args.quick,
        "machine": machine.describe(ROOT),
    }
    workdir = Path(tempfile.mkdtemp(prefix="toloka-bench-"))
    results: list[ScenarioResult] = []
    print(f"logs and profiles in {workdir}", file=sys.stderr)
    with start_broker(kind) as broker:
        header["broker"] = {
            BrokerKind.KAFKA: "real Apache Kafka (one KRaft node, from Maven Central's jars)",
            BrokerKind.MOCK: "librdkafka's mock cluster",
        }.get(kind, str(kind))
        with start_simulator_process(api_key=API_KEY, project_id=PROJECT_ID, seed=1) as sim:
            bench = Bench(broker, sim, QUICK if args.quick else FULL, workdir,
                          profile=not args.no_profile)  # fmt: skip
            bench.started = started
            bench.say(f"broker {broker.bootstrap_servers} ({kind}), simulator {sim.base_url}")
            if not bench.profiling and not args.no_profile:
                bench.say("py-spy not found: no profiles (pip install py-spy)")
            try:
                results = [run_scenario(bench, number) for number in numbers]
            finally:
                bench.close()
    results.sort(key=lambda result: result.number)
    header["seconds"] = round(time.perf_counter() - started, 1)
    header["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
    header["harness_peak_rss_mib"] = round(peak_rss_mib(), 1)
    header["sizes"] = dataclasses.asdict(QUICK if args.quick else FULL)
    print(terminal_table(results))
    print(f"\n{header['seconds']:.0f}s in all")
    if output is not None:
        output.mkdir(parents=True, exist_ok=True)
        (output / "benchmarks.md").write_text(document.render(header, results) + "\n")
        write_json(output / "benchmarks.json", header, results)
        print(f"wrote {output / 'benchmarks.md'} and {output / 'benchmarks.json'}")
    if not args.keep_logs:
        for path in workdir.iterdir():
            path.unlink()
        workdir.rmdir()
    if any(result.error for result in results):
        return 1
    missed = any(row.met is False for result in results for row in result.rows)
    return 3 if args.strict and missed else 0
