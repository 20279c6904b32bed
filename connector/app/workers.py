"""Uploader worker processes: `CONNECTOR_WORKERS=N` (`--workers N`) makes one `run` or `upload`
N uploader processes of one consumer group, behind one metrics endpoint.

The process model. The process the user started (the parent) runs its roles as before (the
uploader of every pipeline; with `run`, the poller too: one poller per pipeline, its leadership
unchanged) and starts N-1 worker processes. A worker runs the uploader roles of every pipeline
with the same settings (`connector.app.worker_child`), so each of the N uploaders joins the same
consumer group and Kafka spreads the input partitions over them. Workers are started with
multiprocessing's *spawn* (a fresh interpreter running this package, the parent's validated
settings handed over the pipe, never on a command line or in a log): a fork would copy
librdkafka's threads and locks mid-flight, and a subprocess of the command line would read the
settings again, perhaps from a file changed in between.

Each worker is a role of the parent (`WorkerProcess`): `/readyz` is ready only while every
worker is alive and says its roles are ready; `/healthz` sees a worker's loops through the
heartbeats it reports; `/metrics` merges every process's families (`worker_metrics`).

Its life. SIGTERM or SIGINT to the parent drains every process: the parent tells each worker to
stop, and each drains and commits what it did within its own shutdown budget: the parent's
CONNECTOR_SHUTDOWN_TIMEOUT_SECONDS less a margin (`worker_settings`), so that a worker whose
runner gives up on an overrunning role has exited, saying which, while the parent still waits
for it; a worker still running when the parent's budget ends is killed, named in the exit
line. A worker that ends on its own ends the run, as any role that ends does (the process is no
use half-running, and the orchestrator's restart of the whole process is the one restart
policy): after an error or a signal (`kill -9`) the run exits 1, naming the worker and why;
after a clean drain (SIGTERM sent to the worker alone) the run drains and exits 0. A worker
never outlives its parent: it watches its end of the pipe, and when the parent is gone (even by
`kill -9`) it drains and exits.
"""

from __future__ import annotations

import itertools
import logging
import multiprocessing
import multiprocessing.resource_tracker
import signal
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import replace
from multiprocessing.connection import Connection
from typing import Any

from prometheus_client.metrics_core import Metric
from pydantic import SecretStr

from connector.app.worker_child import (
    COLLECT,
    FAILED,
    FAMILIES,
    STATUS,
    STATUS_INTERVAL_SECONDS,
    STOP,
    WORKER_HELD_SIGNALS,
    serve_worker,
)
from connector.clock import SystemClock
from connector.config import (
    KafkaSettings,
    RuntimeSettings,
    Settings,
    SettingsGroup,
    UploaderSettings,
)
from connector.errors import RoleFailedError
from connector.lifecycle import Heartbeat, Readiness, stop_requested_at
from connector.stop_budget import worker_shutdown_seconds

log = logging.getLogger(__name__)

SPAWN = multiprocessing.get_context("spawn")
COLLECT_TIMEOUT_SECONDS = 5.0
"""How long a scrape waits for the workers' metrics (all asked at once); then it shows the last
ones each sent."""
SILENT_AFTER_SECONDS = 10 * STATUS_INTERVAL_SECONDS
"""A worker that has not reported for this long is not ready (it reports every second)."""
KILL_WAIT_SECONDS = 10.0

WorkerTarget = Callable[[Settings, int, Connection], None]
"""What a worker process runs: `serve_worker` (a module-level function: spawn imports it)."""


