"""One chaos scenario: items produced at a steady rate while `toloka-connector run` is killed
and restarted, the broker and the API misbehave; then a read_committed reader judges the run.

The timeline (kill moments, fault moments and durations, which faults) is drawn from a seeded
RNG before the run starts, so a seed names a run. Every event runs on the calling thread: the
real broker's restarted JVM is tied to the thread that spawns it (PR_SET_PDEATHSIG).
"""

from __future__ import annotations

import contextlib
import logging
import random
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from connector.devtools.brokers.base import Capability
from connector.simulator.process import SimulatorProcess, start_simulator_process
from testkit.brokers import ControllableBroker
from testkit.kafka import read_all
from testkit.processes import ConnectorProcess
from testkit.scenarios.faults import API_FAULT_PHASES, CALM_KNOBS, broker_fault, broker_recover
from testkit.scenarios.setup import (
    INPUT_PARTITIONS,
    LATE_VISIBILITY_KNOBS,
    MAX_RECORD_BYTES,
    ProgressMonitor,
    connector_environ,
    mark,
    scenario_topics,
    wait_for_completion,
    wind_down,
)
from testkit.scenarios.verdict import KillMark, Verdict, creations_by_key, judge
from testkit.scenarios.workload import SteadyProducer
from testkit.waiting import wait_for

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Scenario:
    name: str
    seed: int
    duration: float
    """Seconds of production; faults and kills happen inside it."""
    rate: float
    """Records per second."""
    kills: int
    api_faults: bool
    broker_faults: tuple[str, ...] = ()
    """Real Kafka: "pause", "stop", "sigkill" (each followed by resume/restart). Mock:
    "request_errors", "down_up", "rtt"."""
    bad_ratio: float = 0.02
    fault_seconds: float = 4.0
    """How long one API fault phase or one broker fault lasts."""
    completion_timeout: float = 180.0
    exactly_once: bool = True
    """The connector reconciles uploads (CONNECTOR_UPLOAD_RECONCILE, the default): a repeated
    upload, whatever explains it, fails the run."""


@dataclass
class Event:
    at: float
    kind: str
    detail: str = ""


@dataclass
class Outcome:
    scenario: Scenario
    broker_kind: str
    verdict: Verdict
    kills: int
    faults: list[str]
    recovery_after_kill: list[float]
    recovery_after_broker_fault: list[float]
    crashes: list[str]
    final_exit_code: int
    elapsed: float
    simulator_stats: dict[str, Any]
    workdir: Path
    notes: list[str] = field(default_factory=list)
    reconciliations: dict[str, int] = field(default_factory=dict)
    """How many reconciliations the connector's logs report, by kind."""

    @property
    def items(self) -> int:
        return self.verdict.valid + self.verdict.invalid

    def recovery_text(self) -> str:
        parts = []
        if self.recovery_after_kill:
            parts.append("restart " + _spread(self.recovery_after_kill))
        if self.recovery_after_broker_fault:
            parts.append("broker " + _spread(self.recovery_after_broker_fault))
        return "; ".join(parts) or "—"

    def failures(self, *, transactions: bool) -> list[str]:
        """What breaks a guarantee (empty when the run is good)."""
        v = self.verdict
        found = []
        if v.lost_results:
            found.append(
                f"{len(v.lost_results)} valid items without a result: {v.lost_results[:5]}"
            )
        if v.lost_dead_letters:
            found.append(
                f"{len(v.lost_dead_letters)} invalid records without a dead letter: "
                f"{v.lost_dead_letters[:5]}"
            )
        if v.unknown:
            found.append(
                f"unknown or wrong records: results {v.unknown_results[:5]}, dead letters "
                f"{v.unknown_dead_letters[:5]}, wrong reasons {v.wrong_reasons[:5]}, "
                f"bad values {v.results_without_valid_json}"
            )
        if self.scenario.exactly_once and v.repeated_uploads:
            found.append(
                f"{v.repeated_uploads} items uploaded twice despite reconciliation: "
                f"{v.repeated_uploads_by_cause}"
            )
        if v.unattributed():
            found.append(
                "repetitions no kill or lost response explains: uploads "
                f"{v.repeated_uploads_by_cause}, results {v.repeated_results_by_cause}, "
                f"dead letters {v.repeated_dead_letters_by_cause}"
            )
        if transactions and v.repeated_results:
            found.append(f"{v.repeated_results} repeated results for read_committed readers")
        if self.crashes:
            found.append(f"connector processes died on their own: {self.crashes}")
        if self.final_exit_code != 0:
            found.append(f"the last connector exited {self.final_exit_code} after SIGTERM")
        return found


