"""Reading and writing the state topic (partition 0, `read_committed`).

`KafkaStateStore.read()` reads the topic from the beginning to its end with a fresh consumer and
returns our cursor and the segments it names (the last record per key wins, as compaction would
leave it). `open_feed()` follows the topic for a standby: it reports each new cursor record for
our project, which is the leader's heartbeat.

`read_cursor` is what the `status` and `reset-cursor` commands read (the latter writes with
`connector.poller.reset.write_cursor`).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from confluent_kafka import (
    OFFSET_BEGINNING,
    Consumer,
    KafkaError,
    KafkaException,
    Message,
    TopicPartition,
)

from connector.clock import Clock, SystemClock
from connector.contract.cursor import (
    STATE_PARTITION,
    Cursor,
    Segment,
    cursor_key,
    decode_cursor,
    decode_segment,
    segment_key,
)
from connector.errors import KafkaOperationError, StateFormatError
from connector.kafka.reads import end_offsets
from connector.logs import kafka_logger
from connector.poller.late_window import PollerState

log = logging.getLogger(__name__)

_POLL_SECONDS = 0.2


@dataclass(frozen=True)
class StoredState:
    cursor: Cursor | None
    segments: tuple[Segment, ...]

    def poller_state(self) -> PollerState | None:
        if self.cursor is None:
            return None
        return PollerState.restore(self.cursor, self.segments)


@dataclass(frozen=True)
class FeedUpdate:
    caught_up: bool
    """True once the feed has read to the end of the topic at least once."""
    cursors: tuple[Cursor, ...]
    """Cursor records of our project that arrived during this poll, oldest first."""


class CursorFeed(Protocol):
    def poll(self, timeout: float) -> FeedUpdate: ...
    def close(self) -> None: ...


class StateStore(Protocol):
    """The state topic as the poller loop sees it (fakes implement it in unit tests)."""

    def read(self) -> StoredState: ...
    def open_feed(self) -> CursorFeed: ...


class _Partition0:
    """A consumer assigned to partition 0 of the state topic from the beginning, and the end it
    reads to.

    The topic is shared by every app project's poller, and the consumer reads committed records
    only, so its partition-EOF lands at the last stable offset: before a transaction another
    poller holds open, with newer records of ours possibly after it. So a read of the state ends
    at the high watermark taken when it began (`end`), reached once that transaction ends (by
    its transaction timeout at the latest). The standby's feed (`end` None) counts as caught up
    at the first EOF and follows on: a heartbeat held up behind an open transaction arrives
    within the transaction timeout, which the settings keep below the leader timeout.
    """

    def __init__(self, config: Mapping[str, Any], topic: str, end: int | None = None) -> None:
        self.topic = topic
        self.end = end
        self.consumer = Consumer(dict(config))
        self.consumer.assign([TopicPartition(topic, STATE_PARTITION, OFFSET_BEGINNING)])
        self.at_end = False
        self.stopped_at: int | None = None
        """Where the last partition-EOF below `end` was: the offset of an open transaction."""

    def poll(self, timeout: float) -> Message | None:
        """The next record, or None (nothing yet, or the end was reached: see `at_end`)."""
        message: Message | None = self.consumer.poll(timeout)
        if message is None:
            # Everything fetched was read, and `end` passed: the partition-EOF says the same,
            # but only when the fetch found nothing new, which may never happen while the
            # pollers of other projects commit without pause. (Not at the record before `end`:
            # a transaction that `end` cut through would be read in part.)
            if self.end is not None and self.position() >= self.end:
                self.at_end = True
            return None
        error = message.error()
        if error is None:
            # A record at or past `end`: every committed record before it was delivered
            # (read_committed delivers in order), so the read is done; while the pollers of
            # other projects commit without pause, no fetch ever comes back empty (seen: a
            # take-over failed, "not read to its end", with three leaders committing).
            if self.end is not None and (message.offset() or 0) >= self.end:
                self.at_end = True
            return message
        if error.code() == KafkaError._PARTITION_EOF:
            offset = message.offset() or 0
            if self.end is None or offset >= self.end:
                self.at_end = True
                self.stopped_at = None
            elif self.stopped_at != offset:
                self.stopped_at = offset
                log.info(
                    "state topic %s: waiting for a transaction open at offset %d to end "
                    "(the partition ends at %d)",
                    self.topic,
                    offset,
                    self.end,
                )
            return None
        if error.fatal() or error.code() in {
            KafkaError.UNKNOWN_TOPIC_OR_PART,
            KafkaError._UNKNOWN_TOPIC,
            KafkaError.TOPIC_AUTHORIZATION_FAILED,
        }:
            raise KafkaOperationError(f"state topic {self.topic}: {error.str()}")
        log.warning("reading state topic %s: %s", self.topic, error.str())
        return None

    def stable_end(self, timeout: float) -> int | None:
        """The partition's last stable offset now (a read_committed consumer's watermark query
        answers it), or None when the broker did not answer."""
        partition = TopicPartition(self.topic, STATE_PARTITION)
        try:
            _low, stable = self.consumer.get_watermark_offsets(
                partition, timeout=timeout, cached=False
            )
        except KafkaException as exc:
            log.debug("state topic %s: no last stable offset: %s", self.topic, exc)
            return None
        return int(stable)

    def position(self) -> int:
        """The offset of the next record to read (0 before the first)."""
        (position,) = self.consumer.position([TopicPartition(self.topic, STATE_PARTITION)])
        return max(int(position.offset), 0)

    def close(self) -> None:
        self.consumer.close()


def consumer_config(kafka_config: Mapping[str, Any], group_id: str) -> dict[str, Any]:
    return {
        **kafka_config,
        # Never joins the group (partitions are assigned) nor commits: the id is only required.
        "group.id": f"{group_id}.poller",
        "enable.auto.commit": False,
        "isolation.level": "read_committed",
        "enable.partition.eof": True,
        "logger": kafka_logger(),
    }


class KafkaStateStore:
    def __init__(
        self,
        kafka_config: Mapping[str, Any],
        *,
        topic: str,
        app_project_id: str,
        group_id: str,
        timeout_seconds: float,
        clock: Clock | None = None,
    ) -> None:
        self._kafka_config = kafka_config
        self._config = consumer_config(kafka_config, group_id)
        self._topic = topic
        self._project = app_project_id
        self._timeout = timeout_seconds
        self._clock: Clock = clock or SystemClock()

    def read(self) -> StoredState:
        latest = self._read_latest()
        value = latest.get(cursor_key(self._project))
        if value is None:
            return StoredState(None, ())
        cursor = decode_cursor(value)
        segments = []
        for ref in cursor.segments:
            segment_value = latest.get(segment_key(self._project, ref.seq))
            if segment_value is None:
                # Only a broken topic gets here; items of this segment may be published again.
                log.error("state topic %s lacks seen segment %d", self._topic, ref.seq)
                continue
            segments.append(decode_segment(ref.seq, segment_value))
        return StoredState(cursor, tuple(segments))

    def _read_latest(self) -> dict[str, bytes | None]:
        """The last value of each of our project's keys, read to the end of the topic."""
        prefix = cursor_key(self._project)
        latest: dict[str, bytes | None] = {}
        deadline = self._clock.monotonic() + self._timeout
        reader = self._open()
        try:
            while not reader.at_end:
                if self._clock.monotonic() > deadline:
                    raise self._not_read_to_end(reader)
                message = reader.poll(_POLL_SECONDS)
                if message is None:
                    continue
                key = (message.key() or b"").decode(errors="replace")
                if key == prefix or key.startswith(prefix + "/"):
                    latest[key] = message.value()
        finally:
            reader.close()
        return latest

    def open_feed(self) -> CursorFeed:
        return KafkaCursorFeed(_Partition0(self._config, self._topic), self._project)

    def _open(self) -> _Partition0:
        end = end_offsets(self._kafka_config, self._topic, [STATE_PARTITION], self._timeout)
        return _Partition0(self._config, self._topic, end[STATE_PARTITION])

    def _not_read_to_end(self, reader: _Partition0) -> KafkaOperationError:
        if reader.stopped_at is None:
            return KafkaOperationError(
                f"state topic {self._topic}: not read to its end in {self._timeout:g}s"
            )
        return KafkaOperationError(
            f"state topic {self._topic}: a transaction open at offset {reader.stopped_at} "
            f"(the topic ends at {reader.end}) did not end within {self._timeout:g}s; the "
            "cursor may lie after it. A poller of this or another app project holds it open; "
            "the broker aborts it at that poller's transaction timeout"
        )


