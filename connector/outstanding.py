"""Items uploaded by this process and not yet published: the end-to-end clock of `run`.

When uploader and poller share a process, the uploader records each created item id with the
timestamp of the input record it came from, and the poller takes it back when it publishes the
result. That gives the end-to-end time and the count of items still in Toloka. The map is bounded:
past `capacity` the oldest entries are forgotten (their end-to-end time is simply not measured).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Iterable


class OutstandingItems:
    def __init__(self, capacity: int = 1_000_000) -> None:
        self._capacity = capacity
        self._uploaded_at: OrderedDict[str, float] = OrderedDict()
        self._lock = threading.Lock()

    def add(self, pairs: Iterable[tuple[str, float]]) -> None:
        """Record (item id, input record timestamp in seconds) for items just created."""
        with self._lock:
            self._uploaded_at.update(pairs)
            while len(self._uploaded_at) > self._capacity:
                self._uploaded_at.popitem(last=False)

    def take(self, item_id: str) -> float | None:
        """The input timestamp of a published item, or None when this process did not upload it."""
        with self._lock:
            return self._uploaded_at.pop(item_id, None)

    def __len__(self) -> int:
        return len(self._uploaded_at)
