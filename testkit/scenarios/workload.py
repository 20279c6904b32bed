"""Input records for the chaos runs: valid items at a steady rate with ~2 % malformed ones of
several kinds, each tagged with a `seq` header so that its dead letter can be matched."""

from __future__ import annotations

import logging
import random
import threading
import time
from dataclasses import dataclass, field
from functools import partial

import orjson
from confluent_kafka import KafkaError, Producer

from connector.kafka.produce import produce_when_room

log = logging.getLogger(__name__)

GOOD = "good"
# kind -> the dead-letter reason the uploader must give it
BAD_KINDS: dict[str, str] = {
    "truncated_json": "invalid_json",
    "invalid_utf8": "invalid_json",
    "nan": "invalid_json",
    "duplicate_key": "invalid_json",
    "tombstone": "invalid_json",
    "empty": "invalid_json",
    "array": "not_an_object",
    "wrong_type": "invalid_item",
    "missing_text": "invalid_item",
    "too_large": "too_large",
}


def item_key(seq: int) -> str:
    """The input `id` of the valid record `seq` (also the output record's key)."""
    return f"c-{seq}"


def record_value(seq: int, kind: str, max_record_bytes: int) -> bytes | None:
    key = item_key(seq)
    if kind == GOOD:
        return orjson.dumps({"id": key, "text": f"chaos text {seq}"})
    if kind == "truncated_json":
        return b'{"id": "%s", "text": ' % key.encode()
    if kind == "invalid_utf8":
        return b'{"id": "%s", "text": "\xff\xfe bad"}' % key.encode()
    if kind == "nan":
        return b'{"id": "%s", "text": "t", "score": NaN}' % key.encode()
    if kind == "duplicate_key":
        return b'{"id": "%s", "text": "a", "text": "b"}' % key.encode()
    if kind == "tombstone":
        return None
    if kind == "empty":
        return b""
    if kind == "array":
        return orjson.dumps([key, "text"])
    if kind == "wrong_type":
        return orjson.dumps({"id": key, "text": seq})
    if kind == "missing_text":
        return orjson.dumps({"id": key})
    if kind == "too_large":
        return orjson.dumps({"id": key, "text": "x" * (max_record_bytes + 10)})
    raise ValueError(kind)


def choose_kind(rng: random.Random, bad_ratio: float) -> str:
    if rng.random() >= bad_ratio:
        return GOOD
    return rng.choice(sorted(BAD_KINDS))


@dataclass
class Workload:
    """What was produced and acknowledged by the broker: seq -> kind."""

    delivered: dict[int, str] = field(default_factory=dict)
    failed: list[int] = field(default_factory=list)

    def valid_keys(self) -> set[str]:
        return {item_key(seq) for seq, kind in self.delivered.items() if kind == GOOD}

    def invalid(self) -> dict[int, str]:
        """seq -> expected dead-letter reason."""
        return {seq: BAD_KINDS[kind] for seq, kind in self.delivered.items() if kind != GOOD}


class SteadyProducer:
    """Produces `rate` records a second to `topic` in a thread until `stop()` or `count`."""

    def __init__(
        self,
        bootstrap_servers: str,
        topic: str,
        *,
        rate: float,
        count: int,
        seed: int,
        bad_ratio: float = 0.02,
        max_record_bytes: int = 4096,
        partitions: int = 4,
    ) -> None:
        self.topic = topic
        self.rate = rate
        self.count = count
        self.bad_ratio = bad_ratio
        self.max_record_bytes = max_record_bytes
        self.partitions = partitions
        self.workload = Workload()
        self._rng = random.Random(seed)  # noqa: S311 - a reproducible workload
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._producer = Producer(
            {
                "bootstrap.servers": bootstrap_servers,
                "enable.idempotence": True,
                "linger.ms": 10,
                # Broker faults last seconds; nothing produced may expire during one.
                "message.timeout.ms": 600_000,
            }
        )
        self._thread = threading.Thread(target=self._run, name="chaos-producer", daemon=True)
        self.produced = 0

    def start(self) -> None:
        self._thread.start()

    def _delivered(self, seq: int, kind: str, error: KafkaError | None) -> None:
        with self._lock:
            if error is None:
                self.workload.delivered[seq] = kind
            else:
                self.workload.failed.append(seq)
                log.error("record %d not delivered: %s", seq, error)

    def _run(self) -> None:
        started = time.monotonic()
        for seq in range(self.count):
            due = started + seq / self.rate
            while not self._stop.is_set():
                left = due - time.monotonic()
                if left <= 0:
                    break
                self._producer.poll(min(left, 0.05))  # pacing, and serving delivery reports
            if self._stop.is_set():
                break
            kind = choose_kind(self._rng, self.bad_ratio)
            value = record_value(seq, kind, self.max_record_bytes)

            def report(error: KafkaError | None, _msg: object, s: int = seq, k: str = kind) -> None:
                self._delivered(s, k, error)

            produce_when_room(
                partial(
                    self._producer.produce,
                    self.topic,
                    value=value,
                    key=item_key(seq).encode(),
                    partition=seq % self.partitions,
                    headers=[("seq", str(seq).encode())],
                    on_delivery=report,
                ),
                self._producer.poll,
                wait_seconds=0.1,
            )
            self.produced += 1

    def stop(self) -> None:
        self._stop.set()

    def finish(self, timeout: float = 300.0) -> Workload:
        """Wait until everything produced is acknowledged (the thread ends after `count`)."""
        self._thread.join(timeout)
        left = self._producer.flush(timeout)
        if left:
            raise RuntimeError(f"{left} chaos records still unacknowledged after {timeout}s")
        return self.workload

    @property
    def done(self) -> bool:
        return not self._thread.is_alive()
