"""`/metrics`, `/healthz` and `/readyz` on a small standard-library HTTP server.

- `/metrics`: the Prometheus exposition of `metrics.registry` (OpenMetrics when the scraper asks),
  or of `exposed`: with worker processes, every process's metrics merged
  (`connector.app.worker_metrics`).
- `/healthz`: liveness. 200 while every role's loop went round within `stale_after_seconds` or
  is waiting in a call to a dependency (which has its own timeout); 503 naming the stuck loop
  otherwise (a stuck loop is what a restart can fix; a dependency's outage is not).
- `/readyz`: readiness. 200 when every role says it is ready, 503 otherwise; the JSON body carries
  each role's detail (the poller says whether it leads or stands by).

Bodies of `/healthz` and `/readyz` are JSON objects with a one-line `message`, which is what
`toloka-connector healthcheck` prints.

The server runs in a daemon thread and answers each connection in a thread of its own, so a slow
scraper cannot hold up a health probe. It speaks keep-alive HTTP/1.1 and sets `TCP_NODELAY`:
`http.server` writes headers and body separately, and without it a response on a kept-alive
connection can wait ~40 ms for the peer's delayed ACK.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import socket
import threading
from collections.abc import Sequence
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import orjson
from prometheus_client import CollectorRegistry
from prometheus_client.exposition import choose_encoder

from connector.clock import Clock, SystemClock
from connector.errors import ConfigError
from connector.lifecycle import Role
from connector.metrics import Metrics
from connector.metrics.labels import ROLES

log = logging.getLogger(__name__)

DEFAULT_STALE_AFTER_SECONDS = 60.0


def role_labels(role: Role) -> tuple[str, str]:
    """(role, app_project) of a role's heartbeat and readiness gauges: a pipeline's role
    (`connector.app.readiness.CheckedRole`) names its kind and project; any other role is
    named by its name alone."""
    return getattr(role, "kind", role.name), getattr(role, "app_project", "")


def gauged(roles: Sequence[Role]) -> list[Role]:
    """The roles whose heartbeat and readiness gauges this process writes: not those that run
    in another process (`remote`: a worker of CONNECTOR_WORKERS writes its own, merged on
    /metrics); their readiness and liveness count here all the same."""
    return [role for role in roles if not getattr(role, "remote", False)]


class HealthChecks:
    """What the endpoints report, apart from HTTP: easy to test and to reuse."""

    def __init__(
        self,
        metrics: Metrics,
        roles: Sequence[Role],
        *,
        stale_after_seconds: float = DEFAULT_STALE_AFTER_SECONDS,
        clock: Clock | None = None,
        exposed: CollectorRegistry | None = None,
    ) -> None:
        self.metrics = metrics
        self.exposed = exposed if exposed is not None else metrics.registry
        """What /metrics shows."""
        self.roles = tuple(roles)
        self.stale_after_seconds = stale_after_seconds
        self.clock = clock if clock is not None else SystemClock()
        # A role this process does not run has no readiness and no loop: a 0 would fire the
        # NotReady alert, and would be the min of the heartbeat that /metrics merges over the
        # processes of a run (`GAUGE_ACROSS_PROCESSES`), hiding a stuck loop from LoopStuck.
        running = {role_labels(role) for role in gauged(self.roles)}
        for project in {metrics.app_project} | {project for _, project in running}:
            for name in ROLES:
                if (name, project) not in running:
                    for gauge in (metrics.role_ready, metrics.loop_heartbeat):
                        with contextlib.suppress(KeyError):
                            gauge.remove(name, project)

    def liveness(self) -> tuple[bool, dict[str, Any]]:
        """Stuck: a loop that has not gone round for `stale_after_seconds` and is not waiting in
        a call to a dependency (which ends by its own timeout; an outage is readiness' concern,
        and a restart would not end it)."""
        ages = {role.name: role.heartbeat.age() for role in self.roles}
        waiting = {role.name: role.heartbeat.waiting_for for role in self.roles}
        stuck = [
            name
            for name, age in ages.items()
            if age > self.stale_after_seconds and waiting[name] is None
        ]
        if stuck:
            message = "; ".join(
                f"{name} loop stuck for {ages[name]:.1f}s (limit {self.stale_after_seconds:g}s)"
                for name in stuck
            )
        else:
            message = "all loops alive: " + (
                ", ".join(
                    f"{name} {ages[name]:.1f}s ago"
                    if waiting[name] is None
                    else f"{name} waiting on {waiting[name]} for {ages[name]:.1f}s"
                    for name in ages
                )
                or "no roles"
            )
        body = {
            "status": "stuck" if stuck else "ok",
            "message": message,
            "stale_after_seconds": self.stale_after_seconds,
            "roles": {
                name: {
                    "heartbeat_age_seconds": round(age, 3),
                    "stuck": name in stuck,
                    "waiting_on": waiting[name],
                }
                for name, age in ages.items()
            },
        }
        return not stuck, body

    def readiness(self) -> tuple[bool, dict[str, Any]]:
        roles: dict[str, dict[str, Any]] = {}
        for role in self.roles:
            try:
                state = role.readiness()
                roles[role.name] = {"ready": state.ready, "detail": state.detail}
            except Exception as exc:
                # A readiness probe that throws must say "not ready", not take the server down.
                log.warning("readiness of %s failed", role.name, exc_info=True)
                roles[role.name] = {"ready": False, "detail": f"readiness check failed: {exc}"}
        for role in gauged(self.roles):
            ready = roles[role.name]["ready"]
            self.metrics.role_ready.labels(*role_labels(role)).set(1 if ready else 0)
        ready = all(entry["ready"] for entry in roles.values())
        message = "; ".join(
            f"{name} {'ready' if entry['ready'] else 'NOT ready'}: {entry['detail']}"
            for name, entry in roles.items()
        )
        return ready, {"ready": ready, "message": message or "no roles", "roles": roles}

    def refresh_heartbeat_gauges(self) -> None:
        """Turn each monotonic heartbeat into the wall-clock gauge alerts compare with time();
        a loop waiting in a call to a dependency counts as alive, as for /healthz, so the
        LoopStuck alert sees what /healthz sees."""
        now = self.clock.time()
        for role in gauged(self.roles):
            heartbeat = role.heartbeat
            age = 0.0 if heartbeat.waiting_for is not None else heartbeat.age()
            self.metrics.loop_heartbeat.labels(*role_labels(role)).set(now - age)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # StreamRequestHandler sets TCP_NODELAY on each connection
    server: _Server

    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0]
        checks = self.server.checks
        if path == "/metrics":
            checks.refresh_heartbeat_gauges()
            checks.readiness()  # refreshes the role_ready gauges the NotReady alert reads
            encoder, content_type = choose_encoder(self.headers.get("Accept", ""))
            self._send(HTTPStatus.OK, encoder(checks.exposed), content_type)
        elif path == "/healthz":
            self._send_json(*checks.liveness())
        elif path == "/readyz":
            self._send_json(*checks.readiness())
        elif path == "/":
            self._send(HTTPStatus.OK, b"/metrics /healthz /readyz\n", "text/plain; charset=utf-8")
        else:
            self._send(HTTPStatus.NOT_FOUND, b"not found\n", "text/plain; charset=utf-8")

    def _send_json(self, ok: bool, body: dict[str, Any]) -> None:
        status = HTTPStatus.OK if ok else HTTPStatus.SERVICE_UNAVAILABLE
        self._send(status, orjson.dumps(body) + b"\n", "application/json")

    def _send(self, status: HTTPStatus, body: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))  # keep-alive needs the length
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        # Scrapes and probes arrive every few seconds: worth a debug line, not stderr noise.
        log.debug("%s " + format, self.address_string(), *args)


class _Server(ThreadingHTTPServer):
    daemon_threads = True  # an open keep-alive connection must not hold up process exit

    def __init__(self, address: tuple[str, int], checks: HealthChecks) -> None:
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        self.checks = checks
        super().__init__(address, _Handler)


class HealthServer:
    """A running endpoint server; `close()` stops it and releases the port."""

    def __init__(self, server: _Server) -> None:
        self._server = server
        # serve_forever notices shutdown() once per poll interval: 0.1 s keeps close() quick.
        self._thread = threading.Thread(
            target=server.serve_forever,
            kwargs={"poll_interval": 0.1},
            name="health-server",
            daemon=True,
        )
        self._thread.start()

    @property
    def host(self) -> str:
        return str(self._server.server_address[0])

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()

    def __enter__(self) -> HealthServer:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()


def start_health_server(
    host: str,
    port: int,
    metrics: Metrics,
    roles: Sequence[Role],
    *,
    stale_after_seconds: float = DEFAULT_STALE_AFTER_SECONDS,
    clock: Clock | None = None,
    exposed: CollectorRegistry | None = None,
) -> HealthServer:
    """Serve the endpoints on `host:port` (port 0 picks a free one: see `.port`).

    A port that cannot be bound is a configuration error naming the setting, so the process
    exits 2 with one line instead of a traceback.
    """
    checks = HealthChecks(
        metrics, roles, stale_after_seconds=stale_after_seconds, clock=clock, exposed=exposed
    )
    try:
        server = _Server((host, port), checks)
    except OSError as exc:
        # An unknown name or an address this machine lacks is the host's fault; the rest
        # (in use, privileged) the port's.
        bad_host = isinstance(exc, socket.gaierror) or exc.errno == errno.EADDRNOTAVAIL
        setting = "CONNECTOR_METRICS_HOST" if bad_host else "CONNECTOR_METRICS_PORT"
        reason = exc.strerror or str(exc)
        raise ConfigError([f"{setting}: cannot listen on {host}:{port}: {reason}"]) from None
    health = HealthServer(server)
    log.info("serving /metrics, /healthz and /readyz on %s", health.url)
    return health
