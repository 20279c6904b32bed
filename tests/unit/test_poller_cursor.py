"""The state records: encoding, versioning, and the late window's id bookkeeping."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import orjson
import pytest

from connector.contract.cursor import (
    CURSOR_VERSION,
    Cursor,
    Segment,
    SegmentRef,
    decode_cursor,
    decode_segment,
    encode_cursor,
    encode_segment,
    initial_cursor,
    segment_key,
)
from connector.errors import StateFormatError
from connector.poller.late_window import PollerState
from connector.toloka.models import Item
from tests.unit.poller_fakes import T0, finished_item

NOW = datetime.fromtimestamp(T0, UTC)


def cursor(**changes: object) -> Cursor:
    base = Cursor(
        app_project_id="proj",
        after_id="item-7",
        finished_at=NOW - timedelta(seconds=5),
        late_horizon=NOW - timedelta(seconds=60),
        written_at=NOW,
        holder="host-1-abc",
        segments=(SegmentRef(3, NOW - timedelta(seconds=10)),),
        next_segment=4,
    )
    return replace(base, **changes)  # type: ignore[arg-type]


def item(item_id: str, finished: float) -> Item:
    return Item.from_api(finished_item(item_id, finished))


def test_cursor_round_trips() -> None:
    original = cursor()
    assert decode_cursor(encode_cursor(original)) == original


def test_cursor_before_any_item_round_trips() -> None:
    original = cursor(after_id=None, finished_at=None, segments=(), holder=None)
    assert decode_cursor(encode_cursor(original)) == original


def test_cursor_record_is_small_versioned_json() -> None:
    data = orjson.loads(encode_cursor(cursor()))
    assert data["version"] == CURSOR_VERSION
    assert data["after_id"] == "item-7"
    assert data["finished_at"] == (NOW - timedelta(seconds=5)).isoformat(timespec="microseconds")
    assert set(data) >= {"late_horizon", "written_at", "holder", "segments", "app_project_id"}


def test_cursor_from_a_newer_version_is_refused() -> None:
    data = orjson.loads(encode_cursor(cursor()))
    data["version"] = CURSOR_VERSION + 1
    with pytest.raises(StateFormatError, match="upgrade"):
        decode_cursor(orjson.dumps(data))


@pytest.mark.parametrize(
    "value",
    [b"not json", b"[1]", b'{"after_id": "x"}', b'{"version": 1, "after_id": "x"}'],
)
def test_malformed_cursor_records_are_refused(value: bytes) -> None:
    with pytest.raises(StateFormatError):
        decode_cursor(value)


def test_segment_round_trips() -> None:
    segment = Segment(5, NOW, ("a", "b"))
    assert decode_segment(5, encode_segment(segment)) == segment


def test_initial_cursor_earliest_lists_everything_and_looks_back_a_window() -> None:
    start = initial_cursor("proj", "earliest", now=T0, late_window_seconds=60, holder="h")
    assert start.after_id is None
    assert start.finished_at is None
    assert start.late_horizon == NOW - timedelta(seconds=60)


def test_initial_cursor_latest_starts_now() -> None:
    start = initial_cursor("proj", "latest", now=T0, late_window_seconds=60, holder="h")
    assert start.finished_at == NOW
    assert start.late_horizon == NOW


def test_plan_tracks_only_ids_that_can_be_listed_again() -> None:
    state = PollerState(cursor(segments=(), next_segment=0))
    floor = state.cursor.late_horizon.timestamp()
    old, recent = item("old", floor - 1), item("recent", floor + 1)
    change = state.plan([old, recent], state.cursor)
    assert change.new_segment == Segment(0, recent.finished_at, ("recent",))  # type: ignore[arg-type]
    assert change.cursor.segments == (SegmentRef(0, recent.finished_at),)  # type: ignore[arg-type]
    assert change.cursor.next_segment == 1
    state.apply(change)
    assert not state.is_new("recent")
    assert state.is_new("old")


def test_plan_drops_segments_below_the_floor_with_tombstones() -> None:
    horizon = NOW - timedelta(seconds=60)
    expired = Segment(0, horizon - timedelta(seconds=1), ("a",))
    live = Segment(1, horizon + timedelta(seconds=1), ("b",))
    state = PollerState.restore(
        cursor(segments=(expired.ref, live.ref), next_segment=2), [expired, live]
    )
    change = state.plan([], state.cursor)
    assert change.dropped == (0,)
    assert change.cursor.segments == (live.ref,)
    assert (segment_key("proj", 0), None) in change.records()
    assert change.records()[-1][0] == "proj", "the cursor comes last"
    state.apply(change)
    assert state.seen == {"b"}


def test_tracking_floor_follows_a_cursor_behind_the_horizon() -> None:
    behind = cursor(finished_at=NOW - timedelta(hours=1))
    assert behind.tracking_floor() == NOW - timedelta(hours=1)
    assert cursor(finished_at=None).tracking_floor().year == 1970
