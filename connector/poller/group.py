"""Which pipelines this instance may lead: Kafka's group protocol spreads them over the instances.

Every pipeline (app project) has a **leadership topic** of one partition,
`<CONNECTOR_STATE_TOPIC>.leader.<app project id>` (`connector.contract.leadership`); nothing is
ever written to it. Every poller instance of a deployment joins one consumer group,
`<CONNECTOR_GROUP_ID>-poller-leaders`, subscribed to the leadership topics of the pipelines it
serves whose loops run (not before a pipeline read its app project, not after its loop ended),
with the cooperative-sticky assignor. Kafka assigns each partition to one member, so
each pipeline has one instance that may lead it, and the assignor keeps the counts balanced
(with N instances and M pipelines, none holds more than ⌈M/N⌉) and moves only what it must when
instances come and go. One topic per pipeline, rather than one topic with a partition per
pipeline, makes the mapping a name that every instance derives alike, whatever the order or the
number of the pipelines in its configuration: an instance never subscribes to a pipeline it
does not serve, and no index or hash can map two pipelines to one partition.

The group only says who *may* lead. Safety stays with Kafka's fencing: a leader claims the
pipeline's transactional id (`init_transactions` fences every older holder) and reads the
cursor to the end before it writes. And the loop still waits, once assigned, until the cursor
names no live leader (`connector.poller.leadership`): a revoked leader releases its cursor
before its partition is given away, so a hand-over waits for nothing; after a crash, the
cursor's silence and the group's session end together (the session timeout is
`CONNECTOR_LEADER_TIMEOUT_SECONDS`); and two instances whose configurations disagree on where a
pipeline goes do not fence each other in turn: the second waits while the first keeps leading.

`Lease` is the group's word on one pipeline, between the group's thread (`LeadershipGroup`,
whose rebalance callbacks grant and revoke) and the pipeline's loop. A revocation ends the
loop's term and waits, inside the rebalance callback, until the loop stopped leading (its open
transaction committed or aborted, its release written), up to `revoke_timeout_seconds`; only
then does Kafka hand the partition to another instance.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

from confluent_kafka import Consumer, KafkaError, TopicPartition

from connector.contract.leadership import leadership_group_id
from connector.errors import KafkaOperationError
from connector.kafka.admin import TopicSpec, ensure_topics, request_auto_creation
from connector.kafka.bounded import BoundedConsumerCalls
from connector.lifecycle import STOP_CHECK_SECONDS
from connector.logs import kafka_logger

log = logging.getLogger(__name__)

_POLL_SECONDS = 0.2
DEFAULT_MAX_POLL_INTERVAL_MS = 300_000
MAX_SESSION_TIMEOUT_MS = 1_800_000
"""Kafka's default group.max.session.timeout.ms: a longer leader timeout is a session this long
(the broker would refuse the join)."""
TOPIC_RETRY_SECONDS = 5.0
"""How often a missing leadership topic is asked for again."""
HEARTBEATS_PER_SESSION = 4
"""Group heartbeats per session timeout (Kafka's advice is at least three)."""
_TOPIC_UNAVAILABLE = (KafkaError.UNKNOWN_TOPIC_OR_PART, KafkaError.TOPIC_AUTHORIZATION_FAILED)
"""The errors a consumer reports for one subscribed topic (the error's record names it)."""


class Lease:
    """Whether this instance may lead one pipeline now: granted and revoked by the group's
    thread, waited for and held by the pipeline's loop.

    A grant opens a term, an event that is set when the term ends (revoked, lost, or the
    process stopping). The loop holds `leading()` from its take-over until it stopped leading,
    which `wait_released` waits for."""

    def __init__(self) -> None:
        self._turn = threading.Condition()
        self._term: threading.Event | None = None
        self._leading = False
        self._failure: BaseException | None = None

    @property
    def granted(self) -> bool:
        with self._turn:
            return self._term is not None

    def grant(self) -> None:
        with self._turn:
            if self._term is None:
                self._term = threading.Event()
                self._turn.notify_all()

    def revoke(self) -> None:
        """End the term (at once: `wait_released` waits for the loop)."""
        with self._turn:
            if self._term is not None:
                self._term.set()
                self._term = None
                self._turn.notify_all()

    def fail(self, failure: BaseException) -> None:
        """The group failed: `wait_granted` raises `failure` from now on."""
        with self._turn:
            self._failure = failure
            self._turn.notify_all()

    def wait_released(self, timeout: float) -> bool:
        """True once the loop is not leading; False when it still was after `timeout`."""
        with self._turn:
            return self._turn.wait_for(lambda: not self._leading, timeout)

    def wait_granted(
        self, stop: threading.Event, beat: Callable[[], None] | None = None
    ) -> threading.Event | None:
        """The term once one is granted (an event set when it ends); None when `stop` comes
        first. Raises what ended the group, if it failed. `beat` is called while it waits (the
        loop's heartbeat: a standby waiting for the group is not stuck)."""
        with self._turn:
            while self._term is None:
                if self._failure is not None:
                    raise self._failure
                if stop.is_set():
                    return None
                if beat is not None:
                    beat()
                self._turn.wait(STOP_CHECK_SECONDS)
            return self._term

    @contextmanager
    def leading(self) -> Iterator[None]:
        with self._turn:
            self._leading = True
        try:
            yield
        finally:
            with self._turn:
                self._leading = False
                self._turn.notify_all()


def leadership_consumer_config(
    kafka_config: Mapping[str, Any], group_id: str, session_timeout_seconds: float
) -> dict[str, Any]:
    session_ms = min(max(1, round(session_timeout_seconds * 1000)), MAX_SESSION_TIMEOUT_MS)
    return {
        **kafka_config,
        "group.id": leadership_group_id(group_id),
        "partition.assignment.strategy": "cooperative-sticky",
        "session.timeout.ms": session_ms,
        "heartbeat.interval.ms": max(1, session_ms // HEARTBEATS_PER_SESSION),
        # librdkafka refuses a session longer than this; the rebalance callbacks bound the poll.
        "max.poll.interval.ms": max(DEFAULT_MAX_POLL_INTERVAL_MS, session_ms),
        "enable.auto.commit": False,
        "enable.auto.offset.store": False,
        "logger": kafka_logger(),
    }


class LeadershipGroup:
    """The group member of this instance: grants and revokes the leases of its pipelines.

    Every pipeline's poller runs inside `joined(stop, lease)`: the first to enter starts the
    member's thread, which polls the group (the rebalance callbacks run inside `poll`) until
    `stop`, then revokes every lease, waits for the loops to release, and leaves the group, so
    that the other instances take the pipelines over at once instead of after the session
    timeout; the last to leave waits for that. The member subscribes only to the leadership
    topics of the loops inside `joined`: a pipeline still reading its app project at start-up,
    or whose loop ended, is not held by this instance while another could lead it. A failure of
    the member (a consumer that cannot be created) is raised in every pipeline's loop
    (`Lease.wait_granted`): the pollers fail with it."""

    def __init__(
        self,
        kafka_config: Mapping[str, Any],
        *,
        group_id: str,
        leases: Mapping[str, Lease],
        session_timeout_seconds: float,
        revoke_timeout_seconds: float,
        topic_timeout_seconds: float,
    ) -> None:
        self._kafka_config = kafka_config
        self._config = leadership_consumer_config(kafka_config, group_id, session_timeout_seconds)
        self._session_seconds = session_timeout_seconds
        self._leases = dict(leases)
        self._revoke_timeout = revoke_timeout_seconds
        self._topic_timeout = topic_timeout_seconds
        self._members = 0
        self._enlisted: set[str] = set()
        """The leadership topics of the loops inside `joined`: the member's subscription."""
        self._subscribed: frozenset[str] | None = None
        self._thread: threading.Thread | None = None
        self._entry = threading.Lock()
        self._all_left = threading.Event()
        """Every loop left `joined` (one failed, say, before `stop`): the member leaves too."""
        self._closing = False
        """The member is leaving: the terms were ended once, the close's revocation does not
        wait for the loops again."""
        self._group_problem: str | None = None
        self._topic_problems: dict[str, str] = {}
        """Leadership topic → why it cannot be assigned (readiness of its pipeline only)."""
        self._missing: set[str] = set()
        """The leadership topics that do not exist: created again every TOPIC_RETRY_SECONDS (a
        topic this account may not read is not: creating it again would change nothing, and
        subscribing again each time would rebalance the whole group)."""

    def problem(self, lease: Lease) -> str | None:
        """What keeps the group from assigning `lease`'s pipeline (readiness), or None."""
        topic = self._topic_of(lease)
        found = [p for p in (self._group_problem, self._topic_problems.get(topic)) if p]
        return "; ".join(found) or None

    def enlist(self, lease: Lease) -> None:
        """Ask the group for `lease`'s pipeline from now on (`joined` does it)."""
        with self._entry:
            self._enlisted.add(self._topic_of(lease))

    @contextmanager
    def joined(self, stop: threading.Event, lease: Lease) -> Iterator[None]:
        """Around one pipeline poller's loop: the member asks for its pipeline and runs while
        any loop does. The last loop to leave (at `stop`, or because it failed: a loop's error
        must end its role, not wait for a `stop` that only that ending brings) ends the member
        and waits for it to leave the group, within the revoke timeout and as long again for
        the close."""
        topic = self._topic_of(lease)
        with self._entry:
            self._members += 1
            self._enlisted.add(topic)
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run_or_fail, args=(stop,), name="poller-leadership", daemon=True
                )
                self._thread.start()
        try:
            yield
        finally:
            with self._entry:
                self._members -= 1
                self._enlisted.discard(topic)
                last = self._members == 0
            if last and self._thread is not None:
                self._all_left.set()
                self._thread.join(2 * self._revoke_timeout)
                if self._thread.is_alive():
                    log.warning(
                        "the poller's leadership group did not leave within %gs: the other "
                        "instances take its pipelines over after the session timeout",
                        2 * self._revoke_timeout,
                    )

    def _topic_of(self, lease: Lease) -> str:
        return next(topic for topic, known in self._leases.items() if known is lease)

    def _run_or_fail(self, stop: threading.Event) -> None:
        try:
            self.run(stop)
        except BaseException as exc:  # raised in the pipelines' loops, where it ends the roles
            log.exception("the poller's leadership group failed")
            for lease in self._leases.values():
                lease.fail(exc)

    def run(self, stop: threading.Event) -> None:
        self._ensure_topics(sorted(self._leases))
        ensured_at = time.monotonic()
        consumer = Consumer(self._config)
        try:
            while not (stop.is_set() or self._all_left.is_set()):
                self._follow_enlisted(consumer)
                message = consumer.poll(_POLL_SECONDS)
                error = None if message is None else message.error()
                if error is not None:
                    self._error(error, None if message is None else message.topic())
                # A creation refused at start-up (seen: a broker just restarted answers "all
                # brokers are currently fenced") is tried again while a topic is missing;
                # subscribing again makes the consumer look for the topic now, not at its next
                # metadata refresh (5 minutes by default).
                if self._missing and time.monotonic() - ensured_at >= TOPIC_RETRY_SECONDS:
                    ensured_at = time.monotonic()
                    if self._ensure_topics(sorted(self._missing)):
                        self._subscribe(consumer, self._subscribed or frozenset())
        finally:
            self._end_terms(list(self._leases))
            self._closing = True
            BoundedConsumerCalls(consumer).close(
                "the leadership group's consumer"
            )  # the others rebalance at once

    def _follow_enlisted(self, consumer: Consumer) -> None:
        """Subscribe to the leadership topics of the loops inside `joined` when they changed:
        the cooperative assignor revokes only a pipeline that left."""
        with self._entry:
            wanted = frozenset(self._enlisted)
        if wanted != self._subscribed:
            self._subscribe(consumer, wanted)

    def _subscribe(self, consumer: Consumer, topics: frozenset[str]) -> None:
        self._subscribed = topics
        if not topics:
            consumer.unsubscribe()  # revokes what it held: its loops have left
            return
        consumer.subscribe(
            sorted(topics),
            on_assign=self._assigned,
            on_revoke=self._revoked,
            on_lost=self._lost,
        )

    def _ensure_topics(self, topics: Sequence[str]) -> bool:
        """Create the leadership `topics` that are missing: by CreateTopics, else by a metadata
        request on a broker that creates topics on first use (the mock cluster); an account
        without the right leaves them to `check --create-topics` or an operator (readiness
        names the missing one). Whether any of them may be there now."""
        specs = [TopicSpec(topic) for topic in topics]
        try:
            report = ensure_topics(self._kafka_config, specs, self._topic_timeout)
        except KafkaOperationError as exc:
            log.info("CreateTopics failed for the leadership topics (%s): asking for them", exc)
            request_auto_creation(self._kafka_config, list(topics), self._topic_timeout)
            return True  # maybe: the next metadata request tells
        if report.created:
            log.info("created leadership topics %s", ", ".join(report.created))
        there = {*report.created, *report.existing}
        for topic in there:
            self._missing.discard(topic)
            self._topic_problems.pop(topic, None)
        return bool(there)

    def _error(self, error: KafkaError, topic: str | None) -> None:
        """Readiness says it while it lasts (a topic's problem for its pipeline only); the log
        once per kind of problem."""
        code = error.code()
        if topic in self._leases and code in _TOPIC_UNAVAILABLE:
            missing = code == KafkaError.UNKNOWN_TOPIC_OR_PART
            remedy = "create it" if missing else "let this account read it"
            problem = f"leadership topic {topic} unavailable ({error.str()}): {remedy}"
            if self._topic_problems.get(topic) != problem:
                log.warning("poller %s", problem)
            self._topic_problems[topic] = problem
            if missing:
                self._missing.add(topic)
            return
        if code == KafkaError.INVALID_SESSION_TIMEOUT:
            problem = (
                f"configuration: the broker refuses the leadership group's session timeout "
                f"CONNECTOR_LEADER_TIMEOUT_SECONDS={self._session_seconds:g} (outside its "
                f"group.min.session.timeout.ms and group.max.session.timeout.ms): {error.str()}"
            )
        else:
            problem = f"leadership group: {error.str()}"
        if problem != self._group_problem:
            log.warning("poller %s", problem)
        self._group_problem = problem

    def _ours(self, partitions: list[TopicPartition]) -> list[str]:
        """The leadership topics among `partitions`: partition 0 only (a topic someone made
        with more partitions grants one lease once)."""
        return [tp.topic for tp in partitions if tp.topic in self._leases and tp.partition == 0]

    def _assigned(self, _consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self._group_problem = None
        topics = self._ours(partitions)
        for topic in topics:
            self._missing.discard(topic)
            self._topic_problems.pop(topic, None)
        if topics:
            log.info("leadership assigned: %s", ", ".join(topics))
        for topic in topics:
            self._leases[topic].grant()

    def _revoked(self, _consumer: Consumer, partitions: list[TopicPartition]) -> None:
        topics = self._ours(partitions)
        if topics:
            log.info("leadership revoked: %s", ", ".join(topics))
        self._end_terms(topics)

    def _lost(self, _consumer: Consumer, partitions: list[TopicPartition]) -> None:
        topics = self._ours(partitions)
        if topics:
            log.warning("leadership lost (the group's session ended): %s", ", ".join(topics))
        self._end_terms(topics)

    def _end_terms(self, topics: Sequence[str]) -> None:
        """End the terms of `topics` together, then wait for each loop to release, within one
        revoke timeout in all (fencing keeps a loop that takes longer harmless)."""
        for topic in topics:
            self._leases[topic].revoke()
        if self._closing:
            return  # waited for when the member began to leave
        deadline = time.monotonic() + self._revoke_timeout
        for topic in topics:
            if not self._leases[topic].wait_released(max(0.0, deadline - time.monotonic())):
                log.warning(
                    "the poller of %s did not stop leading within %gs of the revocation; its "
                    "successor's take-over fences it",
                    topic,
                    self._revoke_timeout,
                )
