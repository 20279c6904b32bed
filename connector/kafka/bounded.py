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

A wait can also be cut short (`Cutoff`): the uploader's commit of an upload intent, made while
it runs, ends by the deadline of a stop that comes while it waits (the stop's budget counts from
its request, and the commit may wait 5 s).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from typing import Any, TypeVar

from confluent_kafka import TopicPartition

from connector.clock import Clock, SystemClock
from connector.errors import KafkaUnansweredError
from connector.kafka.clients import Consumer
from connector.lifecycle import STOP_CHECK_SECONDS
from connector.stop_budget import LEAVE_GROUP_SECONDS

T = TypeVar("T")
log = logging.getLogger(__name__)

Cutoff = Callable[[], float | None]
"""When a wait must end at the latest (monotonic, on the calls' clock), or None for no cut: a
stop's deadline once one was requested. Asked again every STOP_CHECK_SECONDS while the wait
lasts: the stop may come during it."""


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


class BoundedConsumerCalls:
    """A consumer's synchronous commits and its close, each waiting at most a given time (on
    `clock`). One per consumer: it keeps the calls in order."""

    def __init__(self, consumer: Consumer, clock: Clock | None = None) -> None:
        self._consumer = consumer
        self._clock: Clock = clock or SystemClock()
        self._last_commit: Future[None] | None = None

    @property
    def pending(self) -> bool:
        """Whether a commit that was given up on is still waiting for the broker."""
        return self._last_commit is not None and not self._last_commit.done()

    def commit(
        self,
        offsets: Sequence[TopicPartition],
        timeout: float,
        *,
        in_callback: bool = False,
        cutoff: Cutoff | None = None,
    ) -> None:
        """Commit `offsets`, waiting for the broker's answer `timeout` seconds at most (an
        earlier commit still unanswered is waited for first, within that time), and not past
        `cutoff`; KafkaException when it refused them, KafkaUnansweredError when it did not
        answer.

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
        deadline = self._clock.monotonic() + timeout
        last = self._last_commit
        # Its outcome was reported when it came (`reported_late`).
        if last is not None and not ended(last, deadline, cutoff, self._clock):
            raise KafkaUnansweredError(
                f"offset commit: an earlier commit is still unanswered after {timeout:g}s"
                f"{self._cut(deadline, cutoff)}"
            )

        def commit() -> None:
            self._consumer.commit(offsets=chosen, asynchronous=False)

        self._last_commit = started(commit, "offset commit")
        if not ended(self._last_commit, deadline, cutoff, self._clock):
            reported_late(self._last_commit, "an offset commit")
            raise KafkaUnansweredError(
                f"offset commit: no answer from Kafka within {timeout:g}s"
                f"{self._cut(deadline, cutoff)}"
            )
        self._last_commit.result()  # its exception, if it failed

    def close(self, what: str) -> None:
        """Leave the group and close, once no commit is inside librdkafka, waiting
        LEAVE_GROUP_SECONDS at most; past it, a warning naming `what`: the group notices the
        member's end when its session times out."""
        last = self._last_commit

        def close() -> None:
            if last is not None:
                last.exception()  # never destroy the handle under a commit still inside it
            self._consumer.close()

        closing = started(close, "consumer close")
        if not ended(closing, self._clock.monotonic() + LEAVE_GROUP_SECONDS, None, self._clock):
            log.warning("%s did not leave its group within %gs (the group coordinator does not "
                        "answer): its partitions move to another member when its session times "
                        "out", what, LEAVE_GROUP_SECONDS)  # fmt: skip

    def _cut(self, deadline: float, cutoff: Cutoff | None) -> str:
        """What a wait given up on before its own deadline says: the stop ended it."""
        if self._clock.monotonic() < deadline and cutoff is not None and cutoff() is not None:
            return " (cut short by the stop)"
        return ""


def ended(
    outcome: Future[T], deadline: float, cutoff: Cutoff | None, clock: Clock | None = None
) -> bool:
    """Wait until `outcome` is done, `deadline` passes or `cutoff` does; whether it is done.
    Each slice is first a real wait on the call (its thread must get to run: an injected
    clock's wait may return at once and jump time, seen taking a commit answered at once for
    unanswered), then `clock`'s wait; the deadlines are read from `clock`."""
    clock = clock or SystemClock()
    done = threading.Event()
    outcome.add_done_callback(lambda _: done.set())

    def left() -> float:
        cut = cutoff() if cutoff is not None else None
        return (deadline if cut is None else min(deadline, cut)) - clock.monotonic()

    while not done.is_set():
        remaining = left()
        if remaining <= 0:
            return False
        if done.wait(min(remaining, STOP_CHECK_SECONDS)):
            return True
        remaining = left()
        if remaining <= 0:
            return False
        clock.wait(done, remaining if cutoff is None else min(remaining, STOP_CHECK_SECONDS))
    return True


def reported_late(outcome: Future[Any], what: str) -> None:
    """Log the outcome of `what`, a call given up on, when it comes at last."""

    def report(late: Future[Any]) -> None:
        failure = late.exception()
        if failure is None:
            log.info("%s given up on was answered later", what)
        else:
            log.warning("%s given up on failed later: %s", what, failure)

    outcome.add_done_callback(report)
