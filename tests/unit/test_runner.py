"""The runner stops the roles on a fatal condition outside them, with that condition's line, and
on SIGTERM/SIGINT, whose handler never waits for a lock."""

from __future__ import annotations

import signal
import threading
import time

import pytest

import connector.app.runner as runner
from connector.app.runner import run_roles
from connector.errors import RoleFailedError
from connector.lifecycle import Heartbeat, Readiness, StopRequest
from connector.metrics import Metrics


class StuckRole:
    """A role whose call into Kafka ignores the stop (as a blocking librdkafka call does)."""

    name = "poller"

    def __init__(self) -> None:
        self.heartbeat = Heartbeat("poller")
        self.released = threading.Event()

    def run(self, stop: threading.Event) -> None:
        self.released.wait(30)

    def readiness(self) -> Readiness:
        return Readiness(False, "waiting")


class PoliteRole:
    name = "uploader"

    def __init__(self) -> None:
        self.heartbeat = Heartbeat("uploader")
        self.stopped = False

    def run(self, stop: threading.Event) -> None:
        stop.wait(30)
        self.stopped = True

    def readiness(self) -> Readiness:
        return Readiness(False, "waiting")


def test_a_fatal_condition_stops_every_role_and_is_the_one_line(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(runner, "FATAL_STOP_SECONDS", 0.2)
    asked: list[int] = []

    def fatal() -> str | None:
        asked.append(1)
        return "Kafka at b:9093 refused every connection for 30s" if len(asked) > 2 else None

    stuck, polite = StuckRole(), PoliteRole()
    try:
        with pytest.raises(RoleFailedError) as raised:
            run_roles(
                [polite, stuck],
                Metrics(),
                metrics_host="127.0.0.1",
                metrics_port=0,
                shutdown_timeout_seconds=60,
                stop=threading.Event(),
                fatal=fatal,
            )
    finally:
        stuck.released.set()
    # Not "did not finish draining": with Kafka never connected nothing was read to drain, and
    # the stuck call must not hold the exit for the shutdown timeout.
    assert str(raised.value) == "Kafka at b:9093 refused every connection for 30s"
    assert polite.stopped


def test_a_role_stuck_past_the_budget_is_named_with_where_it_waits(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """An operator sees which call held the drain (seen: a commit without a timeout), not only
    that it did not finish."""
    stuck, polite = StuckRole(), PoliteRole()
    stop = threading.Event()
    stop.set()  # as a SIGTERM does
    try:
        with pytest.raises(RoleFailedError) as raised:
            run_roles([polite, stuck], Metrics(), metrics_host="127.0.0.1", metrics_port=0,
                      shutdown_timeout_seconds=0.3, stop=stop)  # fmt: skip
    finally:
        stuck.released.set()
    assert str(raised.value) == "poller: did not finish draining in time"
    [logged] = [r.getMessage() for r in caplog.records if "did not finish" in r.getMessage()]
    assert "in run\n    self.released.wait(30)" in logged, logged


def test_a_signal_handler_returns_even_inside_the_code_it_interrupted() -> None:
    """Python runs a signal handler inside whatever the main thread was doing, the previous
    signal's handling included (seen, with py-spy: SIGTERMs from `timeout` and from a user 1 ms
    apart, the second handler run inside the first one's `stop.set()`, waiting for the stop
    event's lock that the first held: `run` hung for good). The handler must take no lock: here
    it runs while the stop event's lock is held, as there, and must return."""
    previous = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT)}
    stop = threading.Event()
    try:
        runner.install_signal_handlers()
        handler = signal.getsignal(signal.SIGTERM)
        assert callable(handler)

        def second_signal_inside_stop_set() -> None:
            with stop._cond:  # type: ignore[attr-defined]  # inside Event.set(), as there
                handler(signal.SIGTERM, None)

        inside = threading.Thread(target=second_signal_inside_stop_set, daemon=True)
        inside.start()
        inside.join(5)
        assert not inside.is_alive(), "the handler waited for a lock"
        assert runner.received_signal() is signal.SIGTERM
    finally:
        for signum, handler_before in previous.items():
            signal.signal(signum, handler_before)


def test_a_recorded_signal_drains_the_roles() -> None:
    """The handler records the signal; run_roles' loop sets the stop event and the roles drain."""
    previous = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT)}
    polite = PoliteRole()
    try:
        runner.install_signal_handlers()
        signal.raise_signal(signal.SIGTERM)  # recorded now, acted on by the loop below
        run_roles([polite], Metrics(), metrics_host="127.0.0.1", metrics_port=0,
                  shutdown_timeout_seconds=10)  # fmt: skip
    finally:
        for signum, handler_before in previous.items():
            signal.signal(signum, handler_before)
    assert polite.stopped


class RecordsItsStop:
    name = "uploader"

    def __init__(self) -> None:
        self.heartbeat = Heartbeat("uploader")
        self.requested_at: float | None = None

    def run(self, stop: threading.Event) -> None:
        stop.wait(30)
        self.requested_at = getattr(stop, "requested_at", None)

    def readiness(self) -> Readiness:
        return Readiness(False, "waiting")


def test_the_roles_stop_counts_from_the_signals_arrival() -> None:
    """The loop notices a signal up to half a second after it came; the roles' budget counts
    from its arrival (seen: the uploader's drain deadline counted from later, and the stop
    overran the budget)."""
    previous = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT)}
    role = RecordsItsStop()
    try:
        runner.install_signal_handlers()
        signal.raise_signal(signal.SIGTERM)
        arrived = runner.signal_received_at()
        run_roles([role], Metrics(), metrics_host="127.0.0.1", metrics_port=0,
                  shutdown_timeout_seconds=10)  # fmt: skip
    finally:
        for signum, handler_before in previous.items():
            signal.signal(signum, handler_before)
    assert arrived is not None
    assert role.requested_at == arrived


def test_the_runners_own_deadline_counts_from_the_request() -> None:
    """A stop requested 100 s ago leaves nothing of a 60 s budget: a role still running is
    reported at once, not 60 s after the runner saw the stop."""
    stuck = StuckRole()
    stop = StopRequest()
    stop.set(at=time.monotonic() - 100)
    try:
        with pytest.raises(RoleFailedError, match=r"^poller: did not finish draining in time$"):
            run_roles([stuck], Metrics(), metrics_host="127.0.0.1", metrics_port=0,
                      shutdown_timeout_seconds=60, stop=stop)  # fmt: skip
    finally:
        stuck.released.set()
