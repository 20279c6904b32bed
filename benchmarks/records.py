"""Input records: compact JSON items for the simulator's text moderation app.

Values are orjson's own encoding, the form the uploader re-encodes to without change (its fast
path); ids are `<prefix>-<n>`, so the simulator's duplicate count checks an upload. Each value is
copied into a bytes object of its own size: orjson (3.12 and later) returns bytes that keep a
4 KiB allocation, and 200,000 kept values would take 800 MiB instead of 20.
"""

from __future__ import annotations

from collections.abc import Iterator

import orjson

_TEXTS = (
    "The delivery was great, thanks a lot!",
    "This phone arrived two days late but works fine.",
    "Our new neighbour is a complete scam, do not buy!!!",
    "The hotel breakfast made my day, highly recommended.",
    "My landlord could be better, the manual is confusing.",
    "The support team was okay, nothing special at all.",
    "This update is exactly as described in the release notes.",
    "The match last night deserves every bad review it gets.",
)


def item_id(prefix: str, n: int) -> str:
    return f"{prefix}-{n}"


def item_value(prefix: str, n: int) -> bytes:
    return bytes(
        memoryview(orjson.dumps({"id": item_id(prefix, n), "text": _TEXTS[n % len(_TEXTS)]}))
    )


def item_values(prefix: str, count: int) -> Iterator[bytes]:
    texts = _TEXTS
    dumps = orjson.dumps
    for n in range(count):
        yield bytes(memoryview(dumps({"id": f"{prefix}-{n}", "text": texts[n % len(texts)]})))


def mean_value_bytes(prefix: str) -> float:
    sample = [len(item_value(prefix, n)) for n in range(1000, 1000 + len(_TEXTS) * 8)]
    return sum(sample) / len(sample)
