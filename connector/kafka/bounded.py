"""The consumer calls librdkafka bounds only by the session timeout, made with a shorter bound.

`Consumer.commit(asynchronous=False)` waits for the broker's answer; one that waits for the group
coordinator fails only after `session.timeout.ms` (45 s by default) plus retries, longer than the
uploader's whole drain, and `Consumer.close()` waits for such commits as long. Seen: after a
broker restart, an uploader's final commit outlasted the whole shutdown budget, and `run` exited
1 "did not finish draining in time" with everything uploaded and committed before.

`BoundedConsumerCalls` makes each call on a thread of its own and waits at most the given time;
past it, `KafkaUnansweredError` is raised and the call goes on in the background (librdkafka
cannot cancel it; its late outcome is logged). The calls of one consumer keep their order: a
commit first waits (within its own time) for an earlier one still unanswered, and the close
runs only once no commit is inside librdkafka any more (librdkafka's termination rule: a
handle is destroyed after every call on it returned).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeoutError
from typing import TypeVar

from confluent_kafka import TopicPartition

from connector.errors import KafkaUnansweredError
from connector.kafka.clients import Consumer
from connector.stop_budget import LEAVE_GROUP_SECONDS

T = TypeVar("T")
log = logging.getLogger(__name__)


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
    """A consumer's synchronous commits and its close, each waiting at most a given time. One
    per consumer: it keeps the calls in order."""

    def __init__(self, consumer: Consumer) -> None:
        self._consumer = consumer
        self._last_commit: Future[None] | None = None

    @property
    def pending(self) -> bool:
        """Whether a commit that was given up on is still waiting for the broker."""
        return self._last_commit is not None and not self._last_commit.done()

    def commit(
        self, offsets: Sequence[TopicPartition], timeout: float, *, in_callback: bool = False
    ) -> None:
        """Commit `offsets`, waiting for the broker's answer `timeout` seconds at most (an
        earlier commit still unanswered is waited for first, within that time);
        KafkaException when it refused them, KafkaUnansweredError when it did not answer.

        `in_callback`: made from inside a rebalance callback, where the commit is made on the
        calling thread and waited for without a bound, as before: librdkafka answers a commit
        from another thread only once the callback returned (seen: a revocation's commit gave
        up, landed after the new owner had started, and the hand-over went wrong), and the
        group's hand-over needs it done before the callback returns."""
        chosen = list(offsets)
        if in_callback:
            # Not after an earlier commit still unanswered: from its thread it is answered only
            # once the callback returned; commits to one coordinator go out in order anyway.
            self._consumer.commit(offsets=chosen, asynchronous=False)
            return
        deadline = time.monotonic() + timeout
        last = self._last_commit
        if last is not None:
            try:
                last.exception(timeout)  # its outcome was reported when it came (`_late`)
            except FutureTimeoutError:
                raise KafkaUnansweredError(
                    f"offset commit: an earlier commit is still unanswered after {timeout:g}s"
                ) from None

        def commit() -> None:
            self._consumer.commit(offsets=chosen, asynchronous=False)

        self._last_commit = started(commit, "offset commit")
        try:
            self._last_commit.result(max(deadline - time.monotonic(), 0.0))
        except FutureTimeoutError:
            self._last_commit.add_done_callback(_late)
            raise KafkaUnansweredError(
                f"offset commit: no answer from Kafka within {timeout:g}s"
            ) from None

    def close(self, what: str) -> None:
        """Leave the group and close, once no commit is inside librdkafka, waiting
        LEAVE_GROUP_SECONDS at most; past it, a warning naming `what`: the group notices the
        member's end when its session times out."""
        last = self._last_commit

        def close() -> None:
            if last is not None:
                last.exception()  # never destroy the handle under a commit still inside it
            self._consumer.close()

        try:
            waited(started(close, "consumer close"), LEAVE_GROUP_SECONDS, "leaving the group")
        except KafkaUnansweredError:
            log.warning("%s did not leave its group within %gs (the group coordinator does not "
                        "answer): its partitions move to another member when its session times "
                        "out", what, LEAVE_GROUP_SECONDS)  # fmt: skip


def _late(outcome: Future[None]) -> None:
    """The outcome of a commit given up on, when it comes at last."""
    failure = outcome.exception()
    if failure is None:
        log.info("an offset commit given up on was answered later: it landed")
    else:
        log.warning("an offset commit given up on failed later: %s", failure)
