"""Which input offsets may be committed: per partition, the end of the contiguous run of records
that are done (uploaded or dead-lettered).

Batches finish out of order (several are in flight, a rejected one is re-sent), so a record can be
done while an earlier one of its partition is not; committing past the earlier one would lose it
in a crash. A record can come twice in one assignment (the consumer's position moved back: an
offset reset after the log was truncated, a seek): an offset is one record however many copies
of it were read, done when one of them is (`consume` tracks only what lies beyond the offsets
read before; `_runs` takes repeated and unordered offsets).

Each partition's state carries the generation of its assignment: a batch that was in flight
when its partition was revoked may finish after the partition came back, and its completions
must not touch the new state (its records are read again from the committed offset).
"""

from __future__ import annotations

from bisect import bisect_left
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from itertools import pairwise


@dataclass
class _PartitionOffsets:
    """Offsets as runs: a consume() call hands out a partition's records in ascending, mostly
    consecutive offsets, and batches finish whole runs of them; a run is two numbers, whatever
    its length, so the work per call follows the number of runs, not of records."""

    generation: int
    waiting: deque[list[int]] = field(default_factory=deque)
    """Runs [first, end) of consecutive offsets consumed and not yet committable, ascending."""
    done_ahead: list[list[int]] = field(default_factory=list)
    """Runs [first, end) of offsets done behind a record that is not, ascending, disjoint."""
    position: int | None = None
    """The offset to commit: one past the last record of the contiguous done run."""
    committed: int | None = None
    consumed_end: int = 0
    """One past the highest offset read: `waiting` stays ascending however records repeat."""

    def consume(self, first: int, end: int) -> None:
        if first < self.consumed_end:  # read again: tracked already (waiting, or passed)
            first = self.consumed_end
            if first >= end:
                return
        self.consumed_end = end
        waiting = self.waiting
        if waiting and waiting[-1][1] == first:
            waiting[-1][1] = end
        else:
            waiting.append([first, end])

    def finish(self, first: int, end: int) -> None:
        """Offsets [first, end) are done (those not consumed, or already passed, change
        nothing)."""
        waiting = self.waiting
        if not waiting:
            return
        head = waiting[0]
        if first <= head[0] < end and not self.done_ahead:  # in order: the common case
            self._pass(end)
            return
        first = max(first, head[0])
        if first >= end:
            return
        _add_run(self.done_ahead, first, end)
        ahead = self.done_ahead
        while ahead and waiting and ahead[0][0] <= waiting[0][0]:
            self._pass(ahead.pop(0)[1])

    def _pass(self, end: int) -> None:
        """Every consumed offset below `end` is done: drop it and move the position past it."""
        waiting = self.waiting
        while waiting:
            run = waiting[0]
            if run[1] <= end:
                self.position = run[1]
                waiting.popleft()
            else:
                if run[0] < end:
                    run[0] = end
                    self.position = end
                return


def _add_run(runs: list[list[int]], first: int, end: int) -> None:
    """Add [first, end) to ascending disjoint `runs`, merging what touches or overlaps it."""
    index = bisect_left(runs, [first, first])
    if index > 0 and runs[index - 1][1] >= first:
        index -= 1
        first = runs[index][0]
    stop = index
    while stop < len(runs) and runs[stop][0] <= end:
        end = max(end, runs[stop][1])
        stop += 1
    runs[index:stop] = [[first, max(end, first)]]


def _runs(offsets: Sequence[int]) -> Iterable[tuple[int, int]]:
    """`offsets` as ascending runs [first, end) of consecutive ones. Usually strictly ascending;
    a record read twice repeats its offset (a batch may hold both copies) and one read again
    after later ones comes out of order: a run must never cover an offset not among them
    ([10, 12, 12] taken for [10, 13) marked 11 done: another lane's record, still in flight on a
    shared topic, and the commit passed it)."""
    if not offsets:
        return
    first, last = offsets[0], offsets[-1]
    if last - first == len(offsets) - 1 and offsets == list(range(first, last + 1)):
        yield first, last + 1  # one run: the usual (its check runs at C speed)
        return
    if any(later <= earlier for earlier, later in pairwise(offsets)):  # repeated, unordered
        offsets = sorted(set(offsets))
    first = previous = offsets[0]
    for offset in offsets[1:]:
        if offset != previous + 1:
            yield first, previous + 1
            first = offset
        previous = offset
    yield first, previous + 1


class OffsetTracker:
    def __init__(self) -> None:
        self._partitions: dict[int, _PartitionOffsets] = {}
        self._generations = 0

    def assign(self, partitions: Iterable[int]) -> None:
        for partition in partitions:
            self._generations += 1
            self._partitions[partition] = _PartitionOffsets(self._generations)

    def forget(self, partitions: Iterable[int]) -> None:
        for partition in partitions:
            self._partitions.pop(partition, None)

    def generation(self, partition: int) -> int | None:
        """The generation of the partition's current assignment; None when not assigned."""
        state = self._partitions.get(partition)
        return None if state is None else state.generation

    def commit_point(self, partition: int) -> int | None:
        """An offset that may be committed now: the done position, else the first record read
        in this assignment (everything before it was committed). None before any record."""
        state = self._partitions.get(partition)
        if state is None:
            return None
        if state.position is not None:
            return state.position
        return state.waiting[0][0] if state.waiting else None

    def is_current(self, partition: int, generation: int) -> bool:
        state = self._partitions.get(partition)
        return state is not None and state.generation == generation

    def consumed_offsets(self, partition: int, offsets: Sequence[int]) -> int | None:
        """Records of one partition were read together (ascending offsets, usually after those
        read before; one call per partition and consume() call): their assignment generation,
        or None when their partition is not assigned (any more)."""
        state = self._partitions.get(partition)
        if state is None:
            return None
        for first, end in _runs(offsets):
            state.consume(first, end)
        return state.generation

    def done(self, partition: int, offset: int, generation: int) -> None:
        """The record is uploaded or dead-lettered. Ignored for a stale generation."""
        state = self._partitions.get(partition)
        if state is None or state.generation != generation:
            return
        waiting = state.waiting
        if waiting and not state.done_ahead:  # in order (`finish`, inlined: once per record)
            head = waiting[0]
            if head[0] == offset:
                state.position = head[0] = offset + 1
                if head[1] == offset + 1:
                    waiting.popleft()
                return
        state.finish(offset, offset + 1)

    def done_offsets(self, partition: int, offsets: Sequence[int], generation: int) -> None:
        """`done` for records of one partition (ascending offsets, repeated where a batch holds
        two copies of a record): one call per partition and batch."""
        state = self._partitions.get(partition)
        if state is None or state.generation != generation:
            return
        for first, end in _runs(offsets):
            state.finish(first, end)

    def positions(
        self, partitions: Iterable[int] | None = None, *, only_moved: bool = False
    ) -> dict[int, int]:
        """partition → offset to commit, for `partitions` (default: all assigned) that have one;
        with `only_moved`, only those whose position moved since it was last `committed`."""
        chosen = self._partitions.keys() if partitions is None else partitions
        positions: dict[int, int] = {}
        for partition in chosen:
            state = self._partitions.get(partition)
            if state is None or state.position is None:
                continue
            if not only_moved or state.position != state.committed:
                positions[partition] = state.position
        return positions

    def committed(self, positions: dict[int, int]) -> None:
        for partition, position in positions.items():
            state = self._partitions.get(partition)
            if state is not None:
                state.committed = position
