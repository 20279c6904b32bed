"""The cursor each `reset-cursor` move writes, and when a move must be refused. Free of I/O.

What the poller does with the cursor (`connector.poller.scan`): the main scan lists
`sort=finished, finished_gte=<cursor.finished_at>, after_id=<cursor.after_id>`, and the look-back
scan lists `finished_gte=<late_horizon>` and publishes what it has not seen. `write_cursor`
forgets the seen ids, so every move sets the horizon where the look-back scan cannot list an item
the move means to leave behind:

- to an item: after_id = the item, finished_at = its finished_at; the horizon lies past that
  finished_at (1 µs, the API's resolution), so neither the item itself nor an item finished at
  the same moment and listed before it comes back;
- to a time T: no after_id, finished_at = T: every item finished at or after T is listed; the
  horizon is T (or the usual `now - late window` when that is later, as for a new cursor);
- latest: a time move to now (the cursor a poller starts with under CONNECTOR_START_FROM=latest).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from connector.contract.cursor import Cursor, initial_cursor
from connector.contract.leadership import LeaderStatus

API_RESOLUTION = timedelta(microseconds=1)


def parse_instant(text: str) -> datetime:
    """ISO-8601 (an offset or `Z`; without one, UTC like the API's own times) or unix seconds.
    ValueError names what is wrong."""
    stripped = text.strip()
    try:
        seconds = float(stripped)
    except ValueError:
        pass
    else:
        return datetime.fromtimestamp(seconds, UTC)
    try:
        parsed = datetime.fromisoformat(stripped)
    except ValueError:
        raise ValueError(
            f"{text!r} is neither ISO-8601 (2024-05-01T12:00:00Z) nor unix seconds"
        ) from None
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


def _written(now: float) -> datetime:
    return datetime.fromtimestamp(now, UTC)


def cursor_after_item(
    app_project_id: str,
    item_id: str,
    finished_at: datetime,
    *,
    now: float,
    late_window_seconds: float,
) -> Cursor:
    """The items listed after `item_id` (sort=finished) are published next."""
    window_start = _written(now) - timedelta(seconds=late_window_seconds)
    return Cursor(
        app_project_id=app_project_id,
        after_id=item_id,
        finished_at=finished_at,
        late_horizon=max(finished_at + API_RESOLUTION, window_start),
        written_at=_written(now),
        holder=None,
    )


def cursor_from_time(
    app_project_id: str, at: datetime, *, now: float, late_window_seconds: float
) -> Cursor:
    """The items finished at or after `at` are published next."""
    window_start = _written(now) - timedelta(seconds=late_window_seconds)
    return Cursor(
        app_project_id=app_project_id,
        after_id=None,
        finished_at=at,
        late_horizon=max(at, window_start),
        written_at=_written(now),
        holder=None,
    )


def latest_cursor(app_project_id: str, *, now: float, late_window_seconds: float) -> Cursor:
    """Only items finished from now on are published."""
    return initial_cursor(
        app_project_id, "latest", now=now, late_window_seconds=late_window_seconds, holder=None
    )


def refusal(current: Cursor | None, leader: LeaderStatus | None, *, force: bool) -> str | None:
    """Why the cursor must not be written without --force; None when it may be."""
    if force:
        return None
    if current is None:
        return (
            "there is no cursor to reset (a wrong TOLOKA_APP_PROJECT_ID or "
            "CONNECTOR_STATE_TOPIC?); the poller writes the first one when it starts; "
            "--force writes this one anyway"
        )
    if leader is not None and leader.alive:
        return (
            f"a poller is active ({leader.holder} wrote the cursor "
            f"{leader.seconds_since_write:.1f}s ago): stop it first, or pass --force to fence it "
            "(it steps down and the next leader continues from the new cursor)"
        )
    return None
