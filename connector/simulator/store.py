"""Item storage and the processing clock of the simulator.

Items live in columns indexed by a sequence number (`seq`, the creation order): four `array('q')`
of microsecond timestamps, a `bytearray` of final outcomes and a list of the input data as JSON
text, about 120 bytes an item, so a million items fit in memory without strain. The item id is
`<8-char instance prefix><seq as 12 hex digits>`: 20 characters like the real ids, ordered like
`seq`, and parsed back to `seq` without a lookup table. Ids sort like creation order here; the
real API promises no such thing, so a client must not rely on it.

Nothing ticks. Each item's future is drawn when it is created (when it starts, when it finishes,
how it ends, when listings see it finished) and its status at any moment follows from the clock.
`advance(now)` moves the items whose finish time has come from a heap into `finished_order`, the
`sort=finished` index: seqs in (finished_at, seq) order, only ever appended to, because nothing
created later can finish earlier than an item that has already finished.
"""

from __future__ import annotations

import heapq
import random
from array import array
from collections.abc import Mapping, Sequence
from typing import Any

import orjson

from connector.simulator.clock import DatetimeFormatter, SimClock
from connector.simulator.knobs import Knobs
from connector.simulator.shapes import ShapeColumns
from connector.simulator.solutions import Solution

NEW, PROCESSING, COMPLETED, ERROR, CANCELLED = range(5)
STATUS_NAMES = ("NEW", "PROCESSING", "COMPLETED", "ERROR", "CANCELLED")
STATUS_CODES = {name: code for code, name in enumerate(STATUS_NAMES)}
OUTCOMES = {"COMPLETED": COMPLETED, "ERROR": ERROR, "CANCELLED": CANCELLED}
NOT_SET = -1
"""`started` of an item that never starts (CANCELLED before processing)."""
MICROS = 1_000_000
_ITEM_ERRORS = [{"code": "PROCESSING_FAILED", "message": "The item could not be processed"}]
_ID_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
_PREFIX_LENGTH = 8
ID_LENGTH = _PREFIX_LENGTH + 12
_SEQ_SHIFT = 40  # pending entries: finish << 80 | first seq << 40 | count
_FINISH_SHIFT = 80
_FIELD_MASK = (1 << 40) - 1


