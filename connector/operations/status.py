"""`status`: where the poller stands, who leads, how far the uploader lags, how many dead letters.

`gather_status` reads Kafka only (the state topic, the uploader group's committed offsets, the
topics' watermarks); `ConnectorStatus` renders what it found as text or as JSON.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from confluent_kafka import Consumer

from connector.config import CursorSettings, GroupSettings, InputTopicSettings, Settings
from connector.contract.cursor import Cursor
from connector.contract.leadership import LeaderStatus, leader_status
from connector.kafka.reads import (
    Watermarks,
    committed_offsets,
    first_contact,
    partitions_of,
    read_partitions,
    watermarks,
)
from connector.operations.dead_letter_records import read_dead_letter
from connector.poller.state import read_cursor


@dataclass(frozen=True)
class PartitionLag:
    partition: int
    committed: int | None
    """The uploader group's committed offset; None when it has committed none."""
    end: int
    lag: int


def partition_lag(partition: int, committed: int | None, marks: Watermarks) -> PartitionLag:
    # Without a committed offset, or with one below what is retained, the uploader starts at the
    # first retained record (auto.offset.reset=earliest): all of it is still to be uploaded.
    position = marks.low if committed is None else max(committed, marks.low)
    return PartitionLag(partition, committed, marks.high, max(0, marks.high - position))


@dataclass(frozen=True)
class ConnectorStatus:
    now: float
    app_project_id: str
    state_topic: str
    cursor: Cursor | None
    leader: LeaderStatus | None
    leader_timeout_seconds: float
    input_topic: str
    group_id: str
    lag: tuple[PartitionLag, ...]
    dlq_topic: str
    dead_letters: int
    dead_letters_by_reason: Mapping[str, int] | None

    @property
    def total_lag(self) -> int:
        return sum(partition.lag for partition in self.lag)

    def as_json(self) -> dict[str, Any]:
        cursor = self.cursor
        return {
            "app_project_id": self.app_project_id,
            "state_topic": self.state_topic,
            "cursor": None
            if cursor is None
            else {
                "after_id": cursor.after_id,
                "finished_at": _iso(cursor),
                "age_seconds": None
                if cursor.finished_at is None
                else round(cursor.age_seconds(self.now), 3),
                "late_horizon": cursor.late_horizon.isoformat(),
                "written_at": cursor.written_at.isoformat(),
            },
            "leader": None
            if self.leader is None
            else {
                "holder": self.leader.holder,
                "seconds_since_write": round(self.leader.seconds_since_write, 3),
                "alive": self.leader.alive,
                "timeout_seconds": self.leader_timeout_seconds,
            },
            "uploader_lag": {
                "topic": self.input_topic,
                "group_id": self.group_id,
                "total": self.total_lag,
                "partitions": [
                    {"partition": p.partition, "committed": p.committed, "end": p.end, "lag": p.lag}
                    for p in self.lag
                ],
            },
            "dead_letters": {
                "topic": self.dlq_topic,
                "total": self.dead_letters,
                **(
                    {}
                    if self.dead_letters_by_reason is None
                    else {"by_reason": dict(self.dead_letters_by_reason)}
                ),
            },
        }

    def as_text(self) -> str:
        lines = [f"app project {self.app_project_id} (state topic {self.state_topic})"]
        cursor = self.cursor
        if cursor is None:
            lines.append("cursor:       none (no poller has run for this project yet)")
        else:
            lines.append(f"cursor:       {describe_cursor(cursor)}")
            if cursor.finished_at is not None:
                age = _duration(cursor.age_seconds(self.now))
                lines.append(f"cursor age:   {age} behind now")
        lines.append(f"leader:       {self._leader_text()}")
        lines.append(
            f"uploader lag: {self.total_lag} records on {self.input_topic} (group {self.group_id})"
        )
        for p in self.lag:
            committed = "none" if p.committed is None else str(p.committed)
            lines.append(
                f"  partition {p.partition}: committed {committed}, end {p.end}, lag {p.lag}"
            )
        counted = (
            " (offsets retained, transaction markers included; --by-reason counts records)"
            if self.dead_letters_by_reason is None
            else ""
        )
        lines.append(f"dead letters: {self.dead_letters} on {self.dlq_topic}{counted}")
        for reason, count in sorted((self.dead_letters_by_reason or {}).items()):
            lines.append(f"  {reason}: {count}")
        return "\n".join(lines)

    def _leader_text(self) -> str:
        leader = self.leader
        if leader is None:
            return "none"
        since = _duration(leader.seconds_since_write)
        if leader.holder is None:
            return f"none (a command wrote the cursor {since} ago; the next poller takes over)"
        state = "alive" if leader.alive else "stale"
        return (
            f"{leader.holder}, last wrote {since} ago: {state} "
            f"(leader timeout {self.leader_timeout_seconds:g}s)"
        )