class WorkerProcess:
    """One worker process, run as a role of this process: `run` starts it, relays what it says
    and, once `stop` is set, tells it to drain and waits for it to exit."""

    remote = True
    """Its heartbeat and readiness gauges are written in the worker (`connector.health`)."""

    def __init__(
        self, settings: Settings, number: int, *, target: WorkerTarget = serve_worker
    ) -> None:
        self.number = number
        self.name = f"uploader worker {number}"
        self.heartbeat = Heartbeat(self.name)
        self._conn, child_conn = SPAWN.Pipe()
        self._process = SPAWN.Process(
            target=target,
            args=(worker_settings(settings, number), number, child_conn),
            name=f"toloka-connector-worker-{number}",
            daemon=True,  # at the parent's exit, multiprocessing ends one still running
        )
        self._child_conn = child_conn
        self._send_lock = threading.Lock()
        self._requests = itertools.count()
        self._asked: dict[int, Future[list[Metric]]] = {}  # metrics requests not answered yet
        self._asked_lock = threading.Lock()
        self._families: list[Metric] = []
        self._status: tuple[float, bool, str] | None = None  # (when, ready, message)
        self._failure: str | None = None
        self._exited = threading.Event()

    @property
    def pid(self) -> int | None:
        return self._process.pid

    def run(self, stop: threading.Event) -> None:
        # The worker starts with SIGINT and SIGTERM blocked (a signal mask survives fork and
        # exec), so one that comes while it still imports waits until it can drain
        # (`worker_child`). The resource tracker first: a spawn starts it on first use, and
        # starting it unblocks SIGINT and SIGTERM in this thread, before the worker is spawned.
        multiprocessing.resource_tracker.ensure_running()
        mask = signal.pthread_sigmask(signal.SIG_BLOCK, WORKER_HELD_SIGNALS)
        try:
            self._process.start()
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, mask)
        self._child_conn.close()  # only the worker holds its end: its exit closes the pipe
        log.info("%s started (pid %s)", self.name, self.pid)
        asked = False
        try:
            while True:
                if stop.is_set() and not asked:
                    # When the stop was requested: the worker's budget counts from there too
                    # (the monotonic clock is the machine's, shared by its processes).
                    asked = self._send(STOP, stop_requested_at(stop, SystemClock()))
                if self._conn.poll(0.1):
                    self._receive(self._conn.recv())
                self._age_silence()
        except (EOFError, OSError):
            pass  # the worker has exited (or is exiting): its end of the pipe closed
        finally:
            with self._asked_lock:  # no request waits for an answer that cannot come
                self._exited.set()
                for request in self._asked.values():
                    request.set_result(self._families)
                self._asked.clear()
        self._process.join()
        code = self._process.exitcode
        if code == 0:
            log.info("%s (pid %s) stopped", self.name, self.pid)
            return
        raise RoleFailedError(self._failure or _exit_reason(code))

    def readiness(self) -> Readiness:
        # The pipe closes when the worker exits, however it ends: `run` notices it at once. (Not
        # `is_alive()`: it reaps the process, racing `run`'s join for the exit code.)
        if self._exited.is_set():
            return Readiness(False, f"pid {self.pid} exited")
        status = self._status
        if status is None:
            return Readiness(False, "starting")
        when, ready, message = status
        silent = time.monotonic() - when
        if silent > SILENT_AFTER_SECONDS:
            return Readiness(False, f"pid {self.pid} has not reported for {silent:.0f}s")
        return Readiness(ready, f"pid {self.pid}: {message}")

    def ask_for_metrics(self) -> Future[list[Metric]]:
        """Ask the worker for its metrics now: the answer, or (by `last_metrics`) the last ones
        it sent when it does not answer."""
        with self._asked_lock:
            if self._exited.is_set() or self._status is None:  # it answers once it has started
                return _answered(self._families)
            number = next(self._requests)
            request = self._asked[number] = Future()
        if not self._send(COLLECT, number):
            self._answer(number, self._families)
        return request

    def last_metrics(self, request: Future[list[Metric]], deadline: float) -> list[Metric]:
        """The answer to `request` by `deadline` (monotonic), or the last metrics it sent."""
        try:
            return request.result(timeout=max(0.0, deadline - time.monotonic()))
        except TimeoutError:
            log.warning("%s sent no metrics within %gs", self.name, COLLECT_TIMEOUT_SECONDS)
            with self._asked_lock:  # a hung worker's requests must not pile up, one a scrape
                self._asked = {n: r for n, r in self._asked.items() if r is not request}
            return self._families

    def close(self) -> None:
        """Kill the worker if it is still running (after the shutdown timeout)."""
        if self._process.pid is not None and self._process.is_alive():
            log.error("%s (pid %s) did not finish draining in time: killed", self.name, self.pid)
            self._process.kill()
            self._process.join(KILL_WAIT_SECONDS)
        self._conn.close()

    def _send(self, *message: Any) -> bool:
        with self._send_lock:
            try:
                self._conn.send(message)
            except (OSError, ValueError):
                return False
            return True

    def _receive(self, message: tuple[Any, ...]) -> None:
        kind = message[0]
        if kind == STATUS:
            _, ready, text, loops = message
            self._status = (time.monotonic(), ready, text)
            self._beat(loops)
        elif kind == FAMILIES:
            self._families = message[2]
            self._answer(message[1], message[2])
        elif kind == FAILED:
            self._failure = message[1]

    def _answer(self, number: int, families: list[Metric]) -> None:
        with self._asked_lock:
            request = self._asked.pop(number, None)
        if request is not None:
            request.set_result(families)

    def _age_silence(self) -> None:
        """A worker that has stopped reporting cannot say its loops still wait on a dependency:
        they count as waiting no more, so its heartbeat ages from its last report and /healthz
        sees it stuck once that is older than the liveness timeout."""
        status = self._status
        if status is not None and time.monotonic() - status[0] > SILENT_AFTER_SECONDS:
            self.heartbeat.waiting_for = None

    def _beat(self, loops: list[tuple[float, str | None]]) -> None:
        """The heartbeat of the worker's loops as /healthz reads one: as old as its oldest loop
        that is not waiting on a dependency; waiting when all of them are."""
        ages = [age for age, waiting in loops if waiting is None]
        self.heartbeat.last = self.heartbeat.clock.monotonic() - max(ages, default=0.0)
        self.heartbeat.waiting_for = (
            None if ages else next((waiting for _, waiting in loops if waiting), None)
        )