class ItemStore:
    """All items of the one simulated app project."""

    def __init__(
        self, project_id: str, solution: Solution, clock: SimClock, rng: random.Random
    ) -> None:
        self.project_id = project_id
        self.solution = solution
        self.clock = clock
        self._rng = rng
        self._prefix = "".join(rng.choice(_ID_ALPHABET) for _ in range(_PREFIX_LENGTH))
        self._id_format = self._prefix + "%012x"
        self.created = array("q")
        self.started = array("q")
        self.finished = array("q")
        """Planned finish time; the item is finished once the clock reaches it."""
        self.visible = array("q")
        """When listings start to show the item as finished (>= finished; later when late)."""
        self.outcome = bytearray()
        self.inputs: list[str] = []
        """Input data as JSON text: orjson's bytes results keep a ~4 KB buffer each, a str
        copy is compact."""
        self.finished_order = array("q")
        self._pending: list[int] = []
        """Heap of the items not finished yet, one int per run of items that finish together:
        `finish << 80 | first seq << 40 | count` (ints pop several times faster than tuples)."""
        self._seeded = 0
        self._first_unlisted = 0
        self._formatter = DatetimeFormatter()
        # Seeded from the id prefix, not drawn from `rng`: shape knobs leave the other draws be.
        self.shapes = ShapeColumns(random.Random(self._prefix))  # noqa: S311 - simulation

    def __len__(self) -> int:
        return len(self.inputs)

    # ---- ids ------------------------------------------------------------------------------
    def item_id(self, seq: int) -> str:
        return self._id_format % seq

    def seq_of(self, item_id: str) -> int | None:
        """The seq of an existing item id, None for anything else."""
        if len(item_id) != ID_LENGTH or not item_id.startswith(self._prefix):
            return None
        try:
            seq = int(item_id[_PREFIX_LENGTH:], 16)
        except ValueError:
            return None
        if seq >= len(self.inputs) or self.item_id(seq) != item_id:  # rejects "0x…", upper case
            return None
        return seq

    # ---- creation -------------------------------------------------------------------------
    def create(self, items: Sequence[Mapping[str, Any]], knobs: Knobs) -> range:
        """Store already-validated input data; returns the seqs of the new items."""
        now = self.clock.now()
        self.advance(now)
        first = len(self.inputs)
        dumps = orjson.dumps
        self.inputs.extend([dumps(input_data).decode() for input_data in items])
        self.shapes.draw(knobs, len(items))
        if (
            knobs.item_error_ratio
            or knobs.item_cancel_ratio
            or knobs.processing_jitter
            or (knobs.late_visibility and knobs.late_visibility_ratio < 1.0)
        ):
            self._plan_each(first, now, knobs)
        else:  # every item has the same future: extend the columns at once
            count = len(items)
            started = now + int(knobs.queue_delay * MICROS)
            finish = started + int(knobs.processing_delay * MICROS)
            self.created.extend(array("q", (now,)) * count)
            self.started.extend(array("q", (started,)) * count)
            self.finished.extend(array("q", (finish,)) * count)
            self.visible.extend(array("q", (finish + int(knobs.late_visibility * MICROS),)) * count)
            self.outcome.extend(bytes((COMPLETED,)) * count)
            self._schedule(finish, first, first + count, now)
        return range(first, len(self.inputs))

    def _plan_each(self, first: int, now: int, knobs: Knobs) -> None:
        """Draw the future of each item from `first` on (outcome, jitter, lateness)."""
        queue = int(knobs.queue_delay * MICROS)
        processing = int(knobs.processing_delay * MICROS)
        late = int(knobs.late_visibility * MICROS)
        draw = self._rng.random
        error_below = knobs.item_error_ratio
        cancel_below = error_below + knobs.item_cancel_ratio
        jitter = knobs.processing_jitter * MICROS
        late_ratio = knobs.late_visibility_ratio if late else 0.0
        created, started, finished = self.created, self.started, self.finished
        visible, outcome, pending = self.visible, self.outcome, self._pending
        for seq in range(first, len(self.inputs)):
            roll = draw() if cancel_below else 1.0
            created.append(now)
            if error_below <= roll < cancel_below:
                outcome.append(CANCELLED)  # cancelled while still queued: never starts
                started.append(NOT_SET)
                finish = now + queue
            else:
                outcome.append(ERROR if roll < error_below else COMPLETED)
                started.append(now + queue)
                finish = now + queue + processing + int(draw() * jitter)
            finished.append(finish)
            is_late = late_ratio >= 1.0 or (late_ratio > 0.0 and draw() < late_ratio)
            visible.append(finish + late if is_late else finish)
            if finish <= now:
                self.finished_order.append(seq)
            else:
                heapq.heappush(pending, (finish << _FINISH_SHIFT) | (seq << _SEQ_SHIFT) | 1)

    def _schedule(self, finish: int, start: int, end: int, now: int) -> None:
        """Index seqs [start, end), which all finish at `finish`, now or when it comes."""
        if finish <= now:
            self.finished_order.extend(range(start, end))
        else:
            entry = (finish << _FINISH_SHIFT) | (start << _SEQ_SHIFT) | (end - start)
            heapq.heappush(self._pending, entry)

    def seed_finished(
        self, count: int, outcome: int, per_timestamp: int, knobs: Knobs | None = None
    ) -> range:
        """Add `count` items that are finished and visible at once, `per_timestamp` of them
        sharing each finished_at (1 µs apart), shaped by `knobs`. The clock jumps past the last
        one."""
        start = self.clock.now()
        self.advance(start)
        first = len(self.inputs)
        self.shapes.draw(knobs or Knobs(), count)
        never_started = outcome == CANCELLED
        pending = self._pending
        for index in range(count):
            stamp = start + index // per_timestamp
            if pending and pending[0] >> _FINISH_SHIFT <= stamp:
                self.advance(stamp)
            seq = len(self.inputs)
            self.inputs.append(
                orjson.dumps(self.solution.seed_input(self._seeded + index)).decode()
            )
            self.created.append(stamp)
            self.started.append(NOT_SET if never_started else stamp)
            self.finished.append(stamp)
            self.visible.append(stamp)
            self.outcome.append(outcome)
            self.finished_order.append(seq)
        self._seeded += count
        if count:
            self.clock.advance_to(start + (count - 1) // per_timestamp)
        return range(first, len(self.inputs))

    def advance(self, now: int) -> None:
        """Index every item whose finish time has come, in (finished_at, seq) order."""
        pending = self._pending
        while pending and pending[0] >> _FINISH_SHIFT <= now:
            entry = heapq.heappop(pending)
            start = (entry >> _SEQ_SHIFT) & _FIELD_MASK
            self.finished_order.extend(range(start, start + (entry & _FIELD_MASK)))

    def first_unlisted(self, now: int) -> int:
        """A seq below which every item shows as finished in listings (items become visible
        roughly in creation order, so the scan for unfinished items starts here)."""
        seq, visible, count = self._first_unlisted, self.visible, len(self.inputs)
        while seq < count and visible[seq] <= now:
            seq += 1
        self._first_unlisted = seq
        return seq

    # ---- state ----------------------------------------------------------------------------
    def status(self, seq: int, now: int, *, listing: bool) -> int:
        """The status code at `now`; a listing sees a finish only once it is visible."""
        if (self.visible if listing else self.finished)[seq] <= now:
            return self.outcome[seq]
        started = self.started[seq]
        return PROCESSING if started != NOT_SET and started <= now else NEW

    def to_json(self, seq: int, now: int, *, listing: bool) -> dict[str, Any]:
        """The item as the API returns it; fields that are not set are absent."""
        status = self.status(seq, now, listing=listing)
        item: dict[str, Any] = {
            "id": self.item_id(seq),
            "app_project_id": self.project_id,
            "status": STATUS_NAMES[status],
        }
        item["input_data"] = orjson.Fragment(self.inputs[seq])
        if status == COMPLETED:
            item["output_data"] = self.solution.label(orjson.loads(self.inputs[seq]))
            item["errors"] = []
        elif status == ERROR:
            item["errors"] = _ITEM_ERRORS
        fmt = self._formatter.format
        created, started = self.created[seq], self.started[seq]
        item["created_at"] = created_at = fmt(created)
        if status != NEW and started != NOT_SET:  # often equal to created: format once
            item["started_at"] = started_at = created_at if started == created else fmt(started)
        else:
            started, started_at = created, created_at
        if status >= COMPLETED:
            finished = self.finished[seq]
            item["finished_at"] = started_at if finished == started else fmt(finished)
        self.shapes.render(seq, item, finished=status >= COMPLETED)
        return item
