"""Blocking librdkafka calls made in short steps, so that Ctrl-C ends a command promptly.

confluent-kafka's `list_topics`, `get_watermark_offsets`, `committed` and `consume` wait in C for
their whole timeout without letting Python run its SIGINT handler (`poll` and `flush` let it:
seen, an interrupted `status` against a broker that does not answer exited 28 s after Ctrl-C).
`within(call, timeout)` makes the call with a step's timeout and repeats it while it fails for
want of an answer, until `timeout` is spent. The steps grow (0.25 s, 0.5 s, then 1 s each): a
connection still being set up keeps going between steps, a request needs one round trip within a
step, and Ctrl-C waits at most one step. `between` is called after each failed step: it may
raise, to end the wait for a reason the call cannot report (a broker that
refuses the connection: `connector.kafka.refusals`).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

from confluent_kafka import KafkaError, KafkaException

T = TypeVar("T")

FIRST_STEP_SECONDS = 0.25
LONGEST_STEP_SECONDS = 1.0
UNANSWERED = frozenset({KafkaError._TIMED_OUT, KafkaError._TRANSPORT, KafkaError._ALL_BROKERS_DOWN})
"""Failures that only mean no answer came in time: the next step may get one."""


def within(
    call: Callable[[float], T], timeout: float, between: Callable[[], None] | None = None
) -> T:
    """`call(step_timeout)`, repeated while it fails unanswered, for `timeout` seconds at most;
    then its last failure is raised (or what `between` raised after a step)."""
    deadline = time.monotonic() + timeout
    step = FIRST_STEP_SECONDS
    while True:
        started = time.monotonic()
        this_step = max(min(step, deadline - started), 0.001)
        try:
            return call(this_step)
        except KafkaException as exc:
            error = exc.args[0] if exc.args else None
            unanswered = isinstance(error, KafkaError) and error.code() in UNANSWERED
            if between is not None:
                between()
            if not unanswered or time.monotonic() >= deadline:
                raise
        # A failure that came at once (a refused connection) is not tried again at once.
        time.sleep(max(0.0, started + this_step - time.monotonic()))
        step = min(step * 2, LONGEST_STEP_SECONDS)
