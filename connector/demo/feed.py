"""Sample records onto the input topic at a steady rate: the demo's feed and `produce-samples`."""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from confluent_kafka import KafkaError, Producer

from connector.demo.samples import SampleRecord
from connector.interrupts import librdkafka_call
from connector.kafka.produce import produce_when_room
from connector.logs import kafka_logger

FLUSH_SECONDS = 30.0


@dataclass
class Feed:
    """Produces `records` at `rate` per second (0: as fast as possible), remembering when each
    went out (`produced_at`, by key) and counting what the broker acknowledged (`delivered`)."""

    records: list[SampleRecord]
    kafka_config: Mapping[str, str]
    topic: str
    rate: float
    produced_at: dict[str, float] = field(default_factory=dict)
    delivered: int = 0
    failures: list[str] = field(default_factory=list)

    def run(self, stop: threading.Event) -> int:
        """Produce until every record went out or `stop` is set, then wait for the deliveries
        (also when Ctrl-C ends it early); the number of records left unconfirmed."""
        producer = Producer(
            {**self.kafka_config, "linger.ms": 5, "enable.idempotence": True,
             "delivery.report.only.error": False, "logger": kafka_logger()}
        )  # fmt: skip
        try:
            self._produce_all(producer, stop)
        finally:
            with librdkafka_call():
                left = int(producer.flush(FLUSH_SECONDS))
        return left

    def _produce_all(self, producer: Producer, stop: threading.Event) -> None:
        started = time.monotonic()
        for number, record in enumerate(self.records):
            if self.rate > 0:
                # Pace by the schedule, not by a fixed gap: slow produce calls catch up.
                ahead = started + number / self.rate - time.monotonic()
                if ahead > 0 and stop.wait(ahead):
                    return
            if stop.is_set():
                return
            self.produced_at[record.key.decode()] = time.time()
            produce_when_room(
                partial(self._send, producer, record), partial(_poll, producer), wait_seconds=0.1
            )
            _poll(producer, 0)

    def _send(self, producer: Producer, record: SampleRecord) -> None:
        with librdkafka_call():
            producer.produce(self.topic, record.value, record.key, on_delivery=self._delivered)

    def _delivered(self, error: KafkaError | None, _message: Any) -> None:
        if error is None:
            self.delivered += 1
        else:
            self.failures.append(error.str())


def _poll(producer: Producer, seconds: float) -> None:
    with librdkafka_call():
        producer.poll(seconds)
