"""Replacing a project's cursor from outside the poller: what `reset-cursor` writes.

`write_cursor` uses the poller's transactional id, so it fences the active poller (which steps
down and hands over to whoever takes over next, reading the new cursor).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import replace
from datetime import UTC, datetime

from connector.clock import Clock, SystemClock
from connector.contract.cursor import Cursor, StateChange
from connector.kafka.transactions import kafka_producer_factory
from connector.poller.publisher import TransactionalPublisher
from connector.poller.state import KafkaStateStore

log = logging.getLogger(__name__)


def write_cursor(
    kafka_config: Mapping[str, str],
    state_topic: str,
    cursor: Cursor,
    *,
    group_id: str = "toloka-connector",
    timeout_seconds: float = 30.0,
    clock: Clock | None = None,
) -> None:
    """Replace the cursor of `cursor.app_project_id` (its seen segments are deleted; the record
    is written with no holder, so a standby takes over at once and reads it).

    Claims the poller's transactional id first: the active poller is fenced and steps down, and
    nothing it had in flight can commit after this cursor.
    """
    clock = clock or SystemClock()
    create_producer = kafka_producer_factory(kafka_config, cursor.app_project_id, timeout_seconds)
    publisher = TransactionalPublisher(
        create_producer(),
        output_topic="",  # no results are written
        state_topic=state_topic,
        timeout_seconds=timeout_seconds,
        clock=clock,
    )
    publisher.init()
    current = KafkaStateStore(
        kafka_config,
        topic=state_topic,
        app_project_id=cursor.app_project_id,
        group_id=group_id,
        timeout_seconds=timeout_seconds,
        clock=clock,
    ).read()
    dropped = tuple(ref.seq for ref in current.cursor.segments) if current.cursor else ()
    next_segment = current.cursor.next_segment if current.cursor else 0
    replacement = replace(
        cursor,
        segments=(),
        next_segment=max(next_segment, cursor.next_segment),
        holder=None,
        written_at=datetime.fromtimestamp(clock.time(), UTC),
    )
    change = StateChange(cursor=replacement, new_segment=None, dropped=dropped)
    publisher.commit_page([], change.records())
    log.info("cursor of %s replaced", cursor.app_project_id)
