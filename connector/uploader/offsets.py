"""Which input offsets may be committed: per partition, the end of the contiguous run of records
that are done (uploaded or dead-lettered).

Batches finish out of order (several are in flight, a rejected one is re-sent), so a record can be
done while an earlier one of its partition is not; committing past the earlier one would lose it
in a crash. Each partition's state carries the generation of its assignment: a batch that was in
flight when its partition was revoked may finish after the partition came back, and its
completions must not touch the new state (its records are read again from the committed offset).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field


@dataclass
class _PartitionOffsets:
    generation: int
    waiting: deque[int] = field(default_factory=deque)
    """Offsets consumed and not yet committable, ascending."""
    done_out_of_order: set[int] = field(default_factory=set)
    position: int | None = None
    """The offset to commit: one past the last record of the contiguous done run."""
    committed: int | None = None


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
        return state.waiting[0] if state.waiting else None

    def is_current(self, partition: int, generation: int) -> bool:
        state = self._partitions.get(partition)
        return state is not None and state.generation == generation

    def consumed(self, partition: int, offset: int) -> int | None:
        """A record was read (offsets of one partition arrive in ascending order): its assignment
        generation, or None when its partition is not assigned (any more)."""
        state = self._partitions.get(partition)
        if state is None:
            return None
        state.waiting.append(offset)
        return state.generation

    def done(self, partition: int, offset: int, generation: int) -> None:
        """The record is uploaded or dead-lettered. Ignored for a stale generation."""
        state = self._partitions.get(partition)
        if state is None or state.generation != generation:
            return
        waiting = state.waiting
        if not waiting or waiting[0] != offset:
            state.done_out_of_order.add(offset)
            return
        waiting.popleft()
        state.position = offset + 1
        done = state.done_out_of_order
        while waiting and waiting[0] in done:
            head = waiting.popleft()
            done.discard(head)
            state.position = head + 1

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
