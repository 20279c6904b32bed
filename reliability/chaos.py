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
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from confluent_kafka import KafkaError

from connector.devtools.brokers.base import Capability
from connector.kafka.admin import TopicSpec
from connector.simulator.process import SimulatorProcess, start_simulator_process
from reliability.procs import ConnectorProcess, wait_for
from reliability.verify import (
    KillMark,
    TopicFollower,
    Verdict,
    creations_by_key,
    headers_of,
    high_watermarks,
    judge,
)
from reliability.workload import SteadyProducer, Workload
from testkit.brokers import ApiKey, ControllableBroker
from tests.fixtures.brokers import read_all

log = logging.getLogger(__name__)

INPUT_PARTITIONS = 4
OUTPUT_PARTITIONS = 3
MAX_RECORD_BYTES = 4096
LEADER_TIMEOUT_SECONDS = 3
API_MAX_RESPONSE_BYTES = 1024 * 1024
"""Far above a listing page of 100 items; the oversized pages of the API faults exceed it."""

# name -> simulator knobs while the phase lasts (every other fault knob is 0 meanwhile)
API_FAULT_PHASES: dict[str, dict[str, Any]] = {
    "429 storm (Retry-After 1)": {"http_429_ratio": 0.6, "retry_after": 1},
    "5xx (500, 503)": {"http_500_ratio": 0.15, "http_503_ratio": 0.15},
    "HTML 502": {"http_502_ratio": 0.3},
    "latency spike (1-2.5 s)": {"latency": 1.0, "latency_jitter": 1.5},
    "connection resets": {"reset_ratio": 0.2},
    "lost responses": {"lost_response_ratio": 0.15},
    # Answers that are not the API's: never followed or read, never taken as a success.
    "redirects (307)": {"redirect_ratio": 0.3, "redirect_status": 307},
    "oversized error pages (502)": {
        "oversized_page_ratio": 0.3,
        "oversized_page_status": 502,
        "oversized_page_bytes": 2 * API_MAX_RESPONSE_BYTES,
    },
}
CALM_KNOBS: dict[str, Any] = {
    "http_429_ratio": 0.0,
    "http_500_ratio": 0.0,
    "http_502_ratio": 0.0,
    "http_503_ratio": 0.0,
    "reset_ratio": 0.0,
    "lost_response_ratio": 0.0,
    "redirect_ratio": 0.0,
    "oversized_page_ratio": 0.0,
    "latency": 0.0,
    "latency_jitter": 0.0,
}
# Items become visible in the listing up to 5 s after finished_at: well within the late window.
LATE_VISIBILITY_KNOBS: dict[str, Any] = {"late_visibility": 5.0, "late_visibility_ratio": 0.2}
LATE_WINDOW_SECONDS = 30

# Mock-cluster request errors: retriable codes a real cluster sends during leader moves,
# coordinator moves and load.
MOCK_REQUEST_ERRORS: dict[ApiKey, list[int]] = {
    ApiKey.PRODUCE: [KafkaError.NOT_LEADER_FOR_PARTITION, KafkaError.REQUEST_TIMED_OUT] * 2,
    ApiKey.FETCH: [KafkaError.NOT_LEADER_FOR_PARTITION] * 3,
    ApiKey.OFFSET_COMMIT: [KafkaError.COORDINATOR_NOT_AVAILABLE, KafkaError.NOT_COORDINATOR] * 2,
    ApiKey.FIND_COORDINATOR: [KafkaError.COORDINATOR_NOT_AVAILABLE] * 3,
    ApiKey.END_TXN: [KafkaError.NOT_COORDINATOR, KafkaError.CONCURRENT_TRANSACTIONS],
}


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


def _spread(values: list[float]) -> str:
    if len(values) == 1:
        return f"{values[0]:.1f} s"
    return f"{min(values):.1f}/{statistics.median(values):.1f}/{max(values):.1f} s (min/median/max)"


