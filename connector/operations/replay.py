"""`replay-dlq`: dead letters back to the input topic, as the records they were.

The dead-letter topic is read from `from_offset` (or the first retained record) to where it ended
when the replay began, with a consumer that joins no group: a replay never chases the dead
letters a running uploader writes meanwhile, and it can be repeated (a repeat replays again; the
`replayed-from` header lets a consumer recognise a record it has seen).

Each selected record is produced with its original key, value and headers plus `replayed-from`
(`topic/partition/offset` of the dead letter) by an idempotent producer, so a retried produce
never duplicates it. The partitioner places it by its key, like any new input record.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from typing import Any

from confluent_kafka import KafkaError, Producer

from connector.errors import KafkaOperationError
from connector.kafka.limits import copying_producer_max_bytes
from connector.logs import kafka_logger
from connector.operations.dead_letter_records import DeadLetter, read_dead_letter
from connector.operations.kafka_reads import looking_consumer, partitions_of, read_until, watermarks

DEFAULT_REASONS = ("invalid_item", "rejected", "too_large")
"""Reasons whose cause lies outside the record bytes (the app's input_spec, the API's judgement,
CONNECTOR_MAX_RECORD_BYTES), so a fix there lets the same record through. `invalid_json` and
`not_an_object` are about the bytes themselves, which a replay repeats unchanged."""

_FULL_QUEUE_WAIT_SECONDS = 0.1


@dataclass
class ReplaySummary:
    replayed: Counter[str] = field(default_factory=Counter)
    """Records (to be) produced to the input topic, per reason."""
    not_selected: Counter[str] = field(default_factory=Counter)
    """Dead letters whose reason was not asked for, per reason."""
    value_dropped: Counter[str] = field(default_factory=Counter)
    """Asked-for dead letters that lost their value (too large for the dead-letter topic)."""

    def lines(self, dry_run: bool) -> list[str]:
        verb = "would replay" if dry_run else "replayed"
        lines = [f"{verb} {sum(self.replayed.values())} record(s)"]
        lines += [f"  {reason}: {count}" for reason, count in sorted(self.replayed.items())]
        if self.not_selected:
            lines.append(f"left alone (reason not selected): {sum(self.not_selected.values())}")
            lines += [f"  {reason}: {count}" for reason, count in sorted(self.not_selected.items())]
        if self.value_dropped:
            lines.append(
                f"not replayable (value dropped from the dead letter): "
                f"{sum(self.value_dropped.values())}"
            )
        return lines


@dataclass(frozen=True)
class ReplayRequest:
    dlq_topic: str
    input_topic: str
    reasons: Collection[str]
    from_offset: int = 0
    max_records: int | None = None
    dry_run: bool = False


def select(dead_letter: DeadLetter, reasons: Collection[str], summary: ReplaySummary) -> bool:
    """True when `dead_letter` is to be replayed; counts it in `summary` either way."""
    if dead_letter.reason not in reasons:
        summary.not_selected[dead_letter.reason] += 1
        return False
    if dead_letter.value_dropped:
        summary.value_dropped[dead_letter.reason] += 1
        return False
    summary.replayed[dead_letter.reason] += 1
    return True


class _Republisher:
    """An idempotent producer that remembers failed deliveries."""

    def __init__(self, kafka_config: Mapping[str, str], topic: str, timeout: float) -> None:
        self._topic = topic
        self._timeout = timeout
        self._producer = Producer(
            {
                "linger.ms": 20,  # a default: a user's KAFKA_LINGER_MS wins
                **kafka_config,
                # A dead letter holds its record whole, however large (too_large ones too).
                "message.max.bytes": copying_producer_max_bytes(kafka_config, 0),
                "enable.idempotence": True,
                "logger": kafka_logger(),
            }
        )
        self.failures: list[KafkaError] = []

    def produce(self, dead_letter: DeadLetter) -> None:
        """Produce one record; a full local queue is waited out (serving delivery reports) for
        at most the replay's timeout."""
        deadline = time.monotonic() + self._timeout
        while True:
            try:
                self._producer.produce(
                    self._topic,
                    key=dead_letter.key,
                    value=dead_letter.value,
                    headers=dead_letter.replay_headers(),
                    on_delivery=self._delivered,
                )
                break
            except BufferError:
                if time.monotonic() >= deadline:
                    raise KafkaOperationError(
                        f"the producer's queue for {self._topic} stayed full for "
                        f"{self._timeout:g} s: Kafka does not take the replayed records"
                    ) from None
                # The local queue is full: serve delivery reports until there is room.
                self._producer.poll(_FULL_QUEUE_WAIT_SECONDS)
        self._producer.poll(0)

    def _delivered(self, error: KafkaError | None, _message: Any) -> None:
        if error is not None:
            self.failures.append(error)

    def finish(self, timeout: float) -> None:
        remaining = self._producer.flush(timeout)
        if remaining or self.failures:
            reason = self.failures[0].str() if self.failures else "timed out"
            raise KafkaOperationError(
                f"{len(self.failures) + remaining} replayed record(s) not delivered to "
                f"{self._topic} ({reason}); the others were: replaying again repeats them"
            )


def replay_dead_letters(
    kafka_config: Mapping[str, str],
    request: ReplayRequest,
    *,
    timeout: float,
    on_selected: Callable[[DeadLetter], None] = lambda _: None,
) -> ReplaySummary:
    summary = ReplaySummary()
    consumer = looking_consumer(kafka_config)
    try:
        partitions = partitions_of(consumer, request.dlq_topic, timeout)
        partitions_of(consumer, request.input_topic, timeout)  # never auto-create it
        marks = watermarks(consumer, request.dlq_topic, partitions, timeout)
        starts = {p: max(request.from_offset, m.low) for p, m in marks.items()}
        ends = {p: m.high for p, m in marks.items()}
        republisher = (
            None if request.dry_run else _Republisher(kafka_config, request.input_topic, timeout)
        )
        replayed = 0
        for message in read_until(consumer, request.dlq_topic, starts, ends, idle_timeout=timeout):
            dead_letter = read_dead_letter(message)
            if not select(dead_letter, request.reasons, summary):
                continue
            on_selected(dead_letter)
            if republisher is not None:
                republisher.produce(dead_letter)
            replayed += 1
            if request.max_records is not None and replayed >= request.max_records:
                break
        if republisher is not None:
            republisher.finish(timeout)
    finally:
        consumer.close()
    return summary
