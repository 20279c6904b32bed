"""Dead letters: the original record (key, value, headers) plus why it could not be uploaded.

Produced with an idempotent producer. The record's offset counts as done only when the broker has
acknowledged its dead letter (`on_written` runs from the delivery report), so a commit never
passes a record whose dead letter could still be lost. A failed delivery is produced again: the
record must not vanish because the dead-letter topic was briefly unavailable.

The connector's headers follow the original ones, so a consumer that reads the last value of a
header sees this dead letter's reason even for a record that was dead-lettered before.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from confluent_kafka import KafkaError, KafkaException

from connector.metrics import Metrics
from connector.uploader.decode import Refusal
from connector.uploader.ports import Header, Message, Producer

log = logging.getLogger(__name__)

MAX_MESSAGE_CHARS = 2000
"""`error-message` is cut to this length: a record with thousands of bad fields must not make a
dead letter larger than the record."""

_BUFFER_FULL_WAIT_SECONDS = 0.1


def dead_letter_headers(message: Message, refusal: Refusal, request_id: str | None) -> list[Header]:
    text = refusal.message
    if len(text) > MAX_MESSAGE_CHARS:
        text = text[: MAX_MESSAGE_CHARS - 1] + "…"
    original = message.headers() or []
    headers: list[Header] = list(original.items() if isinstance(original, dict) else original)
    headers += [
        ("error-reason", refusal.reason.encode()),
        ("error-message", text.encode()),
        ("source-topic", str(message.topic()).encode()),
        ("source-partition", str(message.partition()).encode()),
        ("source-offset", str(message.offset()).encode()),
    ]
    if request_id:
        headers.append(("api-request-id", request_id.encode()))
    return headers


class DeadLetterWriter:
    """Produces dead letters to `topic`; `write` may be called from the loop thread only."""

    def __init__(self, producer: Producer, topic: str, metrics: Metrics) -> None:
        self._producer = producer
        self._topic = topic
        self._metrics = metrics
        self.unacknowledged = 0
        """Dead letters written and not yet acknowledged by the broker."""

    def write(
        self,
        message: Message,
        refusal: Refusal,
        request_id: str | None,
        on_written: Callable[[], None],
    ) -> None:
        headers = dead_letter_headers(message, refusal, request_id)
        self.unacknowledged += 1
        self._produce(message.key(), message.value(), headers, refusal, on_written)

    def _produce(
        self,
        key: bytes | None,
        value: bytes | None,
        headers: list[Header],
        refusal: Refusal,
        on_written: Callable[[], None],
    ) -> None:
        def delivered(error: KafkaError | None, _message: Any) -> None:
            if error is None:
                self.unacknowledged -= 1
                self._metrics.dead_letters.labels(refusal.reason).inc()
                on_written()
            elif _too_large(error) and value is not None:
                self._produce(key, None, _value_dropped(headers, value), refusal, on_written)
            else:
                log.error("dead letter not delivered to %s, producing it again: %s",
                          self._topic, error)  # fmt: skip
                self._produce(key, value, headers, refusal, on_written)

        while True:
            try:
                self._producer.produce(
                    self._topic, value=value, key=key, headers=headers, on_delivery=delivered
                )
                return
            except BufferError:
                # The producer's queue is full: serve delivery reports until there is room.
                self._producer.poll(_BUFFER_FULL_WAIT_SECONDS)
            except KafkaException as failure:
                if value is None or not _too_large(failure.args[0]):
                    raise
                headers = _value_dropped(headers, value)
                value = None


def _too_large(error: KafkaError) -> bool:
    return bool(error.code() == KafkaError.MSG_SIZE_TOO_LARGE)


def _value_dropped(headers: list[Header], value: bytes) -> list[Header]:
    """A record too large for the dead-letter topic keeps its key and headers, loses its value,
    and says so (a `too_large` record near the broker's message size limit ends up here)."""
    log.warning("dead letter of %d value bytes is too large for the topic: value dropped",
                len(value))  # fmt: skip
    return [*headers, ("error-value-dropped", f"{len(value)} bytes".encode())]
