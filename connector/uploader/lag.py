"""Consumer lag per assigned input partition, from librdkafka's statistics (`stats_cb`).

librdkafka reports `consumer_lag` (high watermark minus the committed offset) every
`statistics.interval.ms`; -1 means not known yet. Partitions that leave the assignment lose
their series, so a dashboard does not show a frozen lag for a partition another member owns.
Whether Kafka is reachable is read from the same reports by `connector.kafka.availability`.
"""

from __future__ import annotations

import contextlib
import logging

import orjson

from connector.metrics import Metrics

log = logging.getLogger(__name__)


class LagReporter:
    def __init__(self, metrics: Metrics, topic: str) -> None:
        self._metrics = metrics
        self._topic = topic
        self.publishes = True
        """Whether it sets the `consumer_lag` gauge: on a topic several pipelines share, only
        its first pipeline's does (the lag is the topic's; one series per pipeline would be
        counted once per pipeline in a sum). `backlog()` serves each pipeline either way."""
        self._assigned: set[int] = set()
        self._lags: dict[int, int] = {}

    def assigned(self, partitions: set[int]) -> None:
        self._assigned |= partitions

    def revoked(self, partitions: set[int]) -> None:
        for partition in partitions & self._assigned:
            if self.publishes:
                with contextlib.suppress(KeyError):  # no statistics arrived for it
                    self._metrics.consumer_lag.remove(self._topic, str(partition))
            self._lags.pop(partition, None)
        self._assigned -= partitions

    def backlog(self) -> int:
        """Records of the assigned partitions after their committed offsets, as last reported
        (librdkafka's `consumer_lag`: read or not, they are still to be done; a partition with
        no committed offset yet reports none)."""
        return sum(list(self._lags.values()))

    def on_statistics(self, stats_json: str) -> None:
        """The consumer's `stats_cb`."""
        try:
            stats = orjson.loads(stats_json)
            partitions = stats.get("topics", {}).get(self._topic, {}).get("partitions", {})
        except (orjson.JSONDecodeError, AttributeError):
            log.debug("unreadable librdkafka statistics ignored")
            return
        for name, partition_stats in partitions.items():
            if not isinstance(partition_stats, dict):
                continue
            lag = partition_stats.get("consumer_lag", -1)
            if name.isdigit() and int(name) in self._assigned and lag >= 0:
                self._lags[int(name)] = lag
                if self.publishes:
                    self._metrics.consumer_lag.labels(self._topic, name).set(lag)
