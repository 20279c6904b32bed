"""The contiguous-done offset tracker: only what is done without a gap may be committed."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from connector.uploader.offsets import OffsetTracker


def tracker_with(partition: int, offsets: list[int]) -> tuple[OffsetTracker, int]:
    tracker = OffsetTracker()
    tracker.assign([partition])
    generations = {tracker.consumed_offsets(partition, [offset]) for offset in offsets}
    [generation] = generations
    assert generation is not None
    return tracker, generation


def test_nothing_done_means_nothing_to_commit() -> None:
    tracker, _ = tracker_with(0, [0, 1, 2])
    assert tracker.positions() == {}


def test_a_later_record_done_first_does_not_move_the_position() -> None:
    tracker, generation = tracker_with(0, [0, 1, 2])
    tracker.done(0, 1, generation)
    tracker.done(0, 2, generation)
    assert tracker.positions() == {}
    tracker.done(0, 0, generation)
    assert tracker.positions() == {0: 3}


def test_gaps_in_offsets_are_skipped() -> None:
    # Compaction and transaction markers leave holes in a partition's offsets.
    tracker, generation = tracker_with(0, [3, 7, 8])
    tracker.done(0, 3, generation)
    assert tracker.positions() == {0: 4}
    tracker.done(0, 8, generation)
    tracker.done(0, 7, generation)
    assert tracker.positions() == {0: 9}


def test_partitions_are_independent() -> None:
    tracker = OffsetTracker()
    tracker.assign([0, 1])
    tracker.consumed_offsets(0, [0])
    generation = tracker.consumed_offsets(1, [0])
    tracker.consumed_offsets(1, [1])
    assert generation is not None
    tracker.done(1, 0, generation)
    assert tracker.positions() == {1: 1}
    assert tracker.positions([0]) == {}


def test_only_moved_positions_are_offered_after_a_commit() -> None:
    tracker, generation = tracker_with(0, [0, 1])
    tracker.done(0, 0, generation)
    tracker.committed(tracker.positions(only_moved=True))
    assert tracker.positions(only_moved=True) == {}
    assert tracker.positions() == {0: 1}  # a final commit still sends it
    tracker.done(0, 1, generation)
    assert tracker.positions(only_moved=True) == {0: 2}


def test_completions_from_before_a_revocation_do_not_touch_the_new_assignment() -> None:
    tracker, old = tracker_with(0, [0, 1])
    tracker.forget([0])
    tracker.assign([0])
    current = tracker.consumed_offsets(0, [0])
    tracker.done(0, 0, old)
    assert tracker.positions() == {}
    assert not tracker.is_current(0, old)
    assert current is not None
    assert current != old
    tracker.done(0, 0, current)
    assert tracker.positions() == {0: 1}


def test_unassigned_partitions_are_ignored() -> None:
    tracker = OffsetTracker()
    assert tracker.consumed_offsets(5, [0]) is None
    tracker.done(5, 0, 1)
    assert tracker.positions([5]) == {}


@given(st.permutations(list(range(30))), st.integers(0, 30))
def test_position_is_one_past_the_longest_done_prefix(order: list[int], marked: int) -> None:
    tracker, generation = tracker_with(0, list(range(30)))
    done = set(order[:marked])
    for offset in order[:marked]:
        tracker.done(0, offset, generation)
    prefix = 0
    while prefix in done:
        prefix += 1
    assert tracker.positions() == ({0: prefix} if prefix else {})


# --- runs of offsets against a model -----------------------------------------------------------


class ModelOffsets:
    """The tracker's rule spelled out per offset: commit one past the last consumed offset
    before which every consumed offset is done."""

    def __init__(self) -> None:
        self.consumed: list[int] = []
        self.done: set[int] = set()

    def position(self) -> int | None:
        position = None
        for offset in self.consumed:
            if offset not in self.done:
                break
            position = offset + 1
        return position

    def commit_point(self) -> int | None:
        position = self.position()
        if position is not None:
            return position
        return self.consumed[0] if self.consumed else None


@given(st.data())
def test_runs_of_offsets_give_the_positions_of_the_per_offset_rule(data: st.DataObject) -> None:
    """Offsets with gaps (compaction, transaction markers), read in consume() calls of random
    sizes, done one by one or in ascending groups (a batch's records of the partition) in a
    random order, interleaved with reading: after every step the tracker commits what the
    model does."""
    gaps = data.draw(st.lists(st.integers(0, 3), min_size=1, max_size=60))
    offsets: list[int] = []
    offset = data.draw(st.integers(0, 5))
    for gap in gaps:
        offset += gap
        offsets.append(offset)
        offset += 1
    tracker = OffsetTracker()
    tracker.assign([0])
    model = ModelOffsets()
    read = 0
    pending: list[int] = []  # consumed, not done
    generation = None
    while read < len(offsets) or pending:
        if read < len(offsets) and (not pending or data.draw(st.booleans())):
            size = data.draw(st.integers(1, len(offsets) - read))
            chunk = offsets[read : read + size]
            read += size
            if data.draw(st.booleans()):
                generation = tracker.consumed_offsets(0, chunk)
            else:
                for offset in chunk:
                    generation = tracker.consumed_offsets(0, [offset])
            model.consumed += chunk
            pending += chunk
        else:
            group = sorted(data.draw(st.lists(st.sampled_from(pending), min_size=1, unique=True)))
            assert generation is not None
            if len(group) > 1 or data.draw(st.booleans()):
                tracker.done_offsets(0, group, generation)
            else:
                tracker.done(0, group[0], generation)
            model.done.update(group)
            pending = [offset for offset in pending if offset not in model.done]
        position = model.position()
        assert tracker.positions() == ({} if position is None else {0: position})
        assert tracker.commit_point(0) == model.commit_point()


def test_a_stale_generation_changes_nothing_in_runs_either() -> None:
    tracker = OffsetTracker()
    tracker.assign([0])
    old = tracker.consumed_offsets(0, [0, 1, 2])
    tracker.assign([0])
    current = tracker.consumed_offsets(0, [0, 1, 2])
    assert old is not None
    assert current is not None
    tracker.done_offsets(0, [0, 1, 2], old)
    assert tracker.positions() == {}
    tracker.done_offsets(0, [0, 1], current)
    assert tracker.positions() == {0: 2}


# --- records read twice (the consumer's position moved back) ----------------------------------


def test_a_batch_holding_two_copies_of_a_record_marks_no_offset_between_done() -> None:
    """On a shared topic another lane holds offset 11; this lane's batch holds 10 and two copies
    of 12 (read again): [10, 12, 12] was taken for the run [10, 13), marking 11 done, and the
    commit passed a record still in flight."""
    tracker, generation = tracker_with(0, [10, 11, 12])
    tracker.done_offsets(0, [10, 12, 12], generation)
    assert tracker.positions() == {0: 11}
    tracker.done_offsets(0, [11], generation)
    assert tracker.positions() == {0: 13}


def test_offsets_read_again_in_one_call_are_tracked_once() -> None:
    tracker = OffsetTracker()
    tracker.assign([0])
    generation = tracker.consumed_offsets(0, [10, 12, 12])
    assert generation is not None
    tracker.done(0, 10, generation)
    tracker.done(0, 12, generation)
    assert tracker.positions() == {0: 13}  # 11 was never read: nothing waits for it


def test_records_read_again_behind_later_ones_neither_stall_nor_move_the_position_back() -> None:
    """The position went back (a commit behind one made before) or stalled for good: the copies
    read again made `waiting` descend, and a run behind the head was never passed."""
    tracker, generation = tracker_with(0, [5, 6, 7])
    tracker.consumed_offsets(0, [3, 4, 5])  # read again (3, 4: committed before this assignment)
    tracker.done_offsets(0, [3, 4, 5], generation)  # the second copies first
    assert tracker.positions() == {0: 6}
    tracker.done_offsets(0, [5, 6, 7], generation)
    assert tracker.positions() == {0: 8}
    tracker.consumed_offsets(0, [8, 9])
    tracker.done_offsets(0, [8, 9], generation)
    assert tracker.positions() == {0: 10}


@given(st.data())
def test_records_read_again_never_let_the_commit_pass_a_record_not_done(
    data: st.DataObject,
) -> None:
    """Reading moves back now and then (copies of records read before), batches hold any copies
    and finish in any order: the position never passes an offset none of whose copies is done,
    never moves back, and reaches the end once every record is done."""
    offsets = sorted(set(data.draw(st.lists(st.integers(0, 40), min_size=1, max_size=30))))
    tracker = OffsetTracker()
    tracker.assign([0])
    done: set[int] = set()
    pending: list[int] = []  # copies read, not done (an offset may appear twice)
    generation = None
    read = 0
    last_position = 0
    while read < len(offsets) or pending:
        choice = data.draw(st.integers(0, 2))
        if read < len(offsets) and (not pending or choice == 0):
            back = data.draw(st.integers(0, min(read, 4)))  # the position moved back
            size = data.draw(st.integers(1, len(offsets) - read + back))
            chunk = offsets[read - back : read - back + size]
            read = max(read, read - back + size)
            generation = tracker.consumed_offsets(0, chunk)
            pending += chunk
        else:
            picked = data.draw(st.lists(st.integers(0, len(pending) - 1), min_size=1, unique=True))
            group = sorted(pending[i] for i in picked)
            assert generation is not None
            tracker.done_offsets(0, group, generation)
            done.update(group)
            pending = [offset for i, offset in enumerate(pending) if i not in picked]
        position = tracker.positions().get(0, 0)
        assert all(offset in done for offset in offsets if offset < position), position
        assert position >= last_position
        last_position = position
    assert tracker.positions() == {0: offsets[-1] + 1}
