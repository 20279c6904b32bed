"""Who polls an app project, and when its leader counts as alive (contract: "Delivery guarantees").

Safety comes from Kafka's fencing: every poller of a project, and `reset-cursor`, uses the same
transactional id (`transactional_id`), and whoever initialises it fences all older holders.
Liveness comes from the state topic: the leader writes a cursor record in every transaction,
and a keepalive at least every `KEEPALIVES_PER_TIMEOUT`th of the leader timeout when nothing
moves. A leader is alive while its last cursor record is younger than the timeout (`alive`);
a record without a holder was written by a command and names no leader. The standby pollers
(`connector.poller.leadership`) and `status`/`reset-cursor` judge by this one rule.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

from connector.contract.cursor import Cursor

KEEPALIVES_PER_TIMEOUT = 4
MAX_TOPIC_NAME = 249
_TOPIC_CHARACTERS = re.compile(r"[^A-Za-z0-9._-]")


def transactional_id(app_project_id: str) -> str:
    """Stable per app project: whoever initialises it fences every older holder."""
    return f"toloka-connector-poller-{app_project_id}"


def keepalive_interval(leader_timeout_seconds: float) -> float:
    """The longest a leader goes without writing a cursor record."""
    return leader_timeout_seconds / KEEPALIVES_PER_TIMEOUT


def alive(holder: str | None, seconds_since_write: float, leader_timeout_seconds: float) -> bool:
    """A cursor record's writer leads while it wrote within the leader timeout; a record with no
    holder (a command wrote it) names no leader: a standby takes over at once."""
    return holder is not None and seconds_since_write < leader_timeout_seconds


@dataclass(frozen=True)
class LeaderStatus:
    holder: str | None
    """The poller instance that wrote the cursor; None when a command wrote it."""
    seconds_since_write: float
    alive: bool
    """The holder wrote within the leader timeout: a poller is leading."""


def leader_status(cursor: Cursor, *, now: float, leader_timeout_seconds: float) -> LeaderStatus:
    """Is a poller active? Judged from the cursor record alone, as a standby judges it. The
    record's `written_at` comes from the leader's clock: a skew between hosts shifts the
    judgement by as much."""
    since = max(0.0, now - cursor.written_at.timestamp())
    return LeaderStatus(cursor.holder, since, alive(cursor.holder, since, leader_timeout_seconds))


def leadership_group_id(group_id: str) -> str:
    """The consumer group of every poller instance of the deployment of `group_id`."""
    return f"{group_id}-poller-leaders"


def leadership_topic(state_topic: str, app_project_id: str) -> str:
    """The one-partition topic whose owner in the leadership group may lead `app_project_id`.

    A project id with characters a topic name cannot hold, or with `_` (Kafka refuses a topic
    whose name differs from another's only by `.` against `_`), or too long for one, gets them
    replaced and a digest of the whole id appended, so two ids never share or clash on a
    topic."""
    name = f"{state_topic}.leader.{app_project_id}"
    safe = _TOPIC_CHARACTERS.sub("_", name)
    if safe == name and "_" not in app_project_id and len(name) <= MAX_TOPIC_NAME:
        return name
    digest = hashlib.sha256(app_project_id.encode()).hexdigest()[:16]
    return f"{safe[: MAX_TOPIC_NAME - len(digest) - 1]}-{digest}"
