"""`status` arithmetic and rendering, free of Kafka."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

import orjson

from connector.contract.cursor import Cursor
from connector.contract.leadership import leader_status
from connector.kafka.reads import Watermarks
from connector.operations.status import ConnectorStatus, describe_cursor, partition_lag

NOW = datetime(2024, 5, 1, 12, 0, tzinfo=UTC).timestamp()


def test_lag_counts_from_the_committed_offset_to_the_end() -> None:
    assert partition_lag(0, 7, Watermarks(0, 10)).lag == 3
    assert partition_lag(0, 10, Watermarks(0, 10)).lag == 0


def test_without_a_commit_everything_retained_is_lag() -> None:
    lag = partition_lag(1, None, Watermarks(4, 10))
    assert (lag.committed, lag.end, lag.lag) == (None, 10, 6)


def test_a_commit_below_retention_counts_from_the_first_retained_record() -> None:
    assert partition_lag(0, 2, Watermarks(5, 10)).lag == 5


def cursor(holder: str | None, written_seconds_ago: float) -> Cursor:
    return Cursor(
        app_project_id="p",
        after_id="item-9",
        finished_at=datetime.fromtimestamp(NOW - 90, UTC),
        late_horizon=datetime.fromtimestamp(NOW - 150, UTC),
        written_at=datetime.fromtimestamp(NOW - written_seconds_ago, UTC),
        holder=holder,
    )


def status(current: Cursor | None) -> ConnectorStatus:
    return ConnectorStatus(
        now=NOW,
        app_project_id="p",
        state_topic="state",
        cursor=current,
        leader=None
        if current is None
        else leader_status(current, now=NOW, leader_timeout_seconds=15),
        leader_timeout_seconds=15,
        input_topic="in",
        group_id="g",
        lag=(partition_lag(0, 3, Watermarks(0, 5)), partition_lag(1, None, Watermarks(0, 4))),
        dlq_topic="dlq",
        dead_letters=3,
        dead_letters_by_reason={"rejected": 2, "invalid_json": 1},
    )


def test_json_has_cursor_leader_lag_and_dead_letters() -> None:
    shown = orjson.loads(orjson.dumps(status(cursor("host-1", 2)).as_json()))
    assert shown["cursor"]["after_id"] == "item-9"
    assert shown["cursor"]["age_seconds"] == 90
    assert shown["leader"] == {
        "holder": "host-1",
        "seconds_since_write": 2,
        "alive": True,
        "timeout_seconds": 15,
    }
    assert shown["uploader_lag"]["total"] == 6
    assert shown["uploader_lag"]["partitions"][1] == {
        "partition": 1,
        "committed": None,
        "end": 4,
        "lag": 4,
    }
    assert shown["dead_letters"] == {
        "topic": "dlq",
        "total": 3,
        "by_reason": {"rejected": 2, "invalid_json": 1},
    }


def test_text_says_alive_or_stale_and_lists_partitions_and_reasons() -> None:
    alive = status(cursor("host-1", 2)).as_text()
    assert "after item item-9" in alive
    assert "host-1, last wrote 2.0s ago: alive" in alive
    assert "uploader lag: 6 records on in (group g)" in alive
    assert "partition 1: committed none, end 4, lag 4" in alive
    assert "  invalid_json: 1" in alive
    assert ": stale" in status(cursor("host-1", 20)).as_text()
    assert "a command wrote the cursor" in status(cursor(None, 20)).as_text()


def test_no_cursor_is_reported_not_failed() -> None:
    shown = status(None)
    assert shown.as_json()["cursor"] is None
    assert "cursor:       none" in shown.as_text()


def test_a_cursor_without_an_item_names_where_it_starts() -> None:
    start = datetime(2024, 5, 1, tzinfo=UTC)
    empty = Cursor("p", None, start, start, written_at=start, holder=None)
    assert describe_cursor(empty) == (
        "no item yet; items finished from 2024-05-01T00:00:00+00:00 on are next"
    )
    from_start = replace(empty, finished_at=None)
    assert (
        describe_cursor(from_start) == "no item yet; items finished from the beginning on are next"
    )
    assert "cursor age" not in status(from_start).as_text()
    assert status(from_start).as_json()["cursor"]["age_seconds"] is None