RECONCILIATION_LOG_LINES = {
    "lost answer": "reconciled a lost answer",
    "hand-over": "reconciling a hand-over",
    "failed": "reconciliation failed",
    "no intent": "without an upload intent",
}
"""Kind of reconciliation → the text of the connector's one log line for it."""


def count_reconciliations(logs: list[str]) -> dict[str, int]:
    return {
        kind: sum(text.count(line) for text in logs)
        for kind, line in RECONCILIATION_LOG_LINES.items()
    }


def _spread(values: list[float]) -> str:
    if len(values) == 1:
        return f"{values[0]:.1f} s"
    return f"{min(values):.1f}/{statistics.median(values):.1f}/{max(values):.1f} s (min/median/max)"


def plan_timeline(scenario: Scenario, rng: random.Random) -> list[Event]:
    """Kills and broker faults in separate slots (so each recovery is measured alone); API fault
    phases cycle independently."""
    events: list[Event] = []
    disruptions = ["kill"] * scenario.kills + list(scenario.broker_faults)
    rng.shuffle(disruptions)
    start, end = 0.1 * scenario.duration, 0.85 * scenario.duration
    if disruptions:
        slot = (end - start) / len(disruptions)
        for index, what in enumerate(disruptions):
            at = start + index * slot + rng.uniform(0.0, max(0.0, slot - scenario.fault_seconds))
            if what == "kill":
                events.append(Event(at, "kill"))
            else:
                events.append(Event(at, "broker_fault", what))
                events.append(Event(at + scenario.fault_seconds, "broker_recover", what))
    if scenario.api_faults:
        phases = list(API_FAULT_PHASES)
        rng.shuffle(phases)
        at = 0.05 * scenario.duration
        index = 0
        while at + scenario.fault_seconds < scenario.duration:
            name = phases[index % len(phases)]
            events.append(Event(at, "api_fault", name))
            events.append(Event(at + scenario.fault_seconds, "api_calm", name))
            at += scenario.fault_seconds + rng.uniform(1.0, 3.0)
            index += 1
    return sorted(events, key=lambda e: e.at)


def _wait_until(moment: float) -> None:
    left = moment - time.monotonic()
    if left > 0:
        time.sleep(left)  # the timeline's next scheduled moment, drawn from the seeded RNG


