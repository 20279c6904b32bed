"""Ctrl-C in one-shot commands, raised where it is safe to raise it.

Python raises KeyboardInterrupt wherever the main thread is when SIGINT arrives. When that is
inside a Python callback librdkafka runs (a delivery report, a log line) during `poll`, `produce`,
`consume` or `flush`, confluent-kafka loses the exception and the call fails with
"SystemError: ... returned NULL without setting an exception" (seen: an interrupted
`replay-dlq`). So a command wraps each such call in `librdkafka_call()`: a SIGINT that arrives
inside one is held and raised as KeyboardInterrupt right after it returns. Elsewhere (an HTTP
request, a wait) SIGINT raises at once, as usual. Keep the wrapped calls short (a poll with a
timeout of a fraction of a second): the interrupt waits for them.

The command line runs one-shot commands within `held_inside_librdkafka_calls()`; the servers
handle SIGINT themselves (a drain), and so does `demo` (an orderly stop).
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType

_depth = 0
"""How many `librdkafka_call()` blocks the main thread is in."""
_held = False
"""A SIGINT arrived inside one and waits to be raised."""


def _on_sigint(_signum: int, _frame: FrameType | None) -> None:
    global _held  # noqa: PLW0603 - the signal handler's one piece of state
    if _depth:
        _held = True
    else:
        raise KeyboardInterrupt


@contextmanager
def held_inside_librdkafka_calls() -> Iterator[None]:
    """Within: SIGINT is routed through this module (main thread only; a no-op elsewhere)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGINT, _on_sigint)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


@contextmanager
def librdkafka_call() -> Iterator[None]:
    """Around a confluent-kafka call that may run Python callbacks in this thread."""
    global _depth, _held  # noqa: PLW0603
    if threading.current_thread() is not threading.main_thread():
        yield  # signals are only ever handled in the main thread
        return
    _depth += 1
    try:
        yield
    finally:
        _depth -= 1
        if _held and not _depth:
            _held = False
            raise KeyboardInterrupt
