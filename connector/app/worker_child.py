"""Inside a worker process (`CONNECTOR_WORKERS`, `connector.app.workers`): the uploader roles of
every pipeline, run as `upload` runs them, and a link to the parent that started it.

Signals. The worker starts with SIGINT and SIGTERM blocked (`WORKER_HELD_SIGNALS`, the
parent's doing): one sent while it still imports would kill it before it could drain. Once its
handlers are in place it takes SIGTERM (sent to it alone, or to every process of a cgroup as
systemd does: it drains, as `upload` does) and leaves SIGINT blocked: a terminal's Ctrl-C
signals the whole process group, and the parent, which gets it too, drains its workers.

The link is the worker's end of a pipe. A thread of the worker serves it: every
`STATUS_INTERVAL_SECONDS` it tells the parent whether the worker's roles are ready and when
their loops last went round; it answers a request for the worker's metrics with its registry's
families; the parent's `stop` starts the drain. When the parent is gone (even by `kill -9`) the
pipe reads as closed: the worker drains, commits what it did and exits, so it is never left
behind."""

from __future__ import annotations

import logging
import signal
import sys
import threading
import time
from multiprocessing.connection import Connection
from typing import Any

from connector.app.heap import settle_heap
from connector.app.roles import build_roles
from connector.app.runner import install_signal_handlers, run_roles
from connector.config import Settings
from connector.errors import ConnectorError
from connector.health import HealthChecks
from connector.kafka.availability import KafkaAvailability
from connector.lifecycle import StopRequest
from connector.logs import configure_logging, redact, register_settings_secrets
from connector.metrics import Metrics

log = logging.getLogger(__name__)

STATUS_INTERVAL_SECONDS = 1.0
WORKER_HELD_SIGNALS = frozenset({signal.SIGINT, signal.SIGTERM})
"""Blocked from the worker's start; SIGTERM is let through once it can drain."""

# The messages on the pipe: (kind, *payload).
STOP = "stop"  # parent → worker: (STOP, when the parent's stop was requested): drain and exit
COLLECT = "collect"  # parent → worker: (COLLECT, request number)
STATUS = "status"  # worker → parent: (STATUS, ready, message, [(loop age, waiting on)])
FAMILIES = "families"  # worker → parent: (FAMILIES, request number, [Metric])
FAILED = "failed"  # worker → parent: (FAILED, one line), before it exits 1


class ParentLink:
    """The worker's end of the pipe, served by a thread while the roles run (`with`)."""

    def __init__(self, conn: Connection, checks: HealthChecks, stop: StopRequest) -> None:
        self._conn = conn
        self._checks = checks
        self._stop = stop
        self._done = threading.Event()
        self._send_lock = threading.Lock()
        self._thread = threading.Thread(target=self._serve, name="parent-link", daemon=True)

    def __enter__(self) -> ParentLink:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._done.set()
        self._thread.join()

    def send(self, *message: Any) -> None:
        """Send `message` to the parent; a parent that is gone is the serving thread's concern."""
        with self._send_lock:
            try:
                self._conn.send(message)
            except (OSError, ValueError):
                log.debug("the parent did not take %s", message[0], exc_info=True)

    def _serve(self) -> None:
        next_status = time.monotonic()
        while not self._done.is_set():
            try:
                if time.monotonic() >= next_status:
                    self._send_status()
                    next_status = time.monotonic() + STATUS_INTERVAL_SECONDS
                # Short waits: the roles' end waits for this thread (`__exit__`) before the
                # worker can say how they ended, within the parent's shutdown margin.
                if self._conn.poll(max(0.0, min(next_status - time.monotonic(), 0.1))):
                    self._handle(self._conn.recv())
            except (EOFError, OSError):
                if not self._stop.is_set():
                    log.warning("the parent process is gone: draining and stopping")
                    self._stop.set()
                return
            except Exception:
                # A bug in a report must not end the link: it also watches for the parent's end.
                log.exception("reporting to the parent failed")
                next_status = time.monotonic() + STATUS_INTERVAL_SECONDS

    def _handle(self, message: tuple[Any, ...]) -> None:
        if message[0] == STOP:
            self._stop.set(at=message[1])
        elif message[0] == COLLECT:
            self._checks.refresh_heartbeat_gauges()
            self._checks.readiness()  # the role_ready gauges, as the parent's /metrics does
            self.send(FAMILIES, message[1], list(self._checks.metrics.registry.collect()))

    def _send_status(self) -> None:
        ready, readiness = self._checks.readiness()
        _, liveness = self._checks.liveness()
        loops = [(role["heartbeat_age_seconds"], role["waiting_on"])
                 for role in liveness["roles"].values()]  # fmt: skip
        self.send(STATUS, ready, readiness["message"], loops)


class _WorkerLines(logging.Filter):
    """Names the worker after the logger name of each line it writes: the processes share the
    parent's stderr. On the handler, so the loggers' own filters still see the real names."""

    def __init__(self, number: int) -> None:
        super().__init__()
        self._suffix = f" (worker {number})"

    def filter(self, record: logging.LogRecord) -> bool:
        if not record.name.endswith(self._suffix):
            record.name += self._suffix
        return True


def _name_log_lines(number: int) -> None:
    for handler in logging.getLogger().handlers:
        handler.addFilter(_WorkerLines(number))


def serve_worker(settings: Settings, number: int, conn: Connection) -> None:
    """A worker process's whole life (the target the parent spawns): exit 0 after a drain,
    1 after an error, which it tells the parent in one line (the parent's command prints it)."""
    register_settings_secrets(settings)
    runtime = settings.runtime
    configure_logging(runtime.log_format, runtime.log_level)
    _name_log_lines(number)
    settle_heap()
    stop = StopRequest()
    install_signal_handlers()  # `run_roles` keeps them, and acts on one that came before
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTERM})  # one sent meanwhile: now
    log.info("uploader worker %d starting", number)
    try:
        _run_uploaders(settings, conn, stop)
    except ConnectorError as exc:
        log.debug("uploader worker %d failed", number, exc_info=True)
        line = redact(str(exc))
    except Exception as exc:
        log.exception("uploader worker %d failed", number)  # a bug: show its traceback
        line = redact(f"{type(exc).__name__}: {exc}")
    else:
        log.info("uploader worker %d stopped cleanly", number)
        return
    # The parent's command prints it as its one line: a line of the worker's own would be two.
    try:
        conn.send((FAILED, line))
    except (OSError, ValueError):
        log.error("uploader worker %d failed: %s", number, line)  # no parent left to say it
    sys.exit(1)


def _run_uploaders(settings: Settings, conn: Connection, stop: StopRequest) -> None:
    """The uploader roles of every pipeline, until the parent or a signal sets `stop`."""
    runtime = settings.runtime
    metrics = Metrics(app_project=settings.pipelines[0].toloka.app_project_id)
    kafka = KafkaAvailability(
        settings.kafka.bootstrap_servers,
        metrics,
        refusal_timeout_seconds=runtime.kafka_refusal_timeout_seconds,
    )
    roles = build_roles(("uploader",), settings, metrics, kafka)
    checks = HealthChecks(metrics, roles, stale_after_seconds=runtime.liveness_timeout_seconds)
    with ParentLink(conn, checks, stop):
        run_roles(
            roles,
            metrics,
            metrics_host=runtime.metrics_host,
            metrics_port=0,  # the parent serves the endpoints for every process
            shutdown_timeout_seconds=runtime.shutdown_timeout_seconds,
            liveness_timeout_seconds=runtime.liveness_timeout_seconds,
            stop=stop,
            fatal=kafka.fatal_problem,
        )