def describe_cursor(cursor: Cursor) -> str:
    if cursor.after_id is None:
        start = "the beginning" if cursor.finished_at is None else _iso(cursor)
        return f"no item yet; items finished from {start} on are next"
    return f"after item {cursor.after_id} (finished_at {_iso(cursor)})"


def _iso(cursor: Cursor) -> str | None:
    return None if cursor.finished_at is None else cursor.finished_at.isoformat()


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.1f}s"
    if seconds < 7200:
        return f"{seconds / 60:.1f}min"
    return f"{seconds / 3600:.1f}h"


def gather_status(
    settings: Settings,
    *,
    now: float,
    by_reason: bool,
    timeout: float,
) -> ConnectorStatus:
    """The status of the pipeline of `settings`; its uploader's lag is that of the one group
    every pipeline's input topic is read in (CONNECTOR_GROUP_ID)."""
    kafka_config = settings.kafka.client_config()
    uploader, poller = settings.get(InputTopicSettings), settings.get(CursorSettings)
    group_id = settings.get(GroupSettings).group_id
    consumer, refusals = first_contact(kafka_config)
    try:
        # Every topic first, so that a missing one is reported before anything is read.
        input_partitions = partitions_of(consumer, uploader.input_topic, timeout, refusals)
        dlq_partitions = partitions_of(consumer, uploader.dlq_topic, timeout)
        partitions_of(consumer, poller.state_topic, timeout)
        input_marks = watermarks(kafka_config, uploader.input_topic, input_partitions, timeout)
        dlq_marks = watermarks(kafka_config, uploader.dlq_topic, dlq_partitions, timeout)
        reasons = (
            count_reasons(consumer, uploader.dlq_topic, dlq_marks, timeout) if by_reason else None
        )
    finally:
        consumer.close()
    committed = committed_offsets(
        kafka_config, group_id, uploader.input_topic, input_partitions, timeout
    )
    project = settings.project.app_project_id
    cursor = read_cursor(
        kafka_config,
        poller.state_topic,
        project,
        group_id=group_id,
        timeout_seconds=timeout,
    )
    leader = (
        None
        if cursor is None
        else leader_status(cursor, now=now, leader_timeout_seconds=poller.leader_timeout_seconds)
    )
    return ConnectorStatus(
        now=now,
        app_project_id=project,
        state_topic=poller.state_topic,
        cursor=cursor,
        leader=leader,
        leader_timeout_seconds=poller.leader_timeout_seconds,
        input_topic=uploader.input_topic,
        group_id=group_id,
        lag=tuple(partition_lag(p, committed.get(p), input_marks[p]) for p in input_partitions),
        dlq_topic=uploader.dlq_topic,
        # Counted records with --by-reason; else the offsets retained, markers included.
        dead_letters=(
            sum(marks.retained for marks in dlq_marks.values())
            if reasons is None
            else sum(reasons.values())
        ),
        dead_letters_by_reason=reasons,
    )


def count_reasons(
    consumer: Consumer, topic: str, marks: Mapping[int, Watermarks], timeout: float
) -> dict[str, int]:
    """Dead letters per `error-reason`, read from the first retained record to the end."""
    records = read_partitions(
        consumer,
        topic,
        {p: m.low for p, m in marks.items()},
        ends={p: m.high for p, m in marks.items()},
        idle_timeout=timeout,
    )
    return dict(Counter(read_dead_letter(message).reason for message in records))
