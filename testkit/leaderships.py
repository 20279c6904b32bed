"""Several app projects across several connector processes: who leads which pipeline (from the
processes' logs), how long each pipeline went without a live leader, and a steady feed of items
into every project of a simulator (`--also-serve`) through its Apps API over TCP."""

from __future__ import annotations

import threading
import time
import uuid
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

from connector.simulator.process import SimulatorProcess
from testkit.processes import ConnectorProcess

SAMPLE_SECONDS = 0.1


def standing(process: ConnectorProcess, project: str) -> str | None:
    """What the poller of `project` in `process` last said it was (leader, standby), if any."""
    marker = f"poller of app project {project}: "
    lines = list(process.lines(marker))
    return lines[-1].rsplit(marker, 1)[1].strip() if lines else None


def leaders(processes: Sequence[ConnectorProcess], project: str) -> list[ConnectorProcess]:
    """The live processes whose poller of `project` leads it."""
    return [p for p in processes if p.alive() and standing(p, project) == "leader"]


def spread(processes: Sequence[ConnectorProcess], projects: Sequence[str]) -> list[int] | None:
    """How many pipelines each live process leads (ascending), when every pipeline has exactly
    one live leader; None otherwise."""
    counts: Counter[int] = Counter()
    for project in projects:
        found = leaders(processes, project)
        if len(found) != 1:
            return None
        counts[found[0].pid] += 1
    live = [p for p in processes if p.alive()]
    return sorted(counts[p.pid] for p in live)


def balanced(processes: Sequence[ConnectorProcess], projects: Sequence[str]) -> bool:
    """Every pipeline led once, and the live processes' counts at most one apart (so none leads
    more than ⌈M/N⌉): what the cooperative-sticky assignor settles on once every member joined."""
    counts = spread(processes, projects)
    if counts is None:
        return False
    return max(counts) - min(counts) <= 1


@dataclass
class VacancyWatch:
    """Samples the leaders of `projects` every SAMPLE_SECONDS in a thread and keeps, for each,
    the longest stretch with no live leader since `reset()` (a killed leader counts as gone
    at once; a revoked one once it says standby)."""

    processes: list[ConnectorProcess]
    projects: Sequence[str]
    longest: dict[str, float] = field(default_factory=dict)
    _since: dict[str, float] = field(default_factory=dict)
    _stop: threading.Event = field(default_factory=threading.Event)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        self._thread = threading.Thread(target=self._run, name="vacancy-watch", daemon=True)
        self._thread.start()

    def reset(self) -> None:
        with self._lock:
            self.longest = {}
            self._since = {}

    def _run(self) -> None:
        while not self._stop.wait(SAMPLE_SECONDS):
            now = time.monotonic()
            with self._lock:
                for project in self.projects:
                    if leaders(list(self.processes), project):
                        self._since.pop(project, None)
                        continue
                    since = self._since.setdefault(project, now)
                    self.longest[project] = max(self.longest.get(project, 0.0), now - since)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(10)


class ItemFeed:
    """Creates items in every project at `per_second` each (bulk requests of a few), in a
    thread, until `close()`; `created[project]` are the input ids sent and answered 2xx."""

    def __init__(
        self, simulator: SimulatorProcess, projects: Sequence[str], per_second: float
    ) -> None:
        self._simulator = simulator
        self._projects = list(projects)
        self._interval = 1.0 / per_second
        self.created: dict[str, list[str]] = {project: [] for project in projects}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="item-feed", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        with self._simulator.client() as http:
            n = 0
            while not self._stop.wait(self._interval):
                for project in self._projects:
                    item_id = f"{project}-{n}"
                    url = f"{self._simulator.base_url}/app-projects/{project}/items/bulk"
                    body = {"items": [{"id": item_id, "text": f"text {n}"}]}
                    http.post(url, json=body).raise_for_status()
                    self.created[project].append(item_id)
                n += 1

    def total(self) -> int:
        return sum(len(ids) for ids in self.created.values())

    def close(self) -> None:
        self._stop.set()
        self._thread.join(30)


def pipelines_environ(
    simulator: SimulatorProcess,
    bootstrap_servers: str,
    state_topic: str,
    group_prefix: str,
    *,
    leader_timeout_seconds: float = 3.0,
    **more: str,
) -> dict[str, str]:
    """The environment of a connector process serving several projects of `simulator`: its
    `[[pipelines]]` come from a config file; the shared settings from here, with a group of
    its own and quick standby polls."""
    return {
        "TOLOKA_API_KEY": simulator.api_key,
        "TOLOKA_BASE_URL": simulator.base_url,
        "KAFKA_BOOTSTRAP_SERVERS": bootstrap_servers,
        "CONNECTOR_STATE_TOPIC": state_topic,
        "CONNECTOR_GROUP_ID": f"{group_prefix}-{uuid.uuid4().hex[:8]}",
        "CONNECTOR_LEADER_TIMEOUT_SECONDS": f"{leader_timeout_seconds:g}",
        "CONNECTOR_POLL_INTERVAL_SECONDS": "0.2",
        "CONNECTOR_IDLE_POLL_INTERVAL_SECONDS": "0.3",
        **more,
    }
