"""What the poller's integration tests share: settings for a simulator and a broker, pollers in
this process or as `toloka-connector poll` processes (`testkit.processes.ConnectorProcess`), and
reading back what was published."""

from __future__ import annotations

import collections
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import orjson
from confluent_kafka import Message

from connector.app.clients import build_client
from connector.clock import as_utc
from connector.config import Settings, load_settings
from connector.contract.cursor import Cursor
from connector.metrics import Metrics
from connector.poller import Poller, build_poller, read_cursor
from testkit.kafka import read_all
from tests.fixtures.simulator import SimulatorHandle

DEADLINE_SECONDS = 90.0


@dataclass
class PollerSetup:
    simulator: SimulatorHandle
    bootstrap_servers: str
    output_topic: str
    state_topic: str
    overrides: dict[str, str] = field(default_factory=dict)
    dlq_topic: str | None = None
    """Where the poller dead-letters results it cannot publish (the default topic when None)."""

    def environ(self, **overrides: str) -> dict[str, str]:
        return {
            "TOLOKA_API_KEY": self.simulator.api_key,
            "TOLOKA_BASE_URL": self.simulator.base_url,
            "TOLOKA_APP_PROJECT_ID": self.simulator.project_id,
            "KAFKA_BOOTSTRAP_SERVERS": self.bootstrap_servers,
            "CONNECTOR_OUTPUT_TOPIC": self.output_topic,
            "CONNECTOR_STATE_TOPIC": self.state_topic,
            **({"CONNECTOR_DLQ_TOPIC": self.dlq_topic} if self.dlq_topic else {}),
            "CONNECTOR_METRICS_PORT": "0",
            "CONNECTOR_POLL_INTERVAL_SECONDS": "0.2",
            "CONNECTOR_IDLE_POLL_INTERVAL_SECONDS": "0.5",
            "CONNECTOR_LATE_SCAN_INTERVAL_SECONDS": "1",
            "CONNECTOR_LEADER_TIMEOUT_SECONDS": "3",
            "CONNECTOR_API_BACKOFF_BASE_SECONDS": "0.05",
            "CONNECTOR_API_BACKOFF_CAP_SECONDS": "0.5",
            "CONNECTOR_API_MAX_ATTEMPTS": "10",
            **self.overrides,
            **overrides,
        }

    def settings(self, **overrides: str) -> Settings:
        return load_settings(environ=self.environ(**overrides))

    # --- reading back ---------------------------------------------------------------------

    def published(self, isolation_level: str = "read_committed") -> list[Message]:
        return read_all(self.bootstrap_servers, self.output_topic, isolation_level=isolation_level)

    def published_ids(self, isolation_level: str = "read_committed") -> collections.Counter[str]:
        return collections.Counter(item_id(m) for m in self.published(isolation_level))

    def dead_letters(self, isolation_level: str = "read_committed") -> list[Message]:
        assert self.dlq_topic is not None
        return read_all(self.bootstrap_servers, self.dlq_topic, isolation_level=isolation_level)

    def cursor(self) -> Cursor | None:
        return read_cursor(
            {"bootstrap.servers": self.bootstrap_servers},
            self.state_topic,
            self.simulator.project_id,
        )

    def late_horizon(self) -> datetime | None:
        cursor = self.cursor()
        return None if cursor is None else cursor.late_horizon

    # --- the simulator's side ---------------------------------------------------------------

    def create_items(self, count: int, batch: int = 1000) -> None:
        with self.simulator.client() as http:
            for start in range(0, count, batch):
                body = {
                    "items": [
                        {"id": f"k{start + n}", "text": "t"}
                        for n in range(min(batch, count - start))
                    ]
                }
                response = http.post(f"{self.simulator.items_url}/bulk", json=body)
                response.raise_for_status()

    def listed(self) -> list[dict[str, Any]]:
        """Every item of the project as a listing shows it now (sort=id)."""
        items: list[dict[str, Any]] = []
        after: str | None = None
        with self.simulator.client() as http:
            while True:
                params = {"sort": "id", "limit": "1000", **({"after_id": after} if after else {})}
                response = http.get(self.simulator.items_url, params=params)
                if response.status_code != 200:
                    continue  # fault knobs hit the test's own listing too
                page = orjson.loads(response.content)
                items.extend(page["content"])
                if not page["has_more"]:
                    return items
                after = page["content"][-1]["id"]

    def finished_ids(self) -> set[str]:
        return {item["id"] for item in self.listed() if item.get("finished_at")}


def item_id(message: Message) -> str:
    value = dict(message.headers() or [])["toloka-item-id"]
    return value.decode() if isinstance(value, bytes) else str(value)


def utc(value: str) -> datetime:
    return as_utc(datetime.fromisoformat(value))


# --- pollers --------------------------------------------------------------------------------


class PollerThread:
    """A poller built by `build_poller`, run in a thread of this process."""

    def __init__(self, settings: Settings) -> None:
        self.metrics = Metrics()
        self.client = build_client(settings, self.metrics)
        self.poller: Poller = build_poller(settings, self.client, self.metrics)
        self.stop_event = threading.Event()
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, name="poller", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        try:
            self.poller.run(self.stop_event)
        except BaseException as exc:
            self.error = exc

    def stop(self) -> None:
        self.stop_event.set()
        self.thread.join(60)
        self.client.close()
        assert not self.thread.is_alive()
        if self.error is not None:
            raise self.error

    def metric(self, name: str, labels: Mapping[str, str] | None = None) -> float:
        value = self.metrics.sample(name, dict(labels or {}))
        return 0.0 if value is None else value
