"""Stand-ins for a worker process's body (`connector.app.workers.WorkerProcess(target=...)`).

Each speaks the worker's side of the pipe as `connector.app.worker_child` does, without Kafka or
the API, so that the parent's side (readiness, liveness, metrics, exit) is tested with real
spawned processes and pipes. Module-level functions: spawn imports them by name.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from multiprocessing.connection import Connection

from prometheus_client import CollectorRegistry, Counter

from connector.app import worker_child
from connector.app.worker_child import COLLECT, FAILED, FAMILIES, STATUS, STOP
from connector.config import Settings
from connector.errors import StartupError
from connector.lifecycle import Heartbeat, Readiness

REPORT_SECONDS = 0.2
STUCK_FOR_SECONDS = 120.0


def _take_sigterm() -> None:
    """Let SIGTERM through, as a real worker does once it can drain (`worker_child`): here its
    default action ends the stand-in, so a test that fails before stopping one leaves none
    behind (multiprocessing terminates its daemonic children at exit, then waits for them)."""
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTERM})


def _serve(conn: Connection, loops: list[tuple[float, str | None]], consumed: int) -> None:
    """Report ready with `loops` every REPORT_SECONDS, answer a metrics request with a
    records_consumed of `consumed`, return on STOP."""
    _take_sigterm()
    registry = CollectorRegistry()
    Counter("toloka_connector_records_consumed", "c", registry=registry).inc(consumed)
    while True:
        conn.send((STATUS, True, "uploader ready: fake", loops))
        if conn.poll(REPORT_SECONDS):
            message = conn.recv()
            if message[0] == STOP:
                return
            if message[0] == COLLECT:
                conn.send((FAMILIES, message[1], list(registry.collect())))


def ready_until_stopped(_settings: Settings, number: int, conn: Connection) -> None:
    """Ready, its loop alive; `number` records consumed; exits 0 when told to stop."""
    _serve(conn, [(0.0, None)], number)


def stuck_until_stopped(_settings: Settings, number: int, conn: Connection) -> None:
    """Ready, but its loop has not gone round for STUCK_FOR_SECONDS and waits on nothing."""
    _serve(conn, [(STUCK_FOR_SECONDS, None)], number)


def failing(_settings: Settings, _number: int, conn: Connection) -> None:
    """Says why it fails, then exits 1, as a worker whose roles failed does."""
    _take_sigterm()
    conn.send((FAILED, "the API refuses the key (401)"))
    sys.exit(1)


def reports_held_signals(_settings: Settings, _number: int, conn: Connection) -> None:
    """Ready, its status message naming the signals it started with blocked (SIGINT and SIGTERM
    are the ones `WORKER_HELD_SIGNALS` holds); exits 0 when told to stop."""
    blocked = signal.pthread_sigmask(signal.SIG_BLOCK, [])
    held = " ".join(
        sorted(signal.Signals(s).name for s in blocked & {signal.SIGINT, signal.SIGTERM})
    )
    _take_sigterm()
    while True:
        conn.send((STATUS, True, f"held: {held or 'none'}", [(0.0, None)]))
        if conn.poll(REPORT_SECONDS) and conn.recv()[0] == STOP:
            return


def reports_static_member_ids(settings: Settings, _number: int, conn: Connection) -> None:
    """Ready, its status message the group.instance.id each pipeline's clients get; exits 0
    when told to stop."""
    _take_sigterm()
    ids = [p.kafka.client_config().get("group.instance.id") for p in settings.pipelines]
    while True:
        conn.send((STATUS, True, f"ids: {' '.join(map(str, ids))}", [(0.0, None)]))
        if conn.poll(REPORT_SECONDS) and conn.recv()[0] == STOP:
            return


def never_sends_metrics(_settings: Settings, _number: int, conn: Connection) -> None:
    """Ready, its status message how many metrics requests it got (`asked N`), none of which it
    answers; exits 0 when told to stop."""
    _take_sigterm()
    asked = 0
    while True:
        conn.send((STATUS, True, f"asked {asked}", [(0.0, None)]))
        if conn.poll(REPORT_SECONDS):
            message = conn.recv()
            if message[0] == STOP:
                return
            asked += message[0] == COLLECT


def real_worker_whose_uploaders_fail(settings: Settings, number: int, conn: Connection) -> None:
    """The real worker (`serve_worker`), its uploaders failing as a refused key makes them."""

    def refused(*_args: object) -> None:
        raise StartupError("the API refuses the key (401)")

    worker_child._run_uploaders = refused  # type: ignore[assignment]
    worker_child.serve_worker(settings, number, conn)


class _DrainsForever:
    """An uploader role whose drain never ends (an upload stuck past every deadline)."""

    name = "uploader"

    def __init__(self) -> None:
        self.heartbeat = Heartbeat(self.name)

    def run(self, stop: threading.Event) -> None:
        stop.wait()
        threading.Event().wait()  # never set: the worker's runner gives up on this thread

    def readiness(self) -> Readiness:
        return Readiness(True, "draining forever once stopped")


def real_worker_whose_drain_overruns(settings: Settings, number: int, conn: Connection) -> None:
    """The real worker (`serve_worker`), its uploader's drain never ending: its own runner gives
    up on it when the worker's shutdown budget is spent, and the worker exits 1 saying so."""
    worker_child.build_roles = lambda *_args: [_DrainsForever()]  # type: ignore[attr-defined]
    worker_child.serve_worker(settings, number, conn)


def waits_then_goes_silent(_settings: Settings, _number: int, conn: Connection) -> None:
    """Reports its loop waiting on Kafka a few times, then nothing (as a worker whose link to the
    parent hangs), though it still exits 0 when told to stop."""
    _take_sigterm()
    for _ in range(3):
        conn.send((STATUS, True, "uploader ready: waiting", [(0.0, "Kafka")]))
        if conn.poll(REPORT_SECONDS) and conn.recv()[0] == STOP:
            return
    while conn.recv()[0] != STOP:
        pass


def killed_by_a_real_time_signal(_settings: Settings, _number: int, _conn: Connection) -> None:
    """Ends by SIGRTMIN+6, a signal with no name of its own in `signal.Signals`."""
    os.kill(os.getpid(), signal.SIGRTMIN + 6)


class _SaysWhenTheStopWasRequested:
    """An uploader role that ends, once stopped, with a failure naming when the stop was
    requested (`StopRequest.requested_at`), for the parent to report."""

    name = "uploader"

    def __init__(self) -> None:
        self.heartbeat = Heartbeat(self.name)

    def run(self, stop: threading.Event) -> None:
        stop.wait()
        raise StartupError(f"stop requested at {getattr(stop, 'requested_at', None)!r}")

    def readiness(self) -> Readiness:
        return Readiness(True, "says when the stop was requested")


def real_worker_saying_when_the_stop_was_requested(
    settings: Settings, number: int, conn: Connection
) -> None:
    """The real worker (`serve_worker`), its one role failing with when its stop was requested."""
    worker_child.build_roles = lambda *_args: [_SaysWhenTheStopWasRequested()]  # type: ignore[attr-defined]
    worker_child.serve_worker(settings, number, conn)
