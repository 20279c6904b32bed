"""Poller faults (issue 11), phases of one run with two `toloka-connector run` instances and a
steady producer:

- slow listings: every GET takes longer than CONNECTOR_LEADER_TIMEOUT_SECONDS; the live leader
  must keep its leadership (no take-over during the phase);
- broker frozen: SIGSTOP for longer than CONNECTOR_TRANSACTION_TIMEOUT_SECONDS, twice, across
  whatever transaction is open; publishing must resume (no wedged leader);
- bulky outputs: 60 kB outputs make pages larger than CONNECTOR_API_MAX_RESPONSE_BYTES (pages
  shrink, then grow back), and 1.2 MB outputs make results larger than the output topic accepts
  (each is dead-lettered as result_too_large, the others flow on).

Judged like the chaos runs, a result_too_large dead letter standing for its item's result.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from connector.devtools.brokers.base import Capability
from connector.simulator.process import start_simulator_process
from testkit.brokers import ControllableBroker
from testkit.kafka import headers_of, read_all
from testkit.processes import ConnectorProcess
from testkit.scenarios.setup import (
    INPUT_PARTITIONS,
    LEADER_TIMEOUT_SECONDS,
    MAX_RECORD_BYTES,
    connector_environ,
    mark,
    scenario_topics,
    wait_for_completion,
)
from testkit.scenarios.verdict import KillMark, Verdict, creations_by_key, judge
from testkit.scenarios.workload import SteadyProducer
from testkit.waiting import wait_for

TRANSACTION_TIMEOUT_SECONDS = LEADER_TIMEOUT_SECONDS / 2  # the most the settings allow
FREEZE_SECONDS = TRANSACTION_TIMEOUT_SECONDS + 3
RESPONSE_LIMIT_BYTES = 2_000_000
PHASE_SECONDS = 15.0
CALM = {"read_latency": 0.0, "bulky_output_bytes": 0, "bulky_output_ratio": 1.0}
PHASES: dict[str, dict[str, Any]] = {
    "slow listings": {"read_latency": LEADER_TIMEOUT_SECONDS * 1.5},
    "bulky outputs": {"bulky_output_bytes": 60_000},
    "results too large": {"bulky_output_bytes": 1_200_000, "bulky_output_ratio": 0.05},
}
_UNREADABLE = re.compile(
    r"^toloka_connector_unreadable_pages_total(?:\{[^}]*\})? (\S+)$", re.MULTILINE
)
"""Its samples, whatever their labels (one per app project)."""


@dataclass
class PollerFaultsOutcome:
    verdict: Verdict
    broker_kind: str
    takeovers_while_slow: int
    freezes: int
    too_large: int
    unreadable_pages: float
    crashes: list[str] = field(default_factory=list)
    exit_codes: list[int] = field(default_factory=list)

    def failures(self) -> list[str]:
        v = self.verdict
        found = []
        if v.lost or v.unknown or v.unattributed():
            found.append(
                f"lost {v.lost_results[:5]} {v.lost_dead_letters[:5]}, unknown "
                f"{v.unknown_results[:5]} {v.unknown_dead_letters[:5]}, wrong reasons "
                f"{v.wrong_reasons[:5]}, bad values {v.results_without_valid_json}, unexplained "
                f"repeats {v.repeated_uploads_by_cause} {v.repeated_results_by_cause} "
                f"{v.repeated_dead_letters_by_cause}"
            )
        if v.repeated_results and self.broker_kind != "mock":
            found.append(f"{v.repeated_results} repeated results for read_committed readers")
        if self.takeovers_while_slow:
            found.append(f"{self.takeovers_while_slow} take-overs while the listings were slow")
        if not self.too_large or not self.unreadable_pages:
            found.append("the bulky phases did not exercise the dead letters and the page sizes")
        if self.crashes or any(code != 0 for code in self.exit_codes):
            found.append(f"crashes {self.crashes}, exit codes after SIGTERM {self.exit_codes}")
        return found

    def summary(self) -> str:
        v = self.verdict
        return (
            f"| {v.valid + v.invalid} ({v.invalid}) | {self.takeovers_while_slow} "
            f"| {self.freezes} x {FREEZE_SECONDS} s | {self.unreadable_pages:.0f} "
            f"| {self.too_large} | {v.lost} | {v.repeated_results} "
            f"| {'ok' if not self.failures() else 'FAILED'} |"
        )


TABLE_HEAD = (
    "| items (invalid) | take-overs while listings were slower than the leader timeout "
    "| broker freezes across transactions | pages too large, asked again smaller "
    "| results too large, dead-lettered | lost | repeated results | verdict |\n"
    "|---|---|---|---|---|---|---|---|"
)


def run_poller_faults(
    broker: ControllableBroker, workdir: Path, *, seed: int
) -> PollerFaultsOutcome:
    workdir.mkdir(parents=True, exist_ok=True)
    tag = f"poller-faults-{seed}-{int(time.time())}"
    topics = scenario_topics(broker, tag)
    sim = start_simulator_process(api_key=f"faults-{seed}", project_id="poller-faults", seed=seed)
    sim.set_knobs(processing_delay=0.3, processing_jitter=0.5)
    environ = {
        **connector_environ(sim, broker.bootstrap_servers, topics, tag),
        "CONNECTOR_TRANSACTION_TIMEOUT_SECONDS": str(TRANSACTION_TIMEOUT_SECONDS),
        "CONNECTOR_API_MAX_RESPONSE_BYTES": str(RESPONSE_LIMIT_BYTES),
    }
    instances = [ConnectorProcess(["run"], environ, workdir / "instance-1.log")]
    producer = SteadyProducer(
        broker.bootstrap_servers, topics["input"], rate=20.0, count=10**7, seed=seed,
        max_record_bytes=MAX_RECORD_BYTES, partitions=INPUT_PARTITIONS,
    )  # fmt: skip
    freezes = 0
    marks: list[KillMark] = []
    try:
        wait_for(instances[0].is_leader, "the first instance leads", 60)
        instances.append(ConnectorProcess(["run"], environ, workdir / "instance-2.log"))
        wait_for(instances[1].is_standby, "the second instance stands by", 60)
        wait_for(lambda: all(p.ready() for p in instances), "both instances ready", 60)
        producer.start()
        time.sleep(PHASE_SECONDS)  # a calm start, as scheduled
        leading_before = _leader_lines(instances)
        _phase(sim, "slow listings")
        takeovers_while_slow = _leader_lines(instances) - leading_before
        if broker.supports(Capability.PROCESS_CONTROL):
            for _ in range(2):
                marks.append(mark(sim, broker.bootstrap_servers, topics, "broker fault"))
                broker.pause()
                time.sleep(FREEZE_SECONDS)  # the fault's duration, as scheduled
                broker.resume()
                # Uploads made while the broker was frozen (the API was not) could not commit
                # their offsets: the rebalance after it repeats them. Mark its end too.
                marks.append(mark(sim, broker.bootstrap_servers, topics, "broker fault"))
                freezes += 1
                time.sleep(PHASE_SECONDS / 2)
        _phase(sim, "bulky outputs")
        _phase(sim, "results too large")
        producer.stop()
        workload = producer.finish()
        wait_for_completion(workload, broker.bootstrap_servers, topics, 180, stand_ins=True)
        unreadable = sum(_unreadable_pages(p) for p in instances)
        crashes = [f"{p.log_path.name} exit {p.process.returncode}" for p in instances
                   if not p.alive()]  # fmt: skip
        exit_codes = [p.terminate() for p in instances]
    finally:
        producer.stop()
        broker.ensure_running()
        for process in instances:
            if process.alive():
                process.kill()
    letters = read_all(broker.bootstrap_servers, topics["dlq"])
    too_large = [m for m in letters if headers_of(m).get("error-reason") == "result_too_large"]
    verdict = judge(
        workload,
        [*read_all(broker.bootstrap_servers, topics["output"]), *too_large],
        [m for m in letters if m not in too_large],
        creations_by_key(sim),
        marks,
        lost_response_faults=False,
        aborts_visible=not broker.supports(Capability.TRANSACTIONS),
    )
    sim.stop()
    return PollerFaultsOutcome(
        verdict=verdict,
        broker_kind=broker.kind.value,
        takeovers_while_slow=takeovers_while_slow,
        freezes=freezes,
        too_large=len(too_large),
        unreadable_pages=unreadable,
        crashes=crashes,
        exit_codes=exit_codes,
    )


def _phase(sim: Any, name: str) -> None:
    sim.set_knobs(**{**CALM, **PHASES[name]})
    time.sleep(PHASE_SECONDS)  # the phase's duration, as scheduled
    sim.set_knobs(**CALM)


def _leader_lines(instances: list[ConnectorProcess]) -> int:
    return sum(
        line.endswith(": leader")
        for process in instances
        for line in process.output().splitlines()
        if "poller of app project" in line
    )


def _unreadable_pages(process: ConnectorProcess) -> float:
    response = process.get("/metrics")
    text = response.text if response is not None else ""
    return sum(float(value) for value in _UNREADABLE.findall(text))
