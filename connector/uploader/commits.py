"""The upload loop's offset commits: what each input partition commits, with which upload
intent, and when a batch may be sent.

Only the highest contiguous done offset of each partition (its topic's `OffsetTracker`) is
committed, with a plain consumer commit (offsets are never sent through a producer transaction:
the mock cluster drops those): in the background every CONNECTOR_COMMIT_INTERVAL_MS while
running, synchronously when partitions are handed over or the uploader stops. On a shared topic
one tracker serves every lane, so a partition commits up to the lowest offset no lane has done.

With a `Reconciler` (exactly-once uploads, docs/exactly-once.md) in any lane of a topic, every
commit of that topic carries the upload intent of its partition (`IntentLog`, per topic; a
topic whose pipelines do not reconcile commits plainly), and the first request of an assignment
that holds a record of a partition waits until that partition's intent is committed
(`may_send`, together with those of the other partitions whose records wait in a batch).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping

from confluent_kafka import KafkaException, TopicPartition

from connector.clock import Clock
from connector.errors import KafkaUnansweredError
from connector.kafka.bounded import BoundedConsumerCalls, Cutoff
from connector.kafka.clients import Consumer
from connector.uploader.assignment import InputTopic
from connector.uploader.batcher import Batch, partition_runs
from connector.uploader.intents import IntentLog
from connector.uploader.lane import Lane

log = logging.getLogger(__name__)

COMMIT_WAIT_SECONDS = 5.0
"""How long a synchronous commit waits for the broker outside a drain (an upload intent, the
commit before a failure); a drain's commits wait for what is left of its deadline. A commit
made inside the rebalance callback waits without a bound (librdkafka answers it on the calling
thread): README, "Not bounded by the budget yet"."""

Positions = dict[str, dict[int, int]]
"""Topic → partition → offset to commit."""


class Committer:
    """Owned by the loop's thread."""

    def __init__(
        self,
        consumer: Consumer,
        calls: BoundedConsumerCalls,
        topics: Mapping[str, InputTopic],
        clock: Clock,
        interval_seconds: float,
    ) -> None:
        self._consumer = consumer
        self._sync = calls
        self.drain_deadline: float | None = None
        """While a drain runs, its deadline: an upload intent's commit waits no longer."""
        self.in_callback = False
        """Whether the loop is inside a rebalance callback (`BoundedConsumerCalls.commit`)."""
        self.cutoff: Cutoff | None = None
        """A stop's deadline once one was requested: an upload intent's commit under way when
        the stop comes waits no longer."""
        self._topics = topics
        self._clock = clock
        for topic in topics.values():  # per topic: one that does not reconcile commits plainly
            reconciled = any(lane.reconciler is not None for lane in topic.lanes)
            topic.intents = IntentLog(clock) if reconciled else None
        self._intent_failing: set[str] = set()
        """The topics whose last intent commit failed (warned once until one succeeds)."""
        self._interval = interval_seconds
        self._next_commit = clock.monotonic() + interval_seconds

    def due(self) -> bool:
        """Whether the background commit interval has passed since the last commit."""
        return self._clock.monotonic() >= self._next_commit

    def positions(
        self, keys: Iterable[tuple[str, int]] | None = None, *, only_moved: bool = False
    ) -> Positions:
        """The offsets to commit of `keys` (topic, partition); default: every assigned one."""
        if keys is None:
            return {name: topic.offsets.positions(only_moved=only_moved)
                    for name, topic in self._topics.items()}  # fmt: skip
        numbers: dict[str, set[int]] = {}
        for name, partition in keys:
            numbers.setdefault(name, set()).add(partition)
        return {name: self._topics[name].offsets.positions(chosen, only_moved=only_moved)
                for name, chosen in numbers.items()}  # fmt: skip

    def commit(
        self,
        positions: Positions,
        *,
        asynchronous: bool,
        final: bool = False,
        wait: float = COMMIT_WAIT_SECONDS,
    ) -> None:
        """Commit `positions`; in the background while running, waiting for the broker (`wait`
        seconds at most, unbounded inside the rebalance callback) when partitions are handed
        over or the uploader stops (`final`:
        nothing more is sent for them). A background commit that fails is superseded by the
        next one: the hand-over and final commits send every position."""
        self._next_commit = self._clock.monotonic() + self._interval
        offsets = []
        for name, chosen in positions.items():
            intents = self._topics[name].intents
            offsets += [
                TopicPartition(name, p, offset) if intents is None else TopicPartition(
                    name, p, offset, metadata=intents.metadata(p, offset, final=final))
                for p, offset in chosen.items()
            ]  # fmt: skip
        if not offsets or (asynchronous and self._sync.pending):
            # With a synchronous commit unanswered, a background one could land after it and
            # move the offsets back: the positions wait for the next commit.
            return
        try:
            if asynchronous:
                self._consumer.commit(offsets=offsets, asynchronous=True)
            else:
                self._sync.commit(offsets, wait, in_callback=self.in_callback)
        except (KafkaException, KafkaUnansweredError) as failure:
            # The positions stay uncommitted and are sent again with the next commit.
            log.warning("offset commit failed: %s", failure.args[0])
            return
        if not asynchronous:
            # Only a synchronous commit is known to have landed. A background one can still
            # fail (a rebalance in between), so its positions are sent again every interval
            # until a synchronous commit confirms them (seen: a partition left 61k records
            # behind for ten minutes when background commits were taken as done).
            for name, chosen in positions.items():
                self._topics[name].offsets.committed(chosen)
        for name, chosen in positions.items():
            if chosen:  # the topic's commit: counted once, under its first pipeline
                self._topics[name].lanes[0].metrics.offsets_committed.inc()

    def may_send(self, lane: Lane, batch: Batch) -> bool:
        """Whether the batch may be sent: with intents off, always; else once the intent of
        each of its partitions is committed in this assignment (committed now, synchronously,
        where it is not, unless the batch is `held_back`), and then it is noted as sent."""
        topic = self._topics[lane.topic]
        intents = topic.intents
        if intents is None:
            return True
        if self.held_back(lane, batch):
            return False
        missing = intents.unrecorded(batch.partitions())
        if missing:
            # With the other partitions whose records wait in a batch: one commit, not one for
            # each of the next batches that first holds a record of one of them.
            missing |= intents.unrecorded(
                {p for other in topic.lanes for p in other.batcher.unsent_partitions()}
            )
            offsets = [
                TopicPartition(topic.name, p, offset,
                               metadata=intents.metadata(p, offset, final=False))
                for p in sorted(missing)
                if (offset := topic.offsets.commit_point(p)) is not None
            ]  # fmt: skip
            try:
                self._sync.commit(offsets, self._intent_wait(), in_callback=self.in_callback,
                                  cutoff=self.cutoff)  # fmt: skip
            except (KafkaException, KafkaUnansweredError) as failure:
                if topic.name not in self._intent_failing:
                    log.warning(
                        "the upload intent of input partitions %s of %s could not be committed "
                        "(%s): their batches wait", sorted(missing), topic.name, failure.args[0],
                    )  # fmt: skip
                self._intent_failing.add(topic.name)
                return False
            self._intent_failing.discard(topic.name)
            intents.recorded(missing)
        intents.sent(_highest_offsets(batch), self._clock.time())
        return True

    def held_back(self, lane: Lane, batch: Batch) -> bool:
        """Whether the batch is left to the next owner: a stop came during a revocation's
        drain, and its intent is not committed yet. That commit would be made inside the
        rebalance callback, where librdkafka waits for it without a bound; the batch's offsets
        are not committed either, so the next owner reads its records again."""
        intents = self._topics[lane.topic].intents
        return (intents is not None and self.in_callback and self.cutoff is not None
                and self.cutoff() is not None
                and bool(intents.unrecorded(batch.partitions())))  # fmt: skip

    def _intent_wait(self) -> float:
        if self.drain_deadline is None:
            return COMMIT_WAIT_SECONDS
        left = self.drain_deadline - self._clock.monotonic()
        return min(COMMIT_WAIT_SECONDS, max(left, 0.0))


def _highest_offsets(batch: Batch) -> dict[int, int]:
    highest: dict[int, int] = {}
    for partition, _generation, offsets in partition_runs(batch.records):
        highest[partition] = max(offsets[-1], highest.get(partition, -1))
    return highest
