"""`toloka-connector healthcheck`: ask a running connector whether it is alive (or ready).

Made for container health checks: one GET to `/healthz` (or `/readyz` with `--ready`), one line on
stdout, exit 0 when healthy and 1 otherwise. It uses only the standard library and reads only the
runtime settings, so it starts fast and works without the API key in its environment.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import urllib.parse
from pathlib import Path

from connector.commands.catalog import summary
from connector.config import EndpointSettings, load_group, merged_variables

EXIT_HEALTHY = 0
EXIT_UNHEALTHY = 1

# A server bound to every address is reached on loopback from inside its own container.
_WILDCARDS = {"": "127.0.0.1", "0.0.0.0": "127.0.0.1", "::": "::1"}  # noqa: S104 - not a bind


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "healthcheck",
        help=summary("healthcheck"),
        description=(
            "GET /healthz (liveness: every role's loop went round recently) or, with --ready, "
            "/readyz (every role is doing its job) of a running connector; print one line; "
            "exit 0 when healthy, 1 otherwise. Without --url the connector is looked for on "
            "CONNECTOR_METRICS_HOST (loopback when it binds every address) and "
            "CONNECTOR_METRICS_PORT."
        ),
    )
    parser.add_argument(
        "--url",
        metavar="URL",
        help="base URL of the connector's endpoints, e.g. http://connector:9400 (a path is kept)",
    )
    parser.add_argument("--ready", action="store_true", help="probe /readyz instead of /healthz")
    parser.add_argument(
        "--timeout",
        type=float,
        default=5.0,
        metavar="SECONDS",
        help="give up after this long (default: 5)",
    )
    parser.add_argument(
        "--config",
        type=Path,
        metavar="FILE",
        help="TOML settings file to read CONNECTOR_METRICS_HOST/PORT from",
    )
    parser.set_defaults(func=run, settings_groups=(EndpointSettings,))  # for the README


def target_url(args: argparse.Namespace, environ: dict[str, str] | None = None) -> str | None:
    """The URL to probe: `--url` (plus the endpoint unless it names one) or the settings'.

    None when the settings disable the endpoints (`CONNECTOR_METRICS_PORT=0`).
    """
    endpoint = "/readyz" if args.ready else "/healthz"
    if args.url:
        base = str(args.url).rstrip("/")
        return base if base.endswith(("/healthz", "/readyz")) else base + endpoint
    variables = merged_variables(args.config, os.environ if environ is None else environ)
    runtime = load_group(EndpointSettings, variables)
    if runtime.metrics_port == 0:
        return None
    host = _WILDCARDS.get(runtime.metrics_host, runtime.metrics_host)
    host = f"[{host}]" if ":" in host else host
    return f"http://{host}:{runtime.metrics_port}{endpoint}"


def probe(url: str, timeout: float) -> tuple[bool, str]:
    """(healthy, one line) for a GET of `url`."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in {"http", "https"} or not parts.hostname:
        return False, f"unhealthy: {url!r} is not an http(s) URL"
    connection_class = (
        http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
    )
    connection = connection_class(parts.hostname, parts.port, timeout=timeout)
    try:
        connection.request("GET", parts.path or "/", headers={"Accept": "application/json"})
        response = connection.getresponse()
        body = response.read(64 * 1024)
    except (OSError, http.client.HTTPException) as exc:
        return False, f"unreachable: {url}: {exc or type(exc).__name__}"
    finally:
        connection.close()
    healthy = response.status == 200
    return healthy, f"{'healthy' if healthy else 'unhealthy'} ({response.status}): {_summary(body)}"


def _summary(body: bytes) -> str:
    """The server's one-line `message`, or the start of whatever it sent."""
    try:
        message = json.loads(body).get("message")
    except (ValueError, AttributeError):
        message = None
    text = str(message) if message else body.decode("utf-8", "replace").strip()
    return " ".join(text.split())[:300]


def run(args: argparse.Namespace) -> int:
    url = target_url(args)
    if url is None:
        # Nothing listens: a deployment mistake, and saying so beats "connection refused".
        healthy, line = False, "unhealthy: CONNECTOR_METRICS_PORT is 0: no health endpoint"
    else:
        healthy, line = probe(url, args.timeout)
    print(line)
    return EXIT_HEALTHY if healthy else EXIT_UNHEALTHY