def connector_environ(
    simulator: SimulatorProcess, bootstrap: str, topics: dict[str, str], group: str
) -> dict[str, str]:
    return {
        "TOLOKA_API_KEY": simulator.api_key,
        "TOLOKA_BASE_URL": simulator.base_url,
        "TOLOKA_APP_PROJECT_ID": simulator.project_id,
        "KAFKA_BOOTSTRAP_SERVERS": bootstrap,
        "KAFKA_SESSION_TIMEOUT_MS": "6000",
        "KAFKA_HEARTBEAT_INTERVAL_MS": "500",
        "CONNECTOR_INPUT_TOPIC": topics["input"],
        "CONNECTOR_OUTPUT_TOPIC": topics["output"],
        "CONNECTOR_DLQ_TOPIC": topics["dlq"],
        "CONNECTOR_STATE_TOPIC": topics["state"],
        "CONNECTOR_GROUP_ID": group,
        "CONNECTOR_MAX_RECORD_BYTES": str(MAX_RECORD_BYTES),
        "CONNECTOR_BATCH_MAX_ITEMS": "100",
        "CONNECTOR_PAGE_SIZE": "100",
        "CONNECTOR_POLL_INTERVAL_SECONDS": "0.2",
        "CONNECTOR_IDLE_POLL_INTERVAL_SECONDS": "0.5",
        "CONNECTOR_LATE_WINDOW_SECONDS": str(LATE_WINDOW_SECONDS),
        "CONNECTOR_LATE_SCAN_INTERVAL_SECONDS": "2",
        "CONNECTOR_LEADER_TIMEOUT_SECONDS": str(LEADER_TIMEOUT_SECONDS),
        "CONNECTOR_TRANSACTION_TIMEOUT_SECONDS": "20",
        "CONNECTOR_API_MAX_ATTEMPTS": "10",
        "CONNECTOR_API_BACKOFF_BASE_SECONDS": "0.05",
        "CONNECTOR_API_BACKOFF_CAP_SECONDS": "1",
        "CONNECTOR_API_TIMEOUT_SECONDS": "10",
        "CONNECTOR_API_MAX_RESPONSE_BYTES": str(API_MAX_RESPONSE_BYTES),
        "CONNECTOR_SHUTDOWN_TIMEOUT_SECONDS": "60",
    }


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


class ProgressMonitor:
    """Samples items created (the simulator's count) and results visible to read_committed
    readers in a thread, for recovery times. Each sample keeps when its reads started and
    ended, so that "before a moment" and "after a moment" are never confused."""

    def __init__(self, simulator: SimulatorProcess, bootstrap: str, output_topic: str) -> None:
        self._simulator = simulator
        self._results = TopicFollower(bootstrap, output_topic)
        # (reads started, reads ended, items created, results committed)
        self.samples: list[tuple[float, float, int, int]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="chaos-monitor", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                with contextlib.suppress(Exception):
                    began = time.monotonic()
                    self._results.poll(0.2)
                    created = int(self._simulator.stats()["items_created"])
                    self.samples.append(
                        (began, time.monotonic(), created, len(self._results.records))
                    )
        finally:
            self._results.close()

    def recovery_after(self, moment: float) -> float | None:
        """Seconds from `moment` until both uploads and publishing moved on."""
        before = [s for s in self.samples if s[1] <= moment]
        if not before:
            return None
        _, _, created, published = before[-1]
        later = [s for s in self.samples if s[0] > moment]
        uploaded_at = next((s[1] for s in later if s[2] > created), None)
        published_at = next((s[1] for s in later if s[3] > published), None)
        if uploaded_at is None or published_at is None:
            return None
        return max(uploaded_at, published_at) - moment

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)


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
    topics = {
        "input": f"chaos-in-{tag}",
        "output": f"chaos-out-{tag}",
        "dlq": f"chaos-dlq-{tag}",
        "state": f"chaos-state-{tag}",
    }
    broker.create_topics(
        [
            TopicSpec(topics["input"], partitions=INPUT_PARTITIONS),
            TopicSpec(topics["output"], partitions=OUTPUT_PARTITIONS),
            TopicSpec(topics["dlq"], partitions=1),
            TopicSpec(topics["state"], partitions=1, compacted=True),
        ]
    )
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
        processes.append(ConnectorProcess(environ, workdir / "connector-0.log"))
        wait_for(processes[-1].ready, 60, "the connector ready")
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
                    ConnectorProcess(environ, workdir / f"connector-{len(processes)}.log")
                )
                current = processes[-1]
            if event.kind == "kill":
                current.kill()
                marks.append(_mark(sim, bootstrap, topics, "kill"))
                processes.append(
                    ConnectorProcess(environ, workdir / f"connector-{len(processes)}.log")
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
                marks.append(_mark(sim, bootstrap, topics, "broker fault"))
                faults.append(f"broker {event.detail}")
                _broker_fault(broker, event.detail, rng)
                say(f"  {event.at:6.1f}s broker fault: {event.detail}")
            elif event.kind == "broker_recover":
                _broker_recover(broker, event.detail)
                fault_ends.append(time.monotonic())
                say(f"  {event.at:6.1f}s broker recovered from {event.detail}")
        workload = producer.finish()
        sim.set_knobs(**CALM_KNOBS)
        say(f"[{scenario.name}] produced {len(workload.delivered)}; waiting for completion")
        _wait_for_completion(workload, bootstrap, topics, scenario.completion_timeout)
        current = processes[-1]
        if not current.alive():
            crashes.append(f"{current.log_path.name} exit {current.process.returncode}")
        final_exit = current.terminate()
    finally:
        if producer is not None:
            producer.stop()
        if monitor is not None:
            monitor.stop()
        for process in processes:
            if process.alive():
                process.kill()
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
    )


