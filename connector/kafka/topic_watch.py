"""The topics the running roles need, checked at start-up and every `interval_seconds` after, in
a thread of its own: each must exist, and the state topic must be compacted.

A problem is one WARNING line when it appears (at start-up too) and one INFO line when it is
gone; `problems()` reports it to readiness meanwhile. Whether the check reached Kafka is reported
to the Kafka availability tracker (it is the process's first contact with Kafka); a check that
cannot run keeps the last findings: the outage itself is the tracker's to report. A
broker that does not say how a topic is cleaned up (DescribeConfigs not authorised, or not
implemented, as on the librdkafka mock cluster) leaves compaction unverified: said once at INFO,
not counted as a problem.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass

from connector.clock import Clock, SystemClock
from connector.errors import KafkaOperationError, KafkaRefusedError
from connector.kafka.admin import cleanup_policies, existing_topics
from connector.kafka.availability import KafkaAvailability

log = logging.getLogger(__name__)

DEFAULT_INTERVAL_SECONDS = 30.0
RETRY_SECONDS = 5.0
"""After a check that could not reach Kafka."""
TIMEOUT_SECONDS = 10.0
CREATE_HINT = "toloka-connector check --create-topics creates the connector's topics"


@dataclass(frozen=True)
class TopicNeed:
    topic: str
    setting: str
    """The variable that names the topic, for the messages."""
    compacted: bool = False


def not_compacted(need: TopicNeed, policy: str) -> str:
    return (
        f"topic {need.topic} ({need.setting}) is not compacted (cleanup.policy={policy}): it "
        "grows with every cursor record, and a take-over, which reads it whole, will eventually "
        "time out; set cleanup.policy=compact on it"
    )


def missing(need: TopicNeed) -> str:
    kind = "compacted topic" if need.compacted else "topic"
    return f"{kind} {need.topic} ({need.setting}) does not exist: create it ({CREATE_HINT})"


class TopicWatch:
    def __init__(
        self,
        kafka_config: Mapping[str, str],
        needs: Sequence[TopicNeed],
        *,
        kafka: KafkaAvailability | None = None,
        interval_seconds: float = DEFAULT_INTERVAL_SECONDS,
        clock: Clock | None = None,
    ) -> None:
        self._config = dict(kafka_config)
        self._kafka = kafka
        self._needs = {need.topic: need for need in needs}
        self._interval = interval_seconds
        self._clock: Clock = clock or SystemClock()
        self._lock = threading.Lock()
        self._problems: dict[str, str] = {}
        self._unverified: set[str] = set()
        self._thread: threading.Thread | None = None

    def follow(self, stop: threading.Event) -> None:
        """Check now and every interval until `stop`, in a thread; once per process, however
        many roles ask."""
        with self._lock:
            if self._thread is not None:
                return
            self._thread = threading.Thread(
                target=self._run, args=(stop,), name="topic-watch", daemon=True
            )
        self._thread.start()

    def problems(self, topics: Collection[str]) -> list[str]:
        """The current problems of `topics`, one line each."""
        with self._lock:
            return [self._problems[topic] for topic in topics if topic in self._problems]

    def _run(self, stop: threading.Event) -> None:
        while True:
            wait = self._interval if self.check() else RETRY_SECONDS
            if self._clock.wait(stop, wait):
                return

    def check(self) -> bool:
        """One round of checks; False when Kafka could not be asked."""
        try:
            present = existing_topics(self._config, TIMEOUT_SECONDS)
        except KafkaRefusedError as exc:
            log.debug("topics not checked: %s", exc)
            if self._kafka is not None:
                self._kafka.refused(exc.refusal)
            return False
        except KafkaOperationError as exc:
            log.debug("topics not checked: %s", exc)
            if self._kafka is not None:
                self._kafka.unanswered(str(exc))
            return False
        if self._kafka is not None:
            self._kafka.answered()
        found = {
            topic: missing(need) for topic, need in self._needs.items() if topic not in present
        }
        to_compact = [n for n in self._needs.values() if n.compacted and n.topic in present]
        for need in to_compact:
            problem = self._compaction_problem(need)
            if problem is not None:
                found[need.topic] = problem
        self._report(found)
        return True

    def _compaction_problem(self, need: TopicNeed) -> str | None:
        try:
            policy = cleanup_policies(self._config, [need.topic], TIMEOUT_SECONDS)[need.topic]
        except KafkaOperationError as exc:
            if need.topic not in self._unverified:
                self._unverified.add(need.topic)
                log.info("cannot verify that topic %s is compacted: %s", need.topic, exc)
            return None
        return None if "compact" in policy.split(",") else not_compacted(need, policy)

    def _report(self, found: dict[str, str]) -> None:
        with self._lock:
            before, self._problems = self._problems, found
        for topic, problem in found.items():
            if before.get(topic) != problem:
                log.warning("%s", problem)
        for topic in before.keys() - found.keys():
            log.info("topic %s (%s) is as it must be now", topic, self._needs[topic].setting)