class KafkaCursorFeed:
    def __init__(self, reader: _Partition0, app_project_id: str) -> None:
        self._reader = reader
        self._key = cursor_key(app_project_id).encode()
        self._caught_up = False
        self._target: int | None = None
        """The last stable offset when the feed began: read to it, the feed is caught up."""

    def poll(self, timeout: float) -> FeedUpdate:
        cursors: list[Cursor] = []
        message = self._reader.poll(timeout)
        while message is not None:
            value = message.value()
            if message.key() == self._key and value is not None:
                try:
                    cursors.append(decode_cursor(value))
                except StateFormatError as exc:
                    log.warning("ignoring an unreadable cursor record: %s", exc)
            message = self._reader.poll(0)
        if not self._caught_up:
            # The partition-EOF says it too, but only from a fetch that finds nothing new:
            # while the pollers of other projects commit on the shared partition without
            # pause, it may never come.
            if self._target is None:
                self._target = self._reader.stable_end(timeout)
            reached = self._target is not None and self._reader.position() >= self._target
            self._caught_up = self._reader.at_end or reached
        return FeedUpdate(self._caught_up, tuple(cursors))

    def close(self) -> None:
        self._reader.close()


# --- function API for commands ------------------------------------------------------------------


def read_cursor(
    kafka_config: Mapping[str, str],
    state_topic: str,
    app_project_id: str,
    *,
    group_id: str = "toloka-connector",
    timeout_seconds: float = 30.0,
) -> Cursor | None:
    """The committed cursor of `app_project_id`, or None when it has none."""
    store = KafkaStateStore(
        kafka_config,
        topic=state_topic,
        app_project_id=app_project_id,
        group_id=group_id,
        timeout_seconds=timeout_seconds,
    )
    return store.read().cursor
