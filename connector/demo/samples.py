"""Sample input records for the demo: moderation texts, a few of them malformed on purpose."""

from __future__ import annotations

import random
from dataclasses import dataclass

import orjson

_SUBJECTS = (
    "The delivery",
    "This phone",
    "Our new neighbour",
    "The hotel breakfast",
    "My landlord",
    "The support team",
    "This update",
    "The city council",
    "The match last night",
    "The movie",
)
_VERDICTS = (
    "was great, thanks a lot!",
    "arrived two days late but works fine.",
    "is a complete scam, do not buy!!!",
    "made my day, highly recommended.",
    "is run by idiots who should be fired.",
    "could be better, the manual is confusing.",
    "click here to win a free iPhone: bit.ly/fr33",
    "was okay, nothing special.",
    "deserves every bad review it gets, absolute garbage.",
    "is exactly as described.",
)

# One record in MALFORMED_EVERY is broken, rotating through the ways a producer gets it wrong.
MALFORMED_EVERY = 100
_MALFORMED: tuple[tuple[str, bytes], ...] = (
    ("invalid_json", b'{"id": "broken", "text": "unterminated'),
    ("not_an_object", b'["a list", "is not", "an item"]'),
    ("invalid_item", b'{"id": "no-text", "comment": "the required text field is missing"}'),
)


@dataclass(frozen=True)
class SampleRecord:
    key: bytes
    value: bytes
    expected: str
    """`valid`, or the dead-letter reason the connector should give it."""


def sample_records(
    count: int, seed: int = 7, *, prefix: str = "item", malformed: bool = True
) -> list[SampleRecord]:
    """`count` records keyed (and with `id`s) `<prefix>-0`, `<prefix>-1` …; one in
    MALFORMED_EVERY is malformed unless `malformed` is False."""
    rng = random.Random(seed)  # noqa: S311 - sample data, not secrets
    records = []
    for number in range(count):
        key = f"{prefix}-{number}".encode()
        if malformed and number % MALFORMED_EVERY == MALFORMED_EVERY // 2:
            reason, value = _MALFORMED[(number // MALFORMED_EVERY) % len(_MALFORMED)]
            records.append(SampleRecord(key, value, reason))
            continue
        text = f"{rng.choice(_SUBJECTS)} {rng.choice(_VERDICTS)}"
        value = orjson.dumps({"id": key.decode(), "text": text})
        records.append(SampleRecord(key, value, "valid"))
    return records