def run_scenario(
    scenario: Scenario,
    broker: ControllableBroker,
    workdir: Path,
    *,
    simulator: SimulatorProcess | None = None,
    say: Callable[[str], None] = print,
) -> Outcome:
    """Run `scenario` against `broker`; the caller owns the broker (and `simulator`, if given:
    otherwise one is started and stopped here)."""
    workdir.mkdir(parents=True, exist_ok=True)
    rng = random.Random(scenario.seed)  # noqa: S311 - a reproducible schedule
    tag = f"{scenario.name.split()[0].lower()}-{scenario.seed}-{int(time.time())}"
    topics = scenario_topics(broker, tag)
    own_simulator = simulator is None
    sim = simulator or start_simulator_process(
        api_key=f"chaos-key-{scenario.seed}",
        project_id="chaos-project",
        seed=scenario.seed,
    )
    sim.reset(restore_knobs=True)
    sim.set_knobs(processing_delay=0.5, processing_jitter=1.0, item_error_ratio=0.02,
                  **LATE_VISIBILITY_KNOBS)  # fmt: skip
    bootstrap = broker.bootstrap_servers
    environ = connector_environ(sim, bootstrap, topics, f"chaos-{tag}")
    environ["CONNECTOR_UPLOAD_RECONCILE"] = str(scenario.exactly_once).lower()
    timeline = plan_timeline(scenario, rng)
    started = time.monotonic()
    processes: list[ConnectorProcess] = []
    marks: list[KillMark] = []
    crashes: list[str] = []
    faults: list[str] = []
    kill_recoveries: list[float] = []
    fault_ends: list[float] = []
    restarts: list[float] = []
    lost_response_active = False
    monitor: ProgressMonitor | None = None
    producer: SteadyProducer | None = None
    try:
        processes.append(ConnectorProcess(["run"], environ, workdir / "connector-0.log"))
        wait_for(processes[-1].ready, "the connector ready", 60)
        monitor = ProgressMonitor(sim, bootstrap, topics["output"])
        producer = SteadyProducer(
            bootstrap,
            topics["input"],
            rate=scenario.rate,
            count=int(scenario.rate * scenario.duration),
            seed=scenario.seed,
            bad_ratio=scenario.bad_ratio,
            max_record_bytes=MAX_RECORD_BYTES,
            partitions=INPUT_PARTITIONS,
        )
        origin = time.monotonic()
        producer.start()
        say(f"[{scenario.name}] {len(timeline)} events planned over {scenario.duration:.0f} s")
        for event in timeline:
            _wait_until(origin + event.at)
            current = processes[-1]
            if not current.alive():
                crashes.append(f"{current.log_path.name} exit {current.process.returncode}")
                processes.append(
                    ConnectorProcess(["run"], environ, workdir / f"connector-{len(processes)}.log")
                )
                current = processes[-1]
            if event.kind == "kill":
                current.kill()
                marks.append(mark(sim, bootstrap, topics, "kill"))
                processes.append(
                    ConnectorProcess(["run"], environ, workdir / f"connector-{len(processes)}.log")
                )
                restarts.append(time.monotonic())
                say(f"  {event.at:6.1f}s SIGKILL connector pid {current.pid}, restarted")
            elif event.kind == "api_fault":
                knobs = {**CALM_KNOBS, **API_FAULT_PHASES[event.detail]}
                sim.set_knobs(**knobs)
                lost_response_active = lost_response_active or "lost_response_ratio" in knobs
                faults.append(f"API {event.detail}")
                say(f"  {event.at:6.1f}s API fault: {event.detail}")
            elif event.kind == "api_calm":
                sim.set_knobs(**CALM_KNOBS)
            elif event.kind == "broker_fault":
                marks.append(mark(sim, bootstrap, topics, "broker fault"))
                faults.append(f"broker {event.detail}")
                broker_fault(broker, event.detail, rng)
                say(f"  {event.at:6.1f}s broker fault: {event.detail}")
            elif event.kind == "broker_recover":
                broker_recover(broker, event.detail)
                fault_ends.append(time.monotonic())
                say(f"  {event.at:6.1f}s broker recovered from {event.detail}")
        workload = producer.finish()
        sim.set_knobs(**CALM_KNOBS)
        say(f"[{scenario.name}] produced {len(workload.delivered)}; waiting for completion")
        wait_for_completion(workload, bootstrap, topics, scenario.completion_timeout)
        current = processes[-1]
        if not current.alive():
            crashes.append(f"{current.log_path.name} exit {current.process.returncode}")
        final_exit = current.terminate()
    finally:
        wind_down(producer, monitor, processes)
        with contextlib.suppress(Exception):
            broker.ensure_running()
    for moment in restarts:
        recovery = monitor.recovery_after(moment) if monitor else None
        if recovery is not None:
            kill_recoveries.append(recovery)
    broker_recoveries = [
        r for r in (monitor.recovery_after(m) if monitor else None for m in fault_ends) if r
    ]
    stats = sim.stats()
    verdict = judge(
        workload,
        read_all(bootstrap, topics["output"]),
        read_all(bootstrap, topics["dlq"]),
        creations_by_key(sim),
        marks,
        lost_response_faults=lost_response_active,
        aborts_visible=not broker.supports(Capability.TRANSACTIONS),
    )
    if own_simulator:
        sim.stop()
    logs = [path.read_text(errors="replace") for path in sorted(workdir.glob("connector-*.log"))]
    notes = [
        f"{sum(text.count('Traceback') for text in logs)} tracebacks and "
        f"{sum(text.count(' ERROR ') for text in logs)} ERROR lines in the connector logs"
    ]
    return Outcome(
        scenario=scenario,
        broker_kind=broker.kind.value,
        verdict=verdict,
        kills=sum(m.cause == "kill" for m in marks),
        faults=faults,
        recovery_after_kill=kill_recoveries,
        recovery_after_broker_fault=broker_recoveries,
        crashes=crashes,
        final_exit_code=final_exit,
        elapsed=time.monotonic() - started,
        simulator_stats=stats,
        workdir=workdir,
        notes=notes,
        reconciliations=count_reconciliations(logs),
    )
