"""What every scenario shares: the broker, the simulator, sizes, names, connector settings."""

from __future__ import annotations

import math
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import psutil

from benchmarks.kafka_io import Inspector
from benchmarks.profiling import Profiler, ProfileSummary, py_spy, summarise
from connector.app.topics import connector_topics
from connector.config import load_settings
from connector.devtools.brokers.base import Broker, BrokerKind
from connector.kafka.admin import TopicSpec
from connector.simulator.process import SimulatorProcess
from testkit.processes import ConnectorProcess

MOCK_PARTITION_BYTES = 3 * 1024 * 1024
"""The mock cluster keeps ~5 MiB per partition and drops older records silently: stay below."""
RECORD_OVERHEAD_BYTES = 24
DEFAULT_PARTITIONS = 12


@dataclass(frozen=True)
class Sizes:
    upload_items: int = 200_000
    naive_sample: int = 2_000
    poll_items: int = 200_000
    latency_rate: int = 2_000
    latency_seconds: float = 30.0
    memory_backlog: int = 1_000_000
    memory_seconds: float = 75.0
    memory_latency: float = 0.2
    memory_429_ratio: float = 0.1
    rate_limit_seconds: float = 30.0
    latency_bound_poll_items: int = 40_000
    latency_bound_upload_items: int = 160_000


FULL = Sizes()
QUICK = Sizes(
    upload_items=20_000,
    naive_sample=500,
    poll_items=20_000,
    latency_seconds=10.0,
    memory_backlog=500_000,
    memory_seconds=20.0,
    rate_limit_seconds=10.0,
    latency_bound_poll_items=12_000,
    latency_bound_upload_items=48_000,
)


@dataclass
class Bench:
    broker: Broker
    sim: SimulatorProcess
    sizes: Sizes
    workdir: Path
    profile: bool = True
    run_id: str = field(default_factory=lambda: uuid.uuid4().hex[:6])
    shared: dict[str, object] = field(default_factory=dict)
    """What one scenario prepares for another (the upload backlog for the scale scenario)."""
    started: float = field(default_factory=time.perf_counter)

    def __post_init__(self) -> None:
        self.inspector = Inspector(self.broker.bootstrap_servers)
        self.profiling = self.profile and py_spy() is not None

    def say(self, message: str) -> None:
        """A progress line on stderr: the time since the run began, the harness's own RSS."""
        elapsed = time.perf_counter() - self.started
        rss = psutil.Process().memory_info().rss / 2**20
        print(f"[{elapsed:6.1f}s {rss:5.0f} MiB] {message}", file=sys.stderr, flush=True)

    @property
    def bootstrap(self) -> str:
        return self.broker.bootstrap_servers

    @property
    def is_mock(self) -> bool:
        return self.broker.kind is BrokerKind.MOCK

    def name(self, scenario: str, what: str) -> str:
        return f"bench-{self.run_id}-{scenario}-{what}"

    def partitions_for(self, records: int, value_bytes: float) -> int:
        """Enough partitions that the mock cluster's retention keeps every record."""
        if not self.is_mock:
            return DEFAULT_PARTITIONS
        total = records * (value_bytes + RECORD_OVERHEAD_BYTES)
        return max(DEFAULT_PARTITIONS, math.ceil(total / MOCK_PARTITION_BYTES))

    def settings(self, scenario: str, **overrides: str) -> dict[str, str]:
        """The connector's environment for one scenario: its own topics and group."""
        return {
            "TOLOKA_API_KEY": self.sim.api_key,
            "TOLOKA_BASE_URL": self.sim.base_url,
            "TOLOKA_APP_PROJECT_ID": self.sim.project_id,
            "KAFKA_BOOTSTRAP_SERVERS": self.bootstrap,
            "CONNECTOR_INPUT_TOPIC": self.name(scenario, "items"),
            "CONNECTOR_OUTPUT_TOPIC": self.name(scenario, "results"),
            "CONNECTOR_DLQ_TOPIC": self.name(scenario, "dlq"),
            "CONNECTOR_STATE_TOPIC": self.name(scenario, "state"),
            "CONNECTOR_GROUP_ID": self.name(scenario, "group"),
            "CONNECTOR_METRICS_PORT": "0",
            **overrides,
        }

    def create_topics(
        self, settings: dict[str, str], input_partitions: int, output_partitions: int
    ) -> None:
        """The connector's topics (as `check --create-topics` makes them), resized."""
        loaded = load_settings(environ=settings)
        sized = {
            loaded.uploader.input_topic: input_partitions,
            loaded.poller.output_topic: output_partitions,
        }
        specs = [
            TopicSpec(spec.name, sized.get(spec.name, spec.partitions), spec.compacted)
            for spec in connector_topics(loaded)
        ]
        self.broker.create_topics(specs)
        for spec in specs:
            self.inspector.wait_for_topic(spec.name)

    def create_topic(self, name: str, partitions: int) -> None:
        self.broker.create_topics([TopicSpec(name, partitions)])
        self.inspector.wait_for_topic(name)

    def start(self, role: str, settings: dict[str, str], tag: str) -> ConnectorProcess:
        return ConnectorProcess([role], settings, self.workdir / f"{tag}.log")

    def profiler(self, pid: int, tag: str, rate: int = 100, mode: str = "gil") -> Profiler | None:
        if not self.profiling:
            return None
        return Profiler(pid, self.workdir / f"{tag}.profile.txt", rate, mode)

    @staticmethod
    def summary(
        raws: list[Path], label: str, only_under: str | None = None
    ) -> ProfileSummary | None:
        return summarise(raws, label, only_under=only_under) if raws else None

    def sim_clock_offset(self) -> float:
        """Simulator clock minus our wall clock, in seconds (seeding moves its clock ahead)."""
        before = time.time()
        now_micros = int(self.sim.admin("GET", "/clock")["now_micros"])
        after = time.time()
        return now_micros / 1_000_000 - (before + after) / 2

    def close(self) -> None:
        self.inspector.close()