def _mark(sim: SimulatorProcess, bootstrap: str, topics: dict[str, str], cause: str) -> KillMark:
    return KillMark(
        at=time.monotonic(),
        items_created=int(sim.stats()["items_created"]),
        output_ends=high_watermarks(bootstrap, topics["output"], 30),
        dlq_ends=high_watermarks(bootstrap, topics["dlq"], 30),
        cause=cause,
    )


def _broker_fault(broker: ControllableBroker, what: str, rng: random.Random) -> None:
    if what == "pause":
        broker.pause()
    elif what == "stop":
        broker.stop()
    elif what == "sigkill":
        broker.kill()
    elif what == "request_errors":
        for api_key, codes in MOCK_REQUEST_ERRORS.items():
            broker.push_request_errors(api_key, codes)
    elif what == "down_up":
        broker.broker_down(rng.choice([1, 2, 3]))
    elif what == "rtt":
        broker.set_rtt(rng.choice([1, 2, 3]), 800)
    else:
        raise ValueError(f"unknown broker fault {what!r}")


def _broker_recover(broker: ControllableBroker, what: str) -> None:
    if what == "pause":
        broker.resume()
    elif what in {"stop", "sigkill"}:
        broker.restart()
    elif what == "down_up":
        for broker_id in (1, 2, 3):
            broker.broker_up(broker_id)
    elif what == "rtt":
        for broker_id in (1, 2, 3):
            broker.set_rtt(broker_id, 0)
    # request errors are consumed by the requests they fail


def _wait_for_completion(
    workload: Workload,
    bootstrap: str,
    topics: dict[str, str],
    timeout: float,
    *,
    stand_ins: bool = False,
) -> None:
    """Until every valid key has a result and every invalid record a dead letter (or timeout:
    the verdict then names what is missing). With `stand_ins`, a result_too_large dead letter
    stands for its item's result."""
    valid = workload.valid_keys()
    invalid = {str(seq) for seq in workload.invalid()}
    results = TopicFollower(bootstrap, topics["output"])
    letters = TopicFollower(bootstrap, topics["dlq"])
    seen_keys: set[str] = set()
    seen_letters: set[str] = set()
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            seen_keys.update((m.key() or b"").decode() for m in results.poll(0.5))
            for message in letters.poll(0.2):
                headers = headers_of(message)
                if stand_ins and headers.get("error-reason") == "result_too_large":
                    seen_keys.add((message.key() or b"").decode())
                if headers.get("seq") is not None:
                    seen_letters.add(headers["seq"])
            if valid <= seen_keys and invalid <= seen_letters:
                return
        log.error(
            "completion timed out: %d results and %d dead letters missing",
            len(valid - seen_keys),
            len(invalid - seen_letters),
        )
    finally:
        results.close()
        letters.close()
