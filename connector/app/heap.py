"""The garbage collector's settings in a connector process (`run`, `upload`, `poll`, a worker).

The uploader allocates a few container objects per record (the consumed message, its parsed
item, its `PendingRecord`), and nearly all of them die by reference counting within tens of
milliseconds, once their batch is uploaded. With CPython's default young-generation threshold
(700 allocations) a collection runs every few hundred records: each one walks the records in
flight, moves them to the older generations, whose collections walk them again, and full
collections walk the whole start-up heap (every imported module, the pydantic models) as well.
A threshold of `YOUNG_THRESHOLD` lets most records die before a collection sees them, and
`gc.freeze()` after start-up keeps the start-up heap out of every later collection. Cyclic
garbage is still collected, only in larger steps (a few MiB of young objects at most).
Measured in benchmarks/analysis.md (2026-12-01): the uploader's CPU per item fell by about a
quarter in scenario 1 (median 3.75 → 2.67 µs).
"""

from __future__ import annotations

import gc

YOUNG_THRESHOLD = 50_000
"""Allocations (less deallocations) of container objects between two young collections."""


def settle_heap() -> None:
    """Collect once, freeze what start-up left, and collect the young generation less often
    (the older generations keep their thresholds, relative to it). For a process's command:
    it changes the collector for the whole process."""
    gc.collect()
    gc.freeze()
    _, older, oldest = gc.get_threshold()
    gc.set_threshold(YOUNG_THRESHOLD, older, oldest)
