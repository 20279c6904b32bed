"""Consumer lag per assigned input partition and whether any broker is reachable, from
librdkafka's statistics (`stats_cb`).

librdkafka reports `consumer_lag` (high watermark minus the consumer's position) every
`statistics.interval.ms`; -1 means not known yet. Partitions that leave the assignment lose
their series, so a dashboard does not show a frozen lag for a partition another member owns.
The same report gives each broker connection's state: with none of the cluster's brokers `UP`,
the uploader is not ready (one log line when that begins and when it ends).
"""

from __future__ import annotations

import contextlib
import logging

import orjson

from connector.logs import state_change
from connector.metrics import Metrics

log = logging.getLogger(__name__)


class LagReporter:
    def __init__(self, metrics: Metrics, topic: str) -> None:
        self._metrics = metrics
        self._topic = topic
        self._assigned: set[int] = set()
        self.kafka_reachable = True
        """False while the last statistics showed no cluster broker connection UP."""

    def assigned(self, partitions: set[int]) -> None:
        self._assigned |= partitions

    def revoked(self, partitions: set[int]) -> None:
        for partition in partitions & self._assigned:
            with contextlib.suppress(KeyError):  # no statistics arrived for it
                self._metrics.consumer_lag.remove(self._topic, str(partition))
        self._assigned -= partitions

    def on_statistics(self, stats_json: str) -> None:
        """The consumer's `stats_cb`."""
        try:
            stats = orjson.loads(stats_json)
            partitions = stats.get("topics", {}).get(self._topic, {}).get("partitions", {})
        except (orjson.JSONDecodeError, AttributeError):
            log.debug("unreadable librdkafka statistics ignored")
            return
        self._observe_brokers(stats.get("brokers"))
        for name, partition_stats in partitions.items():
            if not isinstance(partition_stats, dict):
                continue
            lag = partition_stats.get("consumer_lag", -1)
            if name.isdigit() and int(name) in self._assigned and lag >= 0:
                self._metrics.consumer_lag.labels(self._topic, name).set(lag)

    def _observe_brokers(self, brokers: object) -> None:
        if not isinstance(brokers, dict):
            return
        # Bootstrap entries (nodeid -1) are placeholders: only the cluster's brokers count.
        states = [
            broker.get("state")
            for broker in brokers.values()
            if isinstance(broker, dict) and broker.get("nodeid", -1) >= 0
        ]
        if not states:
            return
        reachable = "UP" in states
        if reachable and not self.kafka_reachable:
            state_change("kafka", "down", "up", "a broker connection is up again")
        elif not reachable and self.kafka_reachable:
            state_change("kafka", "up", "down", "no broker connection is up")
        self.kafka_reachable = reachable
