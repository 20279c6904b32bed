"""Dead letters: the original record (key, value whole, headers) plus why it could not be uploaded.

Produced with an idempotent producer. The record's offset counts as done only when the broker has
acknowledged its dead letter (`on_written` runs from the delivery report), so a commit never
passes a record whose dead letter could still be lost.

A dead letter the broker does not acknowledge stays pending and is produced again, never dropped
and never cut down (the contract keeps the value whole). What such failures may cost is bounded:
- a failed delivery, or one refused locally (an unknown topic, a full queue), is produced again
  after a backoff that grows while failures go on, from the loop's thread — never from inside a
  delivery report, which runs within `poll()`;
- `pending_partitions()` names the partitions whose dead letters are pending while their bytes
  are above `max_pending_bytes`: the loop pauses them, so a broken dead-letter topic cannot make
  the uploader read (and hold) records without end;
- `check_deadline()` raises once a dead letter has waited longer than `timeout_seconds`: the
  uploader stops with one line naming the topic and the last error; the record is read again
  after a restart.

The connector's headers follow the original ones, so a consumer that reads the last value of a
header sees this dead letter's reason even for a record that was dead-lettered before.
"""

from __future__ import annotations

import itertools
import logging
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

from confluent_kafka import KafkaError, KafkaException

from connector.clock import Clock
from connector.contract.dead_letters import (
    API_REQUEST_ID_HEADER,
    MESSAGE_HEADER,
    REASON_HEADER,
    SOURCE_OFFSET_HEADER,
    SOURCE_PARTITION_HEADER,
    SOURCE_TOPIC_HEADER,
    error_message,
)
from connector.errors import DeadLetterStuckError, KafkaOperationError
from connector.kafka.clients import Header, Message, Producer
from connector.kafka.produce import produce_when_room
from connector.metrics import Metrics
from connector.uploader.decode import Refusal

log = logging.getLogger(__name__)

HEADERS_ALLOWANCE_BYTES = 64 * 1024
"""Room for the headers a dead letter adds to its record (`error-message` is at most 2,000
characters) and the record framing, on top of the largest record the consumer can receive."""

RETRY_BASE_SECONDS = 0.5
RETRY_CAP_SECONDS = 10.0


def dead_letter_headers(message: Message, refusal: Refusal, request_id: str | None) -> list[Header]:
    original = message.headers() or []
    headers: list[Header] = list(original.items() if isinstance(original, dict) else original)
    headers += [
        (REASON_HEADER, refusal.reason.encode()),
        (MESSAGE_HEADER, error_message(refusal.message)),
        (SOURCE_TOPIC_HEADER, str(message.topic()).encode()),
        (SOURCE_PARTITION_HEADER, str(message.partition()).encode()),
        (SOURCE_OFFSET_HEADER, str(message.offset()).encode()),
    ]
    if request_id:
        headers.append((API_REQUEST_ID_HEADER, request_id.encode()))
    return headers


@dataclass(eq=False, slots=True)
class _Letter:
    serial: int
    partition: int
    key: bytes | None
    value: bytes | None
    headers: list[Header]
    reason: str
    on_written: Callable[[], None]
    size: int
    written_at: float
    """When it was first handed to the producer (monotonic): the deadline counts from here."""
    forgotten: bool = False
    """Its partition was revoked: the new owner reads the record again, so it is not resent."""


def _size(key: bytes | None, value: bytes | None, headers: list[Header]) -> int:
    named = sum(len(name) + len(header or b"") for name, header in headers)
    return len(key or b"") + len(value or b"") + named


