"""Producing while librdkafka's local queue is full: every producer of the connector and of its
tooling hands a record over with `produce_when_room`.

`produce()` raises BufferError when the producer's queue (`queue.buffering.max.messages`,
`queue.buffering.max.kbytes`) is full; the records in it leave as the broker acknowledges them,
which delivery reports served by `poll()` tell. So: serve them, and try again.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any


def produce_when_room(
    produce: Callable[[], object],
    poll: Callable[[float], Any],
    *,
    wait_seconds: float,
    give_up_at: float | None = None,
    now: Callable[[], float] = time.monotonic,
) -> bool:
    """`produce()`; while the queue is full, `poll(wait_seconds)` for the delivery reports that
    make room, then `produce()` again. False when the queue was still full at `give_up_at` (on the
    `now` clock; None: never give up). What else `produce()` raises is raised."""
    while True:
        try:
            produce()
        except BufferError:
            poll(wait_seconds)
            if give_up_at is not None and now() >= give_up_at:
                return False
        else:
            return True
