"""The consumer calls librdkafka gives no timeout, made with one.

`Consumer.commit(asynchronous=False)` waits for the broker's answer without a bound (librdkafka's
`rd_kafka_commit` waits forever on its reply queue); a commit that waits for the group
coordinator fails only after `session.timeout.ms` (45 s by default), and `Consumer.close()` waits
for such commits as long. Seen: after a broker restart, an uploader's final commit outlasted the
whole shutdown budget, and `run` exited 1 "did not finish draining in time" with everything
uploaded and committed before.

`BoundedConsumerCalls` makes each call on a thread of its own and waits at most the given time;
past it, `KafkaUnansweredError` is raised and the call goes on in the background (librdkafka cannot
cancel it; it ends with the coordinator's answer or the session timeout). While one commit is
still unanswered, the next is refused at once rather than queued behind it on another thread.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeoutError
from typing import TypeVar

from confluent_kafka import TopicPartition

from connector.errors import KafkaUnansweredError
from connector.kafka.clients import Consumer

T = TypeVar("T")
log = logging.getLogger(__name__)

LEAVE_GROUP_SECONDS = 5.0
"""How long leaving a consumer group may take at the end, after the drain."""


def started(call: Callable[[], T], what: str) -> Future[T]:
    """`call()` running on a daemon thread named `what`; its outcome when it ends."""
    outcome: Future[T] = Future()

    def run() -> None:
        try:
            outcome.set_result(call())
        except BaseException as failure:  # handed to whoever waits for the outcome
            outcome.set_exception(failure)

    threading.Thread(target=run, name=what, daemon=True).start()
    return outcome


def waited(outcome: Future[T], timeout: float, what: str) -> T:
    """`outcome`'s result (or its exception) if it comes within `timeout` seconds; else
    KafkaUnansweredError naming `what`."""
    try:
        return outcome.result(timeout)
    except FutureTimeoutError:
        raise KafkaUnansweredError(f"{what}: no answer from Kafka within {timeout:g}s") from None


class BoundedConsumerCalls:
    """A consumer's synchronous commits and its close, each waiting at most a given time."""

    def __init__(self, consumer: Consumer) -> None:
        self._consumer = consumer
        self._last_commit: Future[None] | None = None

    def commit(self, offsets: Sequence[TopicPartition], timeout: float) -> None:
        """Commit `offsets`, waiting for the broker's answer `timeout` seconds at most;
        KafkaException when it refused them, KafkaUnansweredError when it did not answer (then
        also at once while that commit is still unanswered)."""
        last = self._last_commit
        if last is not None and not last.done():
            raise KafkaUnansweredError("offset commit: an earlier commit is still unanswered")
        chosen = list(offsets)

        def commit() -> None:
            self._consumer.commit(offsets=chosen, asynchronous=False)

        self._last_commit = started(commit, "offset commit")
        waited(self._last_commit, timeout, "offset commit")

    def close(self, what: str) -> None:
        """Leave the group and close, waiting LEAVE_GROUP_SECONDS at most; past it, a warning
        naming `what`: the group notices the member's end when its session times out."""
        try:
            waited(started(self._consumer.close, "consumer close"), LEAVE_GROUP_SECONDS,
                   "leaving the group")  # fmt: skip
        except KafkaUnansweredError:
            log.warning("%s did not leave its group within %gs (the group coordinator does not "
                        "answer): its partitions move to another member when its session times "
                        "out", what, LEAVE_GROUP_SECONDS)  # fmt: skip
