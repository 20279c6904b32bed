"""A dead letter read back: why it was refused, and the original record to put back.

The uploader's dead-letter writer (`connector.uploader.dead_letters`) keeps the original headers
and appends its own after them, starting with `error-reason`. So the original headers are exactly
those before the last `error-reason` header, even when the original record carried headers with
the connector's names (a record dead-lettered, replayed and dead-lettered again does).
"""

from __future__ import annotations

from dataclasses import dataclass

from confluent_kafka import Message

from connector.contract.dead_letters import (
    REASON_HEADER,
    REPLAYED_FROM_HEADER,
    VALUE_DROPPED_HEADER,
)
from connector.kafka.clients import Header

NO_REASON = "unknown"
"""The reason reported for a record without an `error-reason` header (not a dead letter the
connector wrote); such records are never replayed."""


@dataclass(frozen=True)
class DeadLetter:
    topic: str
    partition: int
    offset: int
    reason: str
    key: bytes | None
    value: bytes | None
    original_headers: tuple[Header, ...]
    value_dropped: bool

    @property
    def location(self) -> str:
        return f"{self.topic}/{self.partition}/{self.offset}"

    def replay_headers(self) -> list[Header]:
        """The original headers, then where the replayed record came from."""
        return [*self.original_headers, (REPLAYED_FROM_HEADER, self.location.encode())]


def read_dead_letter(message: Message) -> DeadLetter:
    found = message.headers() or []
    headers: list[Header] = list(found.items() if isinstance(found, dict) else found)
    starts = [i for i, (name, _) in enumerate(headers) if name == REASON_HEADER]
    if starts:
        cut = starts[-1]
        original, added = headers[:cut], headers[cut:]
        reason = _text(added[0][1]) or NO_REASON
    else:
        original, added, reason = headers, [], NO_REASON
    return DeadLetter(
        topic=message.topic() or "",
        partition=message.partition() or 0,
        offset=message.offset() or 0,
        reason=reason,
        key=message.key(),
        value=message.value(),
        original_headers=tuple(original),
        value_dropped=any(name == VALUE_DROPPED_HEADER for name, _ in added),
    )


def _text(value: str | bytes | None) -> str:
    if isinstance(value, bytes):
        return value.decode(errors="replace")
    return value or ""
