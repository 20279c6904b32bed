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
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from confluent_kafka import KafkaError, Message, Producer

from connector.errors import KafkaOperationError
from connector.interrupts import librdkafka_call
from connector.kafka.limits import copying_producer_max_bytes
from connector.kafka.produce import produce_when_room
from connector.kafka.reads import first_contact, partitions_of, read_partitions, watermarks
from connector.logs import kafka_logger
from connector.operations.dead_letter_records import DeadLetter, read_dead_letter

_FULL_QUEUE_WAIT_SECONDS = 0.1


@dataclass
class ReplaySummary:
    replayed: Counter[str] = field(default_factory=Counter)
    """Records (to be) produced to the input topic, per reason."""
    not_selected: Counter[str] = field(default_factory=Counter)
    """Dead letters whose reason was not asked for, per reason."""
    value_dropped: Counter[str] = field(default_factory=Counter)
    """Asked-for dead letters that lost their value (too large for the dead-letter topic)."""
    sent: int = 0
    """Records handed to the producer."""
    delivered: Counter[str] = field(default_factory=Counter)
    """Replayed records the broker acknowledged, per reason."""
    delivered_up_to: dict[int, int] = field(default_factory=dict)
    """Per dead-letter partition, the offset after the last dead letter replayed and delivered."""
    interrupted: bool = False
    """Ctrl-C ended the replay early: `delivered` says what was put back."""

    def lines(self, dry_run: bool) -> list[str]:
        if self.interrupted and not dry_run:
            lines = self._interrupted_lines()
        else:
            verb = "would replay" if dry_run else "replayed"
            verb = f"interrupted: {verb}" if self.interrupted else verb
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

    def _interrupted_lines(self) -> list[str]:
        delivered = sum(self.delivered.values())
        lines = [f"interrupted: replayed {delivered} record(s) before it stopped (delivered)"]
        lines += [f"  {reason}: {count}" for reason, count in sorted(self.delivered.items())]
        unconfirmed = self.sent - delivered
        if unconfirmed:
            lines.append(
                f"{unconfirmed} more record(s) were sent but not confirmed: they may have been "
                "replayed too"
            )
        elif self.delivered_up_to:
            resume = ", ".join(
                f"partition {p}: {o}" for p, o in sorted(self.delivered_up_to.items())
            )
            lines.append(f"the dead letters before these offsets were replayed: {resume}")
            if len(self.delivered_up_to) == 1:
                [offset] = self.delivered_up_to.values()
                lines.append(f"to continue where it stopped: replay-dlq --from-offset {offset}")
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
    """An idempotent producer that counts deliveries into `summary` and remembers failures."""

    def __init__(
        self, kafka_config: Mapping[str, str], topic: str, summary: ReplaySummary, timeout: float
    ) -> None:
        self._topic = topic
        self._summary = summary
        self._timeout = timeout
        self._producer = Producer(
            {
                "linger.ms": 20,  # a default: a user's KAFKA_LINGER_MS wins
                **kafka_config,
                # A dead letter holds its record whole, however large (too_large ones too).
                "message.max.bytes": copying_producer_max_bytes(kafka_config, 0),
                "enable.idempotence": True,
                "delivery.report.only.error": False,  # delivered records are counted
                "logger": kafka_logger(),
            }
        )
        self.failures: list[KafkaError] = []

    def produce(self, dead_letter: DeadLetter) -> None:
        """Produce one record; a full local queue is waited out (serving delivery reports) for
        at most the replay's timeout."""

        def delivered(error: KafkaError | None, _message: Any) -> None:
            if error is not None:
                self.failures.append(error)
                return
            self._summary.delivered[dead_letter.reason] += 1
            up_to = self._summary.delivered_up_to
            up_to[dead_letter.partition] = max(
                up_to.get(dead_letter.partition, 0), dead_letter.offset + 1
            )

        def produce() -> None:
            with librdkafka_call():
                self._producer.produce(
                    self._topic,
                    key=dead_letter.key,
                    value=dead_letter.value,
                    headers=dead_letter.replay_headers(),
                    on_delivery=delivered,
                )
                self._summary.sent += 1

        if not produce_when_room(
            produce,
            self._poll,
            wait_seconds=_FULL_QUEUE_WAIT_SECONDS,
            give_up_at=time.monotonic() + self._timeout,
        ):
            raise KafkaOperationError(
                f"the producer's queue for {self._topic} stayed full for "
                f"{self._timeout:g} s: Kafka does not take the replayed records"
            )
        self._poll(0)

    def _poll(self, seconds: float) -> None:
        with librdkafka_call():
            self._producer.poll(seconds)

    def finish(self, timeout: float) -> int:
        """Wait for the deliveries; the number of records still unconfirmed."""
        with librdkafka_call():
            return int(self._producer.flush(timeout))

    def failure(self, remaining: int) -> KafkaOperationError | None:
        if not remaining and not self.failures:
            return None
        reason = self.failures[0].str() if self.failures else "timed out"
        return KafkaOperationError(
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
    """Replay what `request` selects. Ctrl-C (KeyboardInterrupt) ends the reading early: what
    was sent is still flushed, and the summary says what was delivered (`interrupted`)."""
    summary = ReplaySummary()
    consumer, refusals = first_contact(kafka_config)
    republisher: _Republisher | None = None
    try:
        try:
            partitions = partitions_of(consumer, request.dlq_topic, timeout, refusals)
            partitions_of(consumer, request.input_topic, timeout)  # never auto-create it
            marks = watermarks(kafka_config, request.dlq_topic, partitions, timeout)
            starts = {p: max(request.from_offset, m.low) for p, m in marks.items()}
            ends = {p: m.high for p, m in marks.items()}
            if not request.dry_run:
                republisher = _Republisher(kafka_config, request.input_topic, summary, timeout)
            letters = read_partitions(
                consumer, request.dlq_topic, starts, ends=ends, idle_timeout=timeout
            )
            for dead_letter in selected(letters, request, summary):
                on_selected(dead_letter)
                if republisher is not None:
                    republisher.produce(dead_letter)
        except KeyboardInterrupt:
            summary.interrupted = True
        if republisher is not None:
            failure = republisher.failure(republisher.finish(timeout))
            if failure is not None and not summary.interrupted:
                raise failure
    finally:
        consumer.close()
    return summary


def selected(
    messages: Iterable[Message], request: ReplayRequest, summary: ReplaySummary
) -> Iterator[DeadLetter]:
    """The dead letters among `messages` that `request` asks for (at most `max_records`)."""
    count = 0
    for message in messages:
        dead_letter = read_dead_letter(message)
        if not select(dead_letter, request.reasons, summary):
            continue
        yield dead_letter
        count += 1
        if request.max_records is not None and count >= request.max_records:
            return
