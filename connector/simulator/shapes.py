"""Item shapes a client must survive: bulky outputs (masks, transcripts) and listing entries that
cannot be decoded.

Each item's shape is drawn once, when it is created or seeded, so every listing shows the item the
same way. The draws come from their own random source: turning these knobs never changes how
items are processed (ids, outcomes, timings).
"""

from __future__ import annotations

import functools
import random
from array import array
from typing import Any

import orjson

from connector.simulator.knobs import Knobs

UNDECODABLE = 1
"""The entry carries bytes that are not UTF-8: the whole page is not JSON."""
INVALID = 2
"""The entry's finished_at is no datetime: the page is JSON, the item is not a valid item."""

_NOT_UTF8 = orjson.Fragment(b'"\xff\xfe not UTF-8"')
INVALID_FINISHED_AT = "not-a-datetime"


class ShapeColumns:
    """Per item: bytes of the extra `mask` output field (0: none) and the decoding faults."""

    def __init__(self, rng: random.Random) -> None:
        self._rng = rng
        self.mask_bytes = array("q")
        self.faults = bytearray()

    def draw(self, knobs: Knobs, count: int) -> None:
        """Append the shapes of `count` new items."""
        bulky = knobs.bulky_output_bytes
        if not (bulky or knobs.undecodable_item_ratio or knobs.invalid_item_ratio):
            self.mask_bytes.extend(array("q", (0,)) * count)
            self.faults.extend(bytes(count))
            return
        draw = self._rng.random
        for _ in range(count):
            self.mask_bytes.append(bulky if bulky and draw() < knobs.bulky_output_ratio else 0)
            fault = UNDECODABLE if draw() < knobs.undecodable_item_ratio else 0
            if not fault and draw() < knobs.invalid_item_ratio:
                fault = INVALID
            self.faults.append(fault)

    def render(self, seq: int, item: dict[str, Any], *, finished: bool) -> None:
        """Give the item (as `ItemStore.to_json` built it) its shape."""
        size = self.mask_bytes[seq]
        output = item.get("output_data")
        if size and isinstance(output, dict):
            item["output_data"] = {**output, "mask": _mask(size)}
        fault = self.faults[seq]
        if fault == UNDECODABLE and finished:
            item["note"] = _NOT_UTF8
        elif fault == INVALID and finished:
            item["finished_at"] = INVALID_FINISHED_AT


@functools.lru_cache(maxsize=8)
def _mask(size: int) -> str:
    return "m" * size
