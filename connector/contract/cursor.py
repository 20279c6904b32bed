"""The state topic's records: the poller's cursor and the late window's seen-id segments.

Both live in the compacted state topic (partition `STATE_PARTITION`) and are written in the same
Kafka transaction as the results they account for:

    key `<app project>`              the cursor record (small, versioned JSON)
    key `<app project>/seen/<seq>`   a seen segment: ids published by one transaction whose
                                     finished_at may still be listed again (null = deleted)

The cursor names the live segments, so a reader loads exactly those; a segment that no cursor
names (left by a crash on a broker without transactions, or by `write_cursor`) is ignored. Why
segments exist, and what the poller keeps of them in memory: `connector.poller.late_window`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

from connector.clock import as_utc
from connector.errors import StateFormatError

STATE_PARTITION = 0
"""The state topic is read and written on partition 0 only, so the cursor's key never depends on
a partitioner."""
CURSOR_VERSION = 1
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def cursor_key(app_project_id: str) -> str:
    return app_project_id


def segment_key(app_project_id: str, seq: int) -> str:
    return f"{app_project_id}/seen/{seq}"


@dataclass(frozen=True)
class SegmentRef:
    """A live seen segment as the cursor names it."""

    seq: int
    max_finished_at: datetime


@dataclass(frozen=True)
class Cursor:
    """Where the poller stands; one record per app project in the state topic."""

    app_project_id: str
    after_id: str | None
    """The last finished item the main scan published or passed; None before the first one."""
    finished_at: datetime | None
    """The finished_at of `after_id`; without one, the lower bound of the first listing
    (None: from the beginning; `latest` starts at the time the cursor was created)."""
    late_horizon: datetime
    """The next look-back scan lists items with finished_at at or above this."""
    written_at: datetime
    holder: str | None
    """The poller instance that wrote the record (in a page's transaction or a keepalive); None
    when a command wrote it, which tells a standby it can take over at once."""
    segments: tuple[SegmentRef, ...] = ()
    next_segment: int = 0

    def tracking_floor(self) -> datetime:
        """Published ids with a finished_at at or above this can be listed again: keep them."""
        if self.finished_at is None:
            return EPOCH
        return min(self.late_horizon, self.finished_at)

    def age_seconds(self, now: float) -> float:
        """Now minus the finished_at the cursor stands for (0 before any)."""
        if self.finished_at is None:
            return 0.0
        return max(0.0, now - self.finished_at.timestamp())


def initial_cursor(
    app_project_id: str,
    start_from: str,
    *,
    now: float,
    late_window_seconds: float,
    holder: str | None,
) -> Cursor:
    """The cursor of a project that has none: `earliest` lists every finished item, `latest` only
    the ones finished from `now` on."""
    started = datetime.fromtimestamp(now, UTC)
    if start_from == "latest":
        floor: datetime | None = started
        horizon = started
    else:
        floor = None
        # Items visible before now are all ahead of a cursor at the beginning; an item that
        # shows up later finished at most a window before it appears.
        horizon = started - timedelta(seconds=late_window_seconds)
    return Cursor(
        app_project_id=app_project_id,
        after_id=None,
        finished_at=floor,
        late_horizon=horizon,
        written_at=started,
        holder=holder,
    )


# --- encoding ----------------------------------------------------------------------------------


def _time(value: datetime) -> str:
    return as_utc(value).isoformat(timespec="microseconds")


def _parse_time(value: Any, what: str) -> datetime:
    if not isinstance(value, str):
        raise StateFormatError(f"state record: {what} is not a timestamp string")
    try:
        return as_utc(datetime.fromisoformat(value))
    except ValueError:
        raise StateFormatError(f"state record: {what} {value!r} is not ISO-8601") from None


def encode_cursor(cursor: Cursor) -> bytes:
    return orjson.dumps(
        {
            "version": CURSOR_VERSION,
            "app_project_id": cursor.app_project_id,
            "after_id": cursor.after_id,
            "finished_at": None if cursor.finished_at is None else _time(cursor.finished_at),
            "late_horizon": _time(cursor.late_horizon),
            "segments": [[ref.seq, _time(ref.max_finished_at)] for ref in cursor.segments],
            "next_segment": cursor.next_segment,
            "written_at": _time(cursor.written_at),
            "holder": cursor.holder,
        }
    )


def _object(value: bytes, what: str) -> dict[str, Any]:
    try:
        data = orjson.loads(value)
    except orjson.JSONDecodeError:
        raise StateFormatError(f"{what} is not JSON") from None
    if not isinstance(data, dict):
        raise StateFormatError(f"{what} is not a JSON object")
    version = data.get("version")
    if not isinstance(version, int) or version < 1:
        raise StateFormatError(f"{what} has no valid version")
    if version > CURSOR_VERSION:
        raise StateFormatError(
            f"{what} has version {version}; this connector reads up to {CURSOR_VERSION} "
            "(a newer connector wrote it: upgrade)"
        )
    return data


def decode_cursor(value: bytes) -> Cursor:
    data = _object(value, "cursor record")
    try:
        after_id = data["after_id"]
        finished_at = data["finished_at"]
        segments = tuple(
            SegmentRef(int(seq), _parse_time(at, "segment max_finished_at"))
            for seq, at in data.get("segments", [])
        )
        cursor = Cursor(
            app_project_id=str(data["app_project_id"]),
            after_id=None if after_id is None else str(after_id),
            finished_at=None if finished_at is None else _parse_time(finished_at, "finished_at"),
            late_horizon=_parse_time(data["late_horizon"], "late_horizon"),
            written_at=_parse_time(data["written_at"], "written_at"),
            holder=data.get("holder"),
            segments=segments,
            next_segment=int(data.get("next_segment", 0)),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise StateFormatError(f"cursor record is malformed: {exc!r}") from None
    return cursor


@dataclass(frozen=True)
class Segment:
    """Ids published by one transaction that a later listing could show again."""

    seq: int
    max_finished_at: datetime
    ids: tuple[str, ...]

    @property
    def ref(self) -> SegmentRef:
        return SegmentRef(self.seq, self.max_finished_at)


def encode_segment(segment: Segment) -> bytes:
    return orjson.dumps(
        {
            "version": CURSOR_VERSION,
            "max_finished_at": _time(segment.max_finished_at),
            "ids": segment.ids,
        }
    )


def decode_segment(seq: int, value: bytes) -> Segment:
    data = _object(value, f"seen segment {seq}")
    ids = data.get("ids")
    if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
        raise StateFormatError(f"seen segment {seq}: ids is not a list of strings")
    return Segment(seq, _parse_time(data.get("max_finished_at"), "max_finished_at"), tuple(ids))


@dataclass(frozen=True)
class StateChange:
    """What one transaction writes to the state topic besides results: the new cursor, the new
    segment (if any id needs tracking) and the segments it drops."""

    cursor: Cursor
    new_segment: Segment | None
    dropped: tuple[int, ...]

    def records(self) -> list[tuple[str, bytes | None]]:
        """(key, value) pairs in the order they must be produced: segments before the cursor that
        names them, tombstones with it."""
        project = self.cursor.app_project_id
        records: list[tuple[str, bytes | None]] = []
        if self.new_segment is not None:
            records.append(
                (segment_key(project, self.new_segment.seq), encode_segment(self.new_segment))
            )
        records.extend((segment_key(project, seq), None) for seq in self.dropped)
        records.append((cursor_key(project), encode_cursor(self.cursor)))
        return records
