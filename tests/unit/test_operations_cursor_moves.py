"""`reset-cursor`'s decisions: time parsing, the cursor of each move as the poller's scans read
it, and when a move is refused."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from connector.contract.cursor import Cursor
from connector.contract.leadership import leader_status
from connector.operations.cursor_moves import (
    API_RESOLUTION,
    cursor_after_item,
    cursor_from_time,
    latest_cursor,
    parse_instant,
    refusal,
)
from connector.poller.late_window import PollerState
from connector.poller.scan import late_scan, late_scan_is_empty, main_scan, next_request
from connector.toloka.models import format_api_datetime

NOW = datetime(2024, 5, 1, 12, 0, tzinfo=UTC).timestamp()
WINDOW = 60.0


def at(seconds_before_now: float) -> datetime:
    return datetime.fromtimestamp(NOW - seconds_before_now, UTC)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2024-05-01T12:00:00Z", datetime(2024, 5, 1, 12, 0, tzinfo=UTC)),
        ("2024-05-01T14:00:00+02:00", datetime(2024, 5, 1, 12, 0, tzinfo=UTC)),
        ("2024-05-01T12:00:00.000001", datetime(2024, 5, 1, 12, 0, 0, 1, tzinfo=UTC)),
        ("1714564800", datetime(2024, 5, 1, 12, 0, tzinfo=UTC)),
        (" 1714564800.5 ", datetime(2024, 5, 1, 12, 0, 0, 500000, tzinfo=UTC)),
    ],
)
def test_parse_instant_reads_iso_and_unix_seconds_as_utc(text: str, expected: datetime) -> None:
    parsed = parse_instant(text)
    assert parsed == expected
    assert parsed.tzinfo is UTC


@pytest.mark.parametrize("text", ["", "yesterday", "2024-13-01"])
def test_parse_instant_names_what_it_cannot_read(text: str) -> None:
    with pytest.raises(ValueError, match="neither ISO-8601"):
        parse_instant(text)


def requests_of(cursor: Cursor) -> tuple[dict[str, str], str | None, dict[str, str] | None]:
    """The main scan's filters and after_id, and the look-back scan's filters (None: it has
    nothing to list, nothing lies between its horizon and the cursor), for `cursor`."""
    state = PollerState.restore(cursor, ())
    main = next_request(state, main_scan(NOW))
    scan = late_scan(NOW, ceiling=cursor.finished_at)
    late = None if late_scan_is_empty(state, scan) else next_request(state, scan).filters
    return main.filters, main.after_id, late


def test_to_item_continues_after_the_item_and_the_look_back_scan_cannot_list_it() -> None:
    finished = at(5)
    cursor = cursor_after_item("p", "item-7", finished, now=NOW, late_window_seconds=WINDOW)
    main_filters, after_id, late_filters = requests_of(cursor)
    assert after_id == "item-7"
    assert main_filters == {"finished_gte": format_api_datetime(finished)}
    # The seen ids are gone with the move: the look-back scan must start past the item, so it
    # has nothing behind the cursor to list.
    assert cursor.late_horizon == finished + API_RESOLUTION
    assert late_filters is None
    assert cursor.holder is None
    assert cursor.segments == ()


def test_to_an_old_item_keeps_the_usual_late_window() -> None:
    cursor = cursor_after_item("p", "old", at(3600), now=NOW, late_window_seconds=WINDOW)
    assert cursor.late_horizon == at(WINDOW)


def test_to_time_lists_every_item_finished_at_or_after_it() -> None:
    moment = at(3600)
    cursor = cursor_from_time("p", moment, now=NOW, late_window_seconds=WINDOW)
    main_filters, after_id, late_filters = requests_of(cursor)
    assert after_id is None
    assert main_filters == {"finished_gte": format_api_datetime(moment)}
    assert late_filters is None, "everything since the moment lies ahead of the cursor"


def test_to_a_recent_time_starts_the_look_back_scan_there() -> None:
    cursor = cursor_from_time("p", at(5), now=NOW, late_window_seconds=WINDOW)
    assert cursor.late_horizon == at(5)


def test_latest_publishes_only_items_finished_from_now_on() -> None:
    cursor = latest_cursor("p", now=NOW, late_window_seconds=WINDOW)
    main_filters, after_id, late_filters = requests_of(cursor)
    assert after_id is None
    assert main_filters == {"finished_gte": format_api_datetime(at(0))}
    assert late_filters == {
        "finished_gte": format_api_datetime(at(0)),
        "finished_lte": format_api_datetime(at(0)),
    }
    assert cursor.holder is None


def written(seconds_ago: float, holder: str | None) -> Cursor:
    return Cursor("p", "i", at(100), at(100), written_at=at(seconds_ago), holder=holder)


def test_leader_is_alive_until_the_timeout_like_a_standby_judges_it() -> None:
    assert leader_status(written(14.9, "a"), now=NOW, leader_timeout_seconds=15).alive
    assert not leader_status(written(15, "a"), now=NOW, leader_timeout_seconds=15).alive
    assert not leader_status(written(1, None), now=NOW, leader_timeout_seconds=15).alive


def test_a_move_is_refused_while_a_poller_is_active_unless_forced() -> None:
    cursor = written(2, "host-1-abc")
    active = leader_status(cursor, now=NOW, leader_timeout_seconds=15)
    reason = refusal(cursor, active, force=False)
    assert reason is not None
    assert "host-1-abc" in reason
    assert "--force" in reason
    assert refusal(cursor, active, force=True) is None


def test_a_move_is_allowed_when_the_leader_is_stale_or_a_command_wrote_last() -> None:
    for cursor in (written(60, "gone"), written(1, None)):
        leader = leader_status(cursor, now=NOW, leader_timeout_seconds=15)
        assert refusal(cursor, leader, force=False) is None


def test_a_project_without_cursor_is_refused_unless_forced() -> None:
    reason = refusal(None, None, force=False)
    assert reason is not None
    assert "TOLOKA_APP_PROJECT_ID" in reason
    assert refusal(None, None, force=True) is None
