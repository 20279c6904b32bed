"""Starts the roles, the health server and the signal handlers; drains on SIGTERM/SIGINT.

Each role runs in a thread of its own. The first SIGTERM/SIGINT sets the shared stop event
(within half a second: the handler only records it, see `_record`): the roles stop consuming,
drain in-flight work, commit what is done and return. A role that fails fatally stops the
others too, and the process exits 1. So does a fatal condition outside the
roles (`fatal`: Kafka refusing every connection since start-up); the roles then have
FATAL_STOP_SECONDS to return: with Kafka never connected, nothing was read, so nothing is left
to drain, and a role's call still waiting on Kafka must not hold the exit for its timeout.
"""

from __future__ import annotations

import logging
import signal
import sys
import threading
import time
import traceback
from collections.abc import Callable, Sequence
from types import FrameType

from prometheus_client import CollectorRegistry

from connector.clock import SystemClock
from connector.errors import ConnectorError, RoleFailedError
from connector.health import DEFAULT_STALE_AFTER_SECONDS, start_health_server
from connector.lifecycle import Role, StopRequest, stop_requested_at
from connector.metrics import Metrics

log = logging.getLogger(__name__)

FATAL_STOP_SECONDS = 5.0


_received: list[tuple[signal.Signals, float]] = []
"""SIGTERM and SIGINT received since the handlers were installed, in order, each with when it
came (monotonic): the stop's budget counts from there, not from when the loop noticed it."""
_second_raises = False
"""Whether a second signal raises KeyboardInterrupt (`install_signal_handlers`)."""
DRAIN_SIGNALS = (signal.SIGTERM, signal.SIGINT)


def _record(signum: int, _frame: FrameType | None) -> None:
    # Only an append (one bytecode, no lock). Python runs a handler inside whatever the main
    # thread was doing, the previous handler included: one that set the stop event took the
    # event's lock, and a second signal meanwhile ran it again inside, waiting for the lock it
    # held (seen: SIGTERMs from `timeout` and from a user 1 ms apart hung `run` for good).
    _received.append((signal.Signals(signum), time.monotonic()))  # monotonic() takes no lock
    if _second_raises and len(_received) > 1:
        raise KeyboardInterrupt  # takes no lock: a `with` it interrupts releases its own


def install_signal_handlers(
    signals: tuple[signal.Signals, ...] = DRAIN_SIGNALS, *, second_raises: bool = False
) -> None:
    """`signals` ask for a drain from now on (main thread only); `run_roles`' loop (or the
    demo's watch) sets its stop event when one came (`received_signal`). `second_raises`:
    a second one raises KeyboardInterrupt wherever the main thread is (the demo's second
    Ctrl-C does not wait for the orderly stop)."""
    global _second_raises  # noqa: PLW0603 - the handler's one setting
    _received.clear()
    _second_raises = second_raises
    for signum in signals:
        signal.signal(signum, _record)


def received_signal() -> signal.Signals | None:
    """The first SIGTERM or SIGINT since `install_signal_handlers`, if any."""
    return _received[0][0] if _received else None


def signal_received_at() -> float | None:
    """When (monotonic) the first SIGTERM or SIGINT came, if one did."""
    return _received[0][1] if _received else None


def where(thread: threading.Thread) -> str:
    """The stack `thread` is running now: what a role stuck in a drain waits for."""
    frame = sys._current_frames().get(thread.ident or -1)
    return "".join(traceback.format_stack(frame)) if frame is not None else "(not running)"


def run_roles(
    roles: Sequence[Role],
    metrics: Metrics,
    *,
    metrics_host: str,
    metrics_port: int,
    shutdown_timeout_seconds: float,
    liveness_timeout_seconds: float = DEFAULT_STALE_AFTER_SECONDS,
    stop: threading.Event | None = None,
    fatal: Callable[[], str | None] | None = None,
    exposed: CollectorRegistry | None = None,
) -> None:
    """Run `roles` until `stop` (or a signal); raise RoleFailedError when one failed or when
    `fatal()` (asked every half second) gave a reason to stop. /metrics shows `exposed`
    (`metrics.registry` without it). The roles get `shutdown_timeout_seconds` from when the stop
    was requested (the signal's arrival, `StopRequest.requested_at`)."""
    stop = stop if stop is not None else StopRequest()
    signals = threading.current_thread() is threading.main_thread()
    if signals and signal.getsignal(signal.SIGTERM) is not _record:
        install_signal_handlers()  # unless the caller did, and one may have come since
    failures: list[str] = []

    def guarded(role: Role) -> None:
        try:
            role.run(stop)
        except ConnectorError as exc:
            # Expected (a wrong key, a missing project): the command's one line says it all.
            log.debug("%s failed", role.name, exc_info=True)
            failures.append(f"{role.name}: {exc}")
        except Exception as exc:
            log.exception("%s failed", role.name)  # a bug: its traceback is what to report
            failures.append(f"{role.name}: {exc}")
        finally:
            stop.set()  # one role ending ends the process: it is no use half-running

    server = (
        start_health_server(
            metrics_host,
            metrics_port,
            metrics,
            roles,
            stale_after_seconds=liveness_timeout_seconds,
            exposed=exposed,
        )
        if metrics_port
        else None
    )
    # Daemon threads: a role still stuck after the shutdown timeout must not hold the exit.
    threads = [threading.Thread(target=guarded, args=(r,), name=r.name, daemon=True) for r in roles]
    for thread in threads:
        thread.start()
    try:
        # A timed wait, not stop.wait(): the OS may deliver SIGTERM to any thread, and Python
        # runs its handler only when the main thread gets to run bytecode, which an untimed
        # wait never lets it do (seen: 1 in 5 SIGTERMs ignored); and the handler only records
        # the signal: this loop sets the stop event.
        fatal_reason = None
        while not stop.wait(0.5):
            signalled = received_signal() if signals else None
            if signalled is not None:
                log.info("received %s: draining and shutting down", signalled.name)
                if isinstance(stop, StopRequest):
                    stop.set(at=signal_received_at())
                else:  # a caller's plain event: the budget counts from now
                    stop.set()
                break
            fatal_reason = fatal() if fatal is not None else None
            if fatal_reason is not None:
                failures.append(fatal_reason)
                stop.set()
        budget = shutdown_timeout_seconds if fatal_reason is None else FATAL_STOP_SECONDS
        # One budget for every role, from the request (a fatal stop: from now).
        clock = SystemClock()
        start = stop_requested_at(stop, clock) if fatal_reason is None else clock.monotonic()
        deadline = start + budget
        for thread in threads:
            thread.join(max(0.0, deadline - time.monotonic()))
            if thread.is_alive() and fatal_reason is None:
                failures.append(f"{thread.name}: did not finish draining in time")
                log.error("%s did not finish draining in time; it was at:\n%s",
                          thread.name, where(thread))  # fmt: skip
    finally:
        if server is not None:
            server.close()
    if failures:
        raise RoleFailedError("; ".join(failures))