class DeadLetterWriter:
    """Produces dead letters to `topic`; every method runs on the loop's thread (delivery
    reports too: they are served by the loop's `poll()`/`flush()` calls)."""

    def __init__(
        self,
        producer: Producer,
        topic: str,
        metrics: Metrics,
        clock: Clock,
        *,
        max_pending_bytes: int,
        timeout_seconds: float,
        source: str = "",
        pipeline: str = "",
    ) -> None:
        """`source` and `pipeline`: the input topic and app project of the records, named in
        the errors that end the role (several pipelines share one loop)."""
        self._producer = producer
        self._topic = topic
        self._source = source
        self._pipeline = pipeline
        self._metrics = metrics
        self._clock = clock
        self._max_pending_bytes = max_pending_bytes
        self._timeout = timeout_seconds
        self._serials = itertools.count()
        self._pending: dict[int, _Letter] = {}
        """Written and not yet acknowledged, oldest first (dicts keep insertion order)."""
        self._pending_bytes = 0
        self._pending_by_partition: Counter[int] = Counter()
        self._unsent: deque[_Letter] = deque()
        """To hand to the producer now."""
        self._failed: deque[_Letter] = deque()
        """To hand to the producer again once `_retry_at` has come."""
        self._retry_at = 0.0
        self._retry_delay = RETRY_BASE_SECONDS
        self._last_error: str | None = None
        """The last failure since the last acknowledgement; None while deliveries succeed."""

    @property
    def unacknowledged(self) -> int:
        """Dead letters written and not yet acknowledged by the broker."""
        return len(self._pending)

    @property
    def waiting_for_room(self) -> bool:
        """Dead letters wait for room in the producer's full queue."""
        return bool(self._unsent)

    @property
    def failing(self) -> str | None:
        """The last delivery error while dead letters fail to be delivered, else None."""
        return self._last_error if self._pending else None

    def write(
        self,
        message: Message,
        refusal: Refusal,
        request_id: str | None,
        partition: int,
        on_written: Callable[[], None],
    ) -> None:
        headers = dead_letter_headers(message, refusal, request_id)
        key, value = message.key(), message.value()
        letter = _Letter(
            next(self._serials), partition, key, value, headers, refusal.reason, on_written,
            _size(key, value, headers), self._clock.monotonic(),
        )  # fmt: skip
        self._pending[letter.serial] = letter
        self._pending_bytes += letter.size
        self._pending_by_partition[partition] += 1
        self._unsent.append(letter)
        self._send()
        self._update_gauge()

    def send_due(self) -> None:
        """Hand the producer what waits for it: failed dead letters once their backoff ended,
        and those a full queue held back."""
        if self._failed and self._clock.monotonic() >= self._retry_at:
            self._unsent.extend(self._failed)
            self._failed.clear()
        self._send()

    def pending_partitions(self) -> set[int]:
        """The partitions to pause: those holding pending dead letters, while the pending bytes
        are above the bound."""
        if self._pending_bytes <= self._max_pending_bytes:
            return set()
        return set(self._pending_by_partition)

    def check_deadline(self) -> None:
        """DeadLetterStuckError when the oldest pending dead letter is past the deadline."""
        oldest = next(iter(self._pending.values()), None)
        if oldest is None:
            return
        waited = self._clock.monotonic() - oldest.written_at
        if waited <= self._timeout:
            return
        raise DeadLetterStuckError(
            f"a dead letter ({oldest.size} bytes, from input partition "
            f"{self._source}[{oldest.partition}]{self._of_pipeline()}) was "
            f"not acknowledged by topic {self._topic} within {self._timeout:g} s "
            f"(CONNECTOR_DLQ_TIMEOUT_SECONDS); last error: {self._last_error or 'none reported'}"
            f"; {len(self._pending)} dead letters pending, their records are read again after "
            "a restart"
        )

    def forget_partitions(self, partitions: set[int]) -> None:
        """Their records are read again by the partitions' next owner: stop resending theirs."""
        for letter in list(self._pending.values()):
            if letter.partition in partitions:
                letter.forgotten = True
                self._settle(letter)
        self._unsent = deque(letter for letter in self._unsent if not letter.forgotten)
        self._failed = deque(letter for letter in self._failed if not letter.forgotten)
        self._update_gauge()

    def _send(self) -> None:
        while self._unsent:
            letter = self._unsent[0]
            try:
                sent = produce_when_room(
                    partial(self._produce, letter),
                    self._producer.poll,
                    wait_seconds=0,
                    give_up_at=self._clock.monotonic(),  # the queue is full: next step
                    now=self._clock.monotonic,
                )  # fmt: skip
            except KafkaException as failure:
                self._unsent.popleft()
                self._refused_locally(letter, failure.args[0])
                continue
            if not sent:
                return
            self._unsent.popleft()

    def _produce(self, letter: _Letter) -> None:
        self._producer.produce(
            self._topic, value=letter.value, key=letter.key, headers=letter.headers,
            on_delivery=self._report_for(letter),
        )  # fmt: skip

    def _refused_locally(self, letter: _Letter, error: KafkaError) -> None:
        if error.fatal() or error.code() == KafkaError.MSG_SIZE_TOO_LARGE:
            raise KafkaOperationError(
                f"the dead-letter producer cannot write to topic {self._topic}: {error.str()} "
                f"(a dead letter of {letter.size} bytes from input partition "
                f"{self._source}[{letter.partition}]{self._of_pipeline()})"
            )
        self._failed_delivery(letter, error)

    def _of_pipeline(self) -> str:
        return f" of pipeline {self._pipeline}" if self._pipeline else ""

    def _report_for(self, letter: _Letter) -> Callable[[KafkaError | None, Any], None]:
        def delivered(error: KafkaError | None, _message: Any) -> None:
            if error is None:
                self._delivered(letter)
            else:
                self._failed_delivery(letter, error)

        return delivered

    def _delivered(self, letter: _Letter) -> None:
        if self._last_error is not None:
            log.info("dead letters are delivered to %s again", self._topic)
            self._last_error = None
            self._retry_delay = RETRY_BASE_SECONDS
        self._metrics.dead_letters.labels(letter.reason).inc()
        if not letter.forgotten:
            self._settle(letter)
            letter.on_written()
        self._update_gauge()

    def _failed_delivery(self, letter: _Letter, error: KafkaError) -> None:
        self._metrics.dead_letter_delivery_failures.inc()
        if letter.forgotten:
            return
        described = error.str()
        if error.code() == KafkaError.MSG_SIZE_TOO_LARGE:
            described += (
                f" (a dead letter of {letter.size} bytes: raise the max.message.bytes of topic "
                f"{self._topic})"
            )
        if self._last_error is None:
            log.error(
                "dead letters are not delivered to %s (%s): producing them again; partitions "
                "holding over %d pending bytes pause, and the uploader stops after %g s "
                "(CONNECTOR_DLQ_TIMEOUT_SECONDS)",
                self._topic, described, self._max_pending_bytes, self._timeout,
            )  # fmt: skip
        self._last_error = described
        if not self._failed:
            self._retry_at = self._clock.monotonic() + self._retry_delay
            self._retry_delay = min(self._retry_delay * 2, RETRY_CAP_SECONDS)
        self._failed.append(letter)

    def _settle(self, letter: _Letter) -> None:
        if self._pending.pop(letter.serial, None) is None:
            return
        self._pending_bytes -= letter.size
        self._pending_by_partition[letter.partition] -= 1
        if not self._pending_by_partition[letter.partition]:
            del self._pending_by_partition[letter.partition]

    def _update_gauge(self) -> None:
        self._metrics.dead_letters_pending.set(len(self._pending))
