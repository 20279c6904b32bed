"""What to list next and what one listed page changes: the poller's decisions, free of I/O.

Two scans share the listing `sort=finished`:
- the main scan continues from the cursor (`after_id`), so every page moves the cursor;
- the look-back scan lists `finished_at >= late_horizon` from the start and publishes only items
  not seen before; when it reaches the end, the horizon moves up to its start minus the window.
Both send `finished_gte`, which keeps unfinished items out of the listing wherever the API sorts
them; items without `finished_at` that still arrive are skipped and never become the cursor.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta

from connector.poller.cursor import EPOCH, PollerState, StateChange
from connector.toloka.models import Item, ItemPage, format_api_datetime


@dataclass(frozen=True)
class Scan:
    late: bool
    """False: the main scan from the cursor; True: a look-back scan over the late window."""
    started_at: float
    """Wall-clock start of the scan (a look-back scan's start sets the next horizon)."""
    after_id: str | None = None
    """Position of a look-back scan (the main scan's position is the cursor)."""
    from_floor: bool = False
    """List the main scan from the cursor's finished_at without `after_id`: the API no longer
    knows the cursor's item. Items at or behind the cursor that come back are skipped."""


def main_scan(now: float) -> Scan:
    return Scan(late=False, started_at=now)


def late_scan(now: float) -> Scan:
    return Scan(late=True, started_at=now)


@dataclass(frozen=True)
class ListingRequest:
    after_id: str | None
    filters: dict[str, str]


def listing_floor(state: PollerState, scan: Scan) -> datetime:
    """The `finished_gte` a scan asks for: nothing finished before it may be published."""
    return state.cursor.late_horizon if scan.late else (state.cursor.finished_at or EPOCH)


def next_request(state: PollerState, scan: Scan) -> ListingRequest:
    floor = {"finished_gte": format_api_datetime(listing_floor(state, scan))}
    if scan.late:
        return ListingRequest(scan.after_id, floor)
    return ListingRequest(None if scan.from_floor else state.cursor.after_id, floor)


@dataclass(frozen=True)
class PagePlan:
    publish: list[Item]
    """Finished items of the page not published before, in listing order."""
    change: StateChange | None
    """What the page's transaction writes to the state topic; None: no transaction needed."""
    caught_up: bool
    """The scan reached the end of what is listed now."""
    next_scan: Scan
    """The scan to continue with (the same scan moved on)."""
    out_of_range: int = 0
    """Listed items the request excluded (behind its floor, or the cursor's own item): an API
    that ignores `after_id` or `finished_gte`. They are skipped, never published again."""


def plan_page(
    state: PollerState,
    scan: Scan,
    page: ItemPage,
    *,
    now: float,
    late_window_seconds: float,
    holder: str,
) -> PagePlan:
    floor = listing_floor(state, scan)
    cursor_item = None if scan.late else state.cursor.after_id
    finished = [item for item in page.content if item.finished_at is not None]
    in_range = [
        item
        for item in finished
        if item.finished_at is not None and item.finished_at >= floor and item.id != cursor_item
    ]
    publish: list[Item] = []
    listed: set[str] = set()
    for item in in_range:
        if state.is_new(item.id) and item.id not in listed:
            publish.append(item)
        listed.add(item.id)
    # Past the last finished item only unfinished ones follow (where the API lists them at all):
    # the scan has reached what is finished now. A page of nothing but excluded items is an API
    # that does not page: waiting beats asking again at once for the same page.
    caught_up = not page.has_more or not in_range or page.content[-1].finished_at is None

    cursor = state.cursor
    next_scan = scan
    if in_range:
        last = in_range[-1]  # never an excluded item: the cursor must not move backwards
        if scan.late:
            next_scan = replace(scan, after_id=last.id)
        else:
            next_scan = replace(scan, from_floor=False)  # the cursor is a listed item again
            cursor = replace(cursor, after_id=last.id, finished_at=last.finished_at)
            if late_window_seconds == 0 and last.finished_at is not None:
                # No look-back scans: nothing behind the cursor is listed again.
                cursor = replace(cursor, late_horizon=max(cursor.late_horizon, last.finished_at))
    if scan.late and caught_up:
        started = datetime.fromtimestamp(scan.started_at, UTC)
        horizon = started - timedelta(seconds=late_window_seconds)
        cursor = replace(cursor, late_horizon=max(cursor.late_horizon, horizon))

    out_of_range = len(finished) - len(in_range)
    if not publish and cursor == state.cursor:
        return PagePlan(publish, None, caught_up, next_scan, out_of_range)
    written = replace(cursor, written_at=datetime.fromtimestamp(now, UTC), holder=holder)
    return PagePlan(publish, state.plan(publish, written), caught_up, next_scan, out_of_range)


def heartbeat_change(state: PollerState, *, now: float, holder: str | None) -> StateChange:
    """The cursor as it is, written again: the leader's sign of life while nothing moves, or,
    with no holder, its word that it stopped leading."""
    written = replace(state.cursor, written_at=datetime.fromtimestamp(now, UTC), holder=holder)
    return state.plan([], written)