def _answered(families: list[Metric]) -> Future[list[Metric]]:
    request: Future[list[Metric]] = Future()
    request.set_result(families)
    return request


def collect_metrics(workers: Sequence[WorkerProcess]) -> list[list[Metric]]:
    """Every worker's metrics for one scrape: all of them asked first, then the answers awaited
    up to one shared deadline (COLLECT_TIMEOUT_SECONDS in all, however many are slow)."""
    requests = [worker.ask_for_metrics() for worker in workers]
    deadline = time.monotonic() + COLLECT_TIMEOUT_SECONDS
    return [w.last_metrics(r, deadline) for w, r in zip(workers, requests, strict=True)]


def _exit_reason(code: int | None) -> str:
    if code is not None and code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:  # a real-time signal other than SIGRTMIN and SIGRTMAX has no name
            name = f"signal {-code}"
        return f"was killed by {name}"
    return f"exited with code {code}"


STATIC_MEMBER = "group.instance.id"


def worker_settings(settings: Settings, number: int) -> Settings:
    """The settings worker `number` runs with: the parent's, but
    - a static member id (KAFKA_GROUP_INSTANCE_ID) of its own, `<id>-w<number>`: the N
      uploaders are members of one group, and a member joining with the id of another fences
      that one out;
    - a shutdown budget shorter than the parent's by a margin (`worker_shutdown_seconds`), its
      uploaders' drain timeout shortened in proportion (so it keeps its share of the budget)."""
    kafka = settings.kafka
    instance = kafka.properties.get(STATIC_MEMBER)
    if instance is not None:
        own = SecretStr(f"{instance.get_secret_value()}-w{number}")
        kafka = kafka.model_copy(update={"properties": {**kafka.properties, STATIC_MEMBER: own}})
    runtime = settings.runtime
    parent_budget = runtime.shutdown_timeout_seconds
    budget = worker_shutdown_seconds(parent_budget)
    runtime = runtime.model_copy(update={"shutdown_timeout_seconds": budget})

    def group_of_worker(group: SettingsGroup) -> SettingsGroup:
        if isinstance(group, KafkaSettings):
            return kafka
        if isinstance(group, RuntimeSettings):
            return runtime
        if isinstance(group, UploaderSettings):
            drain = group.drain_timeout_seconds * budget / parent_budget
            return group.model_copy(update={"drain_timeout_seconds": drain})
        return group

    def of_worker(one: Settings) -> Settings:
        return replace(one, groups=tuple(map(group_of_worker, one.groups)))

    return replace(of_worker(settings), several=tuple(map(of_worker, settings.several)))


def worker_processes(settings: Settings, roles: tuple[str, ...]) -> list[WorkerProcess]:
    """The worker processes `CONNECTOR_WORKERS` asks for beside this process's `roles` (none
    unless they include the uploader)."""
    if "uploader" not in roles:
        return []
    count = settings.workers.workers
    return [WorkerProcess(settings, number) for number in range(2, count + 1)]
