"""What the scenarios share: the connector's settings and topics, a monitor of its progress, the
marks taken at each disruption, and waiting until every record is accounted for."""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from typing import Any

from connector.devtools.brokers.base import Broker
from connector.kafka.admin import TopicSpec
from connector.simulator.process import SimulatorProcess
from testkit.kafka import TopicFollower, headers_of, high_watermarks
from testkit.processes import ConnectorProcess
from testkit.scenarios.verdict import KillMark
from testkit.scenarios.workload import SteadyProducer, Workload

log = logging.getLogger(__name__)

INPUT_PARTITIONS = 4
OUTPUT_PARTITIONS = 3
MAX_RECORD_BYTES = 4096
LEADER_TIMEOUT_SECONDS = 3
API_MAX_RESPONSE_BYTES = 1024 * 1024
"""Far above a listing page of 100 items; the oversized pages of the API faults exceed it."""

# Items become visible in the listing up to 5 s after finished_at: well within the late window.
LATE_VISIBILITY_KNOBS: dict[str, Any] = {"late_visibility": 5.0, "late_visibility_ratio": 0.2}
LATE_WINDOW_SECONDS = 30


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
        "CONNECTOR_API_MAX_ATTEMPTS": "10",
        "CONNECTOR_API_BACKOFF_BASE_SECONDS": "0.05",
        "CONNECTOR_API_BACKOFF_CAP_SECONDS": "1",
        "CONNECTOR_API_TIMEOUT_SECONDS": "10",
        "CONNECTOR_API_MAX_RESPONSE_BYTES": str(API_MAX_RESPONSE_BYTES),
        "CONNECTOR_SHUTDOWN_TIMEOUT_SECONDS": "60",
    }


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


def mark(sim: SimulatorProcess, bootstrap: str, topics: dict[str, str], cause: str) -> KillMark:
    return KillMark(
        at=time.monotonic(),
        items_created=int(sim.stats()["items_created"]),
        output_ends=high_watermarks(bootstrap, topics["output"], 30),
        dlq_ends=high_watermarks(bootstrap, topics["dlq"], 30),
        cause=cause,
    )


def wait_for_completion(
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


def scenario_topics(broker: Broker, tag: str) -> dict[str, str]:
    """The connector's topics for one run, named after it (`input`, `output`, `dlq`, `state`;
    the state topic compacted), created on `broker`."""
    topics = {name: f"{tag}-{name}" for name in ("input", "output", "dlq", "state")}
    broker.create_topics(
        [
            TopicSpec(topics["input"], partitions=INPUT_PARTITIONS),
            TopicSpec(topics["output"], partitions=OUTPUT_PARTITIONS),
            TopicSpec(topics["dlq"], partitions=1),
            TopicSpec(topics["state"], partitions=1, compacted=True),
        ]
    )
    return topics


def wind_down(
    producer: SteadyProducer | None,
    monitor: ProgressMonitor | None,
    processes: list[ConnectorProcess],
) -> None:
    """What a run leaves behind stops: the producer and the monitor (those it started); the
    connector processes still alive are killed."""
    if producer is not None:
        producer.stop()
    if monitor is not None:
        monitor.stop()
    for process in processes:
        if process.alive():
            process.kill()
