"""What to list next and what one listed page changes: the poller's decisions, free of I/O.

Two scans share the listing `sort=finished`:
- the main scan continues from the cursor (`after_id`), so every page moves the cursor;
- the look-back scan lists `late_horizon <= finished_at <= the cursor's finished_at` (what lies
  behind the cursor) from the start and publishes only items not seen before; when it reaches
  the end, the horizon moves up to its start minus the window. Look-back scans keep their
  interval while the main scan is behind: the horizon moves on with time, and a cursor far
  behind it leaves nothing to look back on (no late item can hide more than the window behind
  now), so nothing needs tracking but the cursor's ties.
Both send `finished_gte`, which keeps unfinished items out of the listing wherever the API sorts
them; items without `finished_at` that still arrive are skipped and never become the cursor.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta

from connector.contract.cursor import EPOCH, StateChange
from connector.poller.late_window import PollerState
from connector.poller.unreadable import UnreadableItem
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
    ceiling: datetime | None = None
    """A look-back scan lists up to this finished_at: the cursor's when the scan started."""


def main_scan(now: float, *, from_floor: bool = False) -> Scan:
    return Scan(late=False, started_at=now, from_floor=from_floor)


def late_scan(now: float, ceiling: datetime | None) -> Scan:
    return Scan(late=True, started_at=now, ceiling=ceiling)


def late_scan_is_empty(state: PollerState, scan: Scan) -> bool:
    """Nothing lies between the horizon and the cursor: the scan completes without listing."""
    return scan.late and (scan.ceiling is None or scan.ceiling < state.cursor.late_horizon)


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
        if scan.ceiling is not None:
            floor["finished_lte"] = format_api_datetime(scan.ceiling)
        return ListingRequest(scan.after_id, floor)
    return ListingRequest(None if scan.from_floor else state.cursor.after_id, floor)


def request_after(state: PollerState, plan: PagePlan) -> ListingRequest:
    """The request that follows a page once the transaction of its `plan` committed: the one
    `next_request` makes then (the cursor moved to `plan.change`'s, the scan to its next)."""
    cursor = state.cursor if plan.change is None else plan.change.cursor
    return next_request(PollerState(cursor), plan.next_scan)


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
    """Listed items the request excluded (behind its floor, past a look-back scan's ceiling, or
    the cursor's own item): an API that ignores `after_id` or the `finished_*` filters. They are
    skipped, never published again."""


@dataclass(frozen=True)
class PageView:
    """What a listed page holds for a scan, before anything is decided about the cursor."""

    in_range: list[Item]
    """Finished items the request asked for, in listing order (see `PagePlan.out_of_range`)."""
    publish: list[Item]
    """Those not published before (each id once)."""
    caught_up: bool
    out_of_range: int


def view_page(state: PollerState, scan: Scan, page: ItemPage) -> PageView:
    """Reads `state` only (`BackgroundLookBack` calls it on a thread of its own)."""
    floor = listing_floor(state, scan)
    cursor_item = None if scan.late else state.cursor.after_id
    finished = [item for item in page.content if item.finished_at is not None]
    in_range = [
        item
        for item in finished
        if item.finished_at is not None
        and item.finished_at >= floor
        and (scan.ceiling is None or item.finished_at <= scan.ceiling)
        and item.id != cursor_item
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
    return PageView(in_range, publish, caught_up, len(finished) - len(in_range))


def look_back_after(scan: Scan, view: PageView) -> Scan:
    """A look-back scan moved past a page it listed (its position is in memory only)."""
    return replace(scan, after_id=view.in_range[-1].id) if view.in_range else scan


def plan_page(
    state: PollerState,
    scan: Scan,
    page: ItemPage,
    *,
    now: float,
    late_window_seconds: float,
    holder: str,
) -> PagePlan:
    view = view_page(state, scan, page)
    in_range, publish, caught_up = view.in_range, view.publish, view.caught_up
    cursor = state.cursor
    next_scan = scan
    if in_range:
        last = in_range[-1]  # never an excluded item: the cursor must not move backwards
        if scan.late:
            next_scan = look_back_after(scan, view)
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

    out_of_range = view.out_of_range
    if not publish and cursor == state.cursor:
        return PagePlan(publish, None, caught_up, next_scan, out_of_range)
    written = replace(cursor, written_at=datetime.fromtimestamp(now, UTC), holder=holder)
    return PagePlan(publish, state.plan(publish, written), caught_up, next_scan, out_of_range)


def keepalive_change(state: PollerState, *, now: float, holder: str | None) -> StateChange:
    """The cursor as it is, written again: the leader's sign of life while nothing moves, or,
    with no holder, its word that it stopped leading."""
    written = replace(state.cursor, written_at=datetime.fromtimestamp(now, UTC), holder=holder)
    return state.plan([], written)


def plan_unreadable(
    state: PollerState,
    scan: Scan,
    entry: UnreadableItem,
    *,
    now: float,
    tracked_until: datetime,
    holder: str,
) -> PagePlan:
    """Pass an item that cannot be read even alone (a page of one). `publish` holds a stand-in
    for it when it is new (the caller dead-letters it); the cursor, or the look-back scan's
    position, moves to its id. Without a readable finished_at, the cursor keeps its own (not
    later than the item's) and the id stays tracked until `tracked_until`, when no scan can
    list it again."""
    if not entry.finished or (not scan.late and entry.id == state.cursor.after_id):
        # Unfinished (listed last, past every finished item), or the cursor's own item again.
        return PagePlan([], None, True, scan)
    floor = listing_floor(state, scan)
    finished_at = entry.finished_at
    stand_in = Item(id=entry.id, finished_at=finished_at or tracked_until)
    publish = [stand_in] if state.is_new(entry.id) else []
    cursor = state.cursor
    if scan.late:
        next_scan = replace(scan, after_id=entry.id)
    else:
        next_scan = replace(scan, from_floor=False)
        moved_to = max(finished_at, floor) if finished_at is not None else floor
        cursor = replace(cursor, after_id=entry.id, finished_at=moved_to)
    written = replace(cursor, written_at=datetime.fromtimestamp(now, UTC), holder=holder)
    return PagePlan(publish, state.plan(publish, written), False, next_scan)
