"""The poller's late window in memory: the committed cursor and the ids its seen segments track.

Late window (why segments exist): the listing can show an item only after the cursor has passed
its finished_at. Besides the main scan (`after_id` = cursor), the poller re-lists every
`late_scan_interval_seconds` the items with `finished_at >= late_horizon`, where the horizon is
the start of the previous complete look-back scan minus `late_window_seconds`. An item that
becomes visible at time v with finished_at f >= v - window is therefore listed by the first
look-back scan that starts after v. Publication is de-duplicated against the ids tracked in the
segments: every published id whose finished_at is at or above `tracking_floor` (the lower of the
horizon and the cursor's finished_at, below which neither scan can list an item again). The
records themselves: `connector.contract.cursor`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace

from connector.clock import Clock
from connector.contract.cursor import Cursor, Segment, StateChange
from connector.toloka.models import Item


class WindowClock:
    """Wall-clock seconds as the late window counts them: the wall clock read once, moved on by
    the monotonic clock, so that a step of the wall clock while leading cannot move the horizon
    past items that may still appear (a forward jump would disable the window)."""

    def __init__(self, clock: Clock) -> None:
        self._clock = clock
        self._wall_at_start = clock.time()
        self._monotonic_at_start = clock.monotonic()

    def time(self) -> float:
        return self._wall_at_start + self._clock.monotonic() - self._monotonic_at_start


@dataclass
class PollerState:
    """The cursor and the ids the late window tracks: a transaction's changes are applied as
    its pages are added, before it commits, and put back (`reset`) when it does not."""

    cursor: Cursor
    segments: dict[int, Segment] = field(default_factory=dict)
    seen: set[str] = field(default_factory=set)

    @classmethod
    def restore(cls, cursor: Cursor, segments: Iterable[Segment]) -> PollerState:
        state = cls(cursor)
        for segment in segments:
            state.segments[segment.seq] = segment
            state.seen.update(segment.ids)
        return state

    def is_new(self, item_id: str) -> bool:
        return item_id not in self.seen

    def plan(self, published: Sequence[Item], cursor: Cursor) -> StateChange:
        """The state change of a transaction that publishes `published` and moves to `cursor`
        (whose segments and next_segment are filled in here)."""
        floor = cursor.tracking_floor()
        tracked = [
            item for item in published if item.finished_at is not None and item.finished_at >= floor
        ]
        dropped = tuple(
            seq for seq, segment in self.segments.items() if segment.max_finished_at < floor
        )
        refs = [self.segments[seq].ref for seq in self.segments if seq not in dropped]
        next_segment = self.cursor.next_segment
        new_segment = None
        if tracked:
            new_segment = Segment(
                seq=next_segment,
                max_finished_at=max(item.finished_at for item in tracked if item.finished_at),
                ids=tuple(item.id for item in tracked),
            )
            refs.append(new_segment.ref)
            next_segment += 1
        return StateChange(
            cursor=replace(cursor, segments=tuple(refs), next_segment=next_segment),
            new_segment=new_segment,
            dropped=dropped,
        )

    def reset(self, cursor: Cursor, segments: Mapping[int, Segment]) -> None:
        """Back to `cursor` and `segments`: changes applied since did not commit."""
        self.cursor = cursor
        self.segments = dict(segments)
        self.seen = {item_id for segment in self.segments.values() for item_id in segment.ids}

    def apply(self, change: StateChange) -> None:
        """`change`'s page was added to the open transaction (a takeover's: committed); when
        the transaction does not commit, `reset` puts the state back."""
        for seq in change.dropped:
            self.seen.difference_update(self.segments.pop(seq).ids)
        if change.new_segment is not None:
            self.segments[change.new_segment.seq] = change.new_segment
            self.seen.update(change.new_segment.ids)
        self.cursor = change.cursor
