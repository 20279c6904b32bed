"""What the simulator has served, for tests and benchmarks to assert on.

`creates_by_key` counts creations per item key: the input `id` when the item has one, else its
whole input JSON. A key created more than once is an item the client uploaded twice, which is
how tests count the duplicates a retried bulk request produced.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from typing import Any

import orjson


def item_key(input_data: Mapping[str, Any]) -> str:
    key = input_data.get("id")
    if key is not None:
        return str(key)
    return orjson.dumps(input_data, option=orjson.OPT_SORT_KEYS).decode()


class Stats:
    def __init__(self) -> None:
        self.requests_by_status: Counter[str] = Counter()
        self.requests_by_route: Counter[str] = Counter()
        self.items_created = 0
        self.items_seeded = 0
        self.duplicate_creates = 0
        self.creates_by_key: dict[str, int] = {}
        self.rate_limited = 0
        """Requests answered 429 by the rate limit (`rate_limit` knob)."""
        self.requests_during_retry_after = 0
        """API requests that arrived while a rate-limit 429's Retry-After was running."""

    def record_request(self, route: str, outcome: str) -> None:
        """`outcome` is the status code as text, or "reset" for a connection reset."""
        self.requests_by_route[route] += 1
        self.requests_by_status[outcome] += 1

    def record_creates(self, inputs: Iterable[Mapping[str, Any]]) -> None:
        counts = self.creates_by_key
        created = duplicates = 0
        for input_data in inputs:
            key = input_data.get("id")
            key = key if isinstance(key, str) else item_key(input_data)
            seen = counts.get(key, 0)
            counts[key] = seen + 1
            created += 1
            duplicates += seen > 0
        self.items_created += created
        self.duplicate_creates += duplicates

    def duplicates(self, limit: int) -> dict[str, int]:
        """Keys created more than once, with their creation counts (at most `limit`)."""
        found: dict[str, int] = {}
        for key, count in self.creates_by_key.items():
            if count > 1:
                found[key] = count
                if len(found) >= limit:
                    break
        return found

    def as_json(self) -> dict[str, Any]:
        return {
            "items_created": self.items_created,
            "items_seeded": self.items_seeded,
            "distinct_keys": len(self.creates_by_key),
            "duplicate_creates": self.duplicate_creates,
            "requests_by_route": dict(self.requests_by_route),
            "requests_by_status": dict(self.requests_by_status),
            "rate_limited": self.rate_limited,
            "requests_during_retry_after": self.requests_during_retry_after,
        }
