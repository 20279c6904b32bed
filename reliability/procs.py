"""`toloka-connector run` processes for the reliability runs: start, SIGKILL, restart, drain."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import httpx

from connector.devtools.processes import free_port


def wait_for(condition: Callable[[], Any], timeout: float, what: str, poll: float = 0.05) -> None:
    """Poll `condition` until it holds; AssertionError naming `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not met within {timeout:.0f} s")
        time.sleep(poll)  # a back-off between probes of the condition, not a synchronisation


class ConnectorProcess:
    """`python -m connector <command>` with its own metrics port; output goes to `log_path`."""

    def __init__(self, environ: Mapping[str, str], log_path: Path, command: str = "run") -> None:
        self.log_path = log_path
        self.metrics_port = free_port()
        self.started_at = time.monotonic()
        env = {
            **os.environ,
            **environ,
            "CONNECTOR_METRICS_PORT": str(self.metrics_port),
            "PYTHONUNBUFFERED": "1",
        }
        with log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "connector", command],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )

    @property
    def pid(self) -> int:
        return self.process.pid

    def alive(self) -> bool:
        return self.process.poll() is None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def is_leader(self) -> bool:
        roles = [line for line in self.log().splitlines() if "poller of app project" in line]
        return bool(roles) and roles[-1].endswith(": leader")

    def is_standby(self) -> bool:
        roles = [line for line in self.log().splitlines() if "poller of app project" in line]
        return bool(roles) and roles[-1].endswith(": standby")

    def get(self, path: str) -> httpx.Response | None:
        try:
            return httpx.get(f"http://127.0.0.1:{self.metrics_port}{path}", timeout=2.0)
        except httpx.HTTPError:
            return None

    def ready(self) -> bool:
        response = self.get("/readyz")
        return response is not None and response.status_code == 200

    def kill(self) -> None:
        self.process.kill()
        self.process.wait(30)

    def terminate(self, timeout: float = 90.0) -> int:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.returncode
