"""Reads the output and dead-letter topics as a downstream consumer would (read_committed)."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, cast

import orjson
from confluent_kafka import Consumer, Message

from connector.contract.dead_letters import REASON_HEADER
from connector.logs import kafka_logger


@dataclass
class Observed:
    published_ids: set[str] = field(default_factory=set)
    """Input `id`s (the record keys) whose result arrived."""
    repeated_results: int = 0
    statuses: Counter[str] = field(default_factory=Counter)
    dead_letters: Counter[str] = field(default_factory=Counter)
    latencies_seconds: list[float] = field(default_factory=list)
    """Input record timestamp to result record timestamp, per published item."""
    last_result_at: float = 0.0


def merged(snapshots: Sequence[Observed]) -> Observed:
    """What several observers (one per app project) saw, together."""
    together = Observed()
    for seen in snapshots:
        together.published_ids |= seen.published_ids
        together.repeated_results += seen.repeated_results
        together.statuses += seen.statuses
        together.dead_letters += seen.dead_letters
        together.latencies_seconds += seen.latencies_seconds
        together.last_result_at = max(together.last_result_at, seen.last_result_at)
    return together


class TopicObserver:
    """A background consumer of the output and dead-letter topics, counting what it sees of the
    demo's own items (those in `produced_at`)."""

    def __init__(
        self,
        bootstrap_servers: str,
        output_topic: str,
        dlq_topic: str,
        produced_at: dict[str, float],
        decode: Callable[[bytes], Any] = orjson.loads,
    ) -> None:
        """`decode` reads a result value (JSON, or a registry format's decoder)."""
        self._decode = decode
        self._output_topic = output_topic
        self._produced_at = produced_at
        self._consumer = Consumer(
            {
                "bootstrap.servers": bootstrap_servers,
                "group.id": f"toloka-connector-demo-observer-{id(self)}",
                "isolation.level": "read_committed",
                "auto.offset.reset": "earliest",
                "enable.auto.commit": False,
                "logger": kafka_logger(),
            }
        )
        self._consumer.subscribe([output_topic, dlq_topic])
        self._lock = threading.Lock()
        self._observed = Observed()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="demo-observer", daemon=True)
        self._thread.start()

    def snapshot(self) -> Observed:
        with self._lock:
            o = self._observed
            return Observed(
                set(o.published_ids),
                o.repeated_results,
                Counter(o.statuses),
                Counter(o.dead_letters),
                list(o.latencies_seconds),
                o.last_result_at,
            )

    def close(self) -> None:
        self._stop.set()
        self._thread.join(10)
        self._consumer.close()

    def _run(self) -> None:
        while not self._stop.is_set():
            for message in self._consumer.consume(500, timeout=0.2):
                # Errors here are informational (librdkafka retries on its own); skip them.
                if message.error() is None:
                    self._count(message)

    def _count(self, message: Message) -> None:
        # A consumed message carries its headers as a list of (name, value) pairs.
        pairs = cast(list[tuple[str, bytes | None]], message.headers() or [])
        headers = {name: value or b"" for name, value in pairs}
        key = (message.key() or b"").decode(errors="replace")
        if key not in self._produced_at:
            return  # not one of the demo's items (produce-samples while it keeps running)
        with self._lock:
            observed = self._observed
            if message.topic() != self._output_topic:
                observed.dead_letters[
                    headers.get(REASON_HEADER, b"?").decode(errors="replace")
                ] += 1
                return
            if key in observed.published_ids:
                observed.repeated_results += 1
                return
            observed.published_ids.add(key)
            observed.statuses[self._decode(message.value() or b"{}").get("status", "?")] += 1
            published_at = message.timestamp()[1] / 1000
            observed.last_result_at = max(observed.last_result_at, published_at)
            produced_at = self._produced_at.get(key)
            if produced_at is not None:
                observed.latencies_seconds.append(published_at - produced_at)
