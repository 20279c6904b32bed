"""The poller role of a process: one loop per pipeline (app project), each led where the
leadership group assigns it (`connector.poller.group`).

Each pipeline's poller runs in a thread of its own and leads only within the terms its lease
grants; this role's thread is the group's member. A pipeline that fails (its project unknown to
the API, a fatal error) stops the whole role, as one pipeline's failure stopped it before: the
process exits 1 naming it. A stop (SIGTERM) ends every term, lets each leader commit what it did
and release its cursor, then leaves the group, so that the other instances take the pipelines
over at once.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping
from typing import Protocol

from connector.lifecycle import STOP_CHECK_SECONDS, Heartbeat, Heartbeats, Readiness
from connector.poller.group import Lease

log = logging.getLogger(__name__)


class PipelinePoller(Protocol):
    """One pipeline's poller (`connector.poller.role.Poller`)."""

    heartbeat: Heartbeat

    def run(self, stop: threading.Event, lease: Lease | None = None) -> None: ...
    def readiness(self) -> Readiness: ...


class Membership(Protocol):
    """The instance's member of the leadership group (`LeadershipGroup`)."""

    @property
    def problem(self) -> str | None: ...

    def run(self, stop: threading.Event) -> None: ...


class PollerPipelines:
    """The `poller` role: the pipelines' pollers and the group that says which ones lead here."""

    name = "poller"

    def __init__(
        self,
        pollers: Mapping[str, PipelinePoller],
        leases: Mapping[str, Lease],
        group: Membership,
    ) -> None:
        self._pollers = dict(pollers)
        self._leases = dict(leases)
        self._group = group
        self.heartbeat = Heartbeats(tuple(poller.heartbeat for poller in self._pollers.values()))
        self._failures: list[BaseException] = []

    def run(self, stop: threading.Event) -> None:
        halt = threading.Event()
        # set by `stop`, or by a pipeline that failed: every pipeline and the group end
        threads = [
            threading.Thread(
                target=self._run_pipeline, args=(project, halt), name=f"poller-{project}"
            )
            for project, poller in self._pollers.items()
        ]
        relay = threading.Thread(target=_relay, args=(stop, halt), name="poller-stop", daemon=True)
        relay.start()
        for thread in threads:
            thread.start()
        try:
            self._group.run(halt)
        finally:
            halt.set()
            for thread in threads:
                thread.join()
            relay.join()
        if self._failures:
            raise self._failures[0]

    def _run_pipeline(self, project: str, halt: threading.Event) -> None:
        try:
            self._pollers[project].run(halt, self._leases[project])
        except BaseException as exc:  # the role's thread raises it, after the others ended
            self._failures.append(exc)
            halt.set()

    def readiness(self) -> Readiness:
        """Ready when every pipeline is (a standby is ready; a leader without progress while
        work is pending is not) and the group is not stuck; one pipeline reads as before."""
        states = {project: poller.readiness() for project, poller in self._pollers.items()}
        group = self._group.problem
        if len(states) == 1:
            (state,) = states.values()
            if group is None:
                return state
            return Readiness(False, f"{group}; {state.detail}")
        details = [f"{project}: {state.detail}" for project, state in states.items()]
        ready = group is None and all(state.ready for state in states.values())
        return Readiness(ready, "; ".join(([group] if group else []) + details))


def _relay(stop: threading.Event, halt: threading.Event) -> None:
    """Sets `halt` once `stop` is set; ends when `halt` is set first."""
    while not halt.is_set():
        if stop.wait(STOP_CHECK_SECONDS):
            halt.set()
            return
