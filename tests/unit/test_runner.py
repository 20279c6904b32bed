"""The runner stops the roles on a fatal condition outside them, with that condition's line."""

from __future__ import annotations

import threading

import pytest

import connector.app.runner as runner
from connector.app.runner import run_roles
from connector.errors import RoleFailedError
from connector.lifecycle import Heartbeat, Readiness
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
