"""Failover timing: two `toloka-connector run` instances; the one whose poller leads is killed
with SIGKILL, the standby takes over; repeated, with exactly-once checked at the end."""

from __future__ import annotations

import random
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path

from connector.devtools.brokers.base import Capability
from connector.simulator.process import start_simulator_process
from testkit.brokers import ControllableBroker
from testkit.kafka import high_watermarks, read_all
from testkit.processes import ConnectorProcess
from testkit.scenarios.setup import (
    INPUT_PARTITIONS,
    LEADER_TIMEOUT_SECONDS,
    MAX_RECORD_BYTES,
    ProgressMonitor,
    connector_environ,
    scenario_topics,
    wait_for_completion,
    wind_down,
)
from testkit.scenarios.verdict import KillMark, Verdict, creations_by_key, judge
from testkit.scenarios.workload import SteadyProducer
from testkit.waiting import wait_for


@dataclass
class FailoverOutcome:
    takeovers: list[float]
    """Seconds from the SIGKILL of the leading instance to the standby logging "leader"."""
    publishing_resumed: list[float]
    """Seconds from the SIGKILL to the new leader's first result visible to read_committed
    readers (a result first seen after the take-over)."""
    verdict: Verdict
    leader_timeout_seconds: float
    broker_kind: str
    crashes: list[str] = field(default_factory=list)
    exit_codes: list[int] = field(default_factory=list)

    def summary(self) -> str:
        def spread(values: list[float]) -> str:
            if not values:
                return "—"
            return (
                f"min {min(values):.2f} s, median {statistics.median(values):.2f} s, "
                f"max {max(values):.2f} s"
            )

        return (
            f"{len(self.takeovers)} take-overs on {self.broker_kind} with "
            f"CONNECTOR_LEADER_TIMEOUT_SECONDS={self.leader_timeout_seconds:g}: "
            f"leader again after {spread(self.takeovers)}; results flowing again after "
            f"{spread(self.publishing_resumed)}"
        )

    def failures(self) -> list[str]:
        v = self.verdict
        found = []
        if v.lost:
            found.append(f"lost: {v.lost_results[:5]} {v.lost_dead_letters[:5]}")
        if v.unknown:
            found.append(f"unknown records: {v.unknown_results[:5]} {v.unknown_dead_letters[:5]}")
        if v.unattributed():
            found.append(
                f"unexplained repetitions: {v.repeated_uploads_by_cause} "
                f"{v.repeated_results_by_cause}"
            )
        if self.broker_kind != "mock" and v.repeated_results:
            found.append(f"{v.repeated_results} repeated results for read_committed readers")
        if self.crashes:
            found.append(f"processes died on their own: {self.crashes}")
        if any(code != 0 for code in self.exit_codes):
            found.append(f"exit codes after SIGTERM: {self.exit_codes}")
        return found


def run_failover(
    broker: ControllableBroker, workdir: Path, *, takeovers: int, seed: int, rate: float = 40.0
) -> FailoverOutcome:
    workdir.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)  # noqa: S311 - reproducible kill moments
    tag = f"failover-{seed}-{int(time.time())}"
    topics = scenario_topics(broker, tag)
    sim = start_simulator_process(api_key=f"failover-{seed}", project_id="failover", seed=seed)
    sim.set_knobs(processing_delay=0.3, processing_jitter=0.5)
    environ = connector_environ(sim, broker.bootstrap_servers, topics, tag)
    count = 0
    processes: list[ConnectorProcess] = []
    marks: list[KillMark] = []
    times: list[float] = []
    resumed: list[float] = []
    crashes: list[str] = []

    def start() -> ConnectorProcess:
        nonlocal count
        count += 1
        processes.append(ConnectorProcess(["run"], environ, workdir / f"instance-{count}.log"))
        return processes[-1]

    producer = SteadyProducer(
        broker.bootstrap_servers,
        topics["input"],
        rate=rate,
        count=10**7,
        seed=seed,
        max_record_bytes=MAX_RECORD_BYTES,
        partitions=INPUT_PARTITIONS,
    )
    monitor: ProgressMonitor | None = None
    try:
        first = start()
        wait_for(first.is_leader, "the first instance leads", 60)
        second = start()
        wait_for(second.is_standby, "the second instance stands by", 60)
        live = [first, second]
        producer.start()
        monitor = ProgressMonitor(sim, broker.bootstrap_servers, topics["output"])
        wait_for(lambda: len(monitor.samples) > 2 and monitor.samples[-1][3] > 0, "results", 60)
        for _ in range(takeovers):
            leader = next(p for p in live if p.is_leader())
            standby = next(p for p in live if p is not leader)
            time.sleep(rng.uniform(0.5, 2.5))  # a random moment drawn from the seeded RNG
            leader.kill()
            killed = time.monotonic()
            marks.append(
                KillMark(
                    at=killed,
                    items_created=int(sim.stats()["items_created"]),
                    output_ends=high_watermarks(broker.bootstrap_servers, topics["output"], 30),
                    dlq_ends=high_watermarks(broker.bootstrap_servers, topics["dlq"], 30),
                )
            )
            wait_for(standby.is_leader, "the standby takes over", LEADER_TIMEOUT_SECONDS + 60)
            took_over = time.monotonic()
            times.append(took_over - killed)
            # Results committed before the take-over may still be on their way to the reader:
            # count from the take-over, so only the new leader's results are "flowing again".
            published = next(s[3] for s in reversed(monitor.samples) if s[1] <= took_over)
            samples = monitor.samples

            def flowing(
                p: int = published,
                t: float = took_over,
                seen: list[tuple[float, float, int, int]] = samples,
            ) -> bool:
                return any(s[0] > t and s[3] > p for s in seen)

            wait_for(flowing, "results published again", 60)
            resumed.append(
                next(s[1] for s in monitor.samples if s[0] > took_over and s[3] > published)
                - killed
            )
            replacement = start()
            wait_for(replacement.is_standby, "the restarted instance stands by", 60)
            live = [standby, replacement]
        producer.stop()
        workload = producer.finish()
        wait_for_completion(workload, broker.bootstrap_servers, topics, 120)
        crashes = [f"{p.log_path.name} exit {p.process.returncode}" for p in live if not p.alive()]
        exit_codes = [p.terminate() for p in live]
    finally:
        wind_down(producer, monitor, processes)
    verdict = judge(
        workload,
        read_all(broker.bootstrap_servers, topics["output"]),
        read_all(broker.bootstrap_servers, topics["dlq"]),
        creations_by_key(sim),
        marks,
        lost_response_faults=False,
        aborts_visible=not broker.supports(Capability.TRANSACTIONS),
    )
    sim.stop()
    return FailoverOutcome(
        takeovers=times,
        publishing_resumed=resumed,
        verdict=verdict,
        leader_timeout_seconds=LEADER_TIMEOUT_SECONDS,
        broker_kind=broker.kind.value,
        crashes=crashes,
        exit_codes=exit_codes,
    )
