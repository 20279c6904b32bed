"""Run the simulator in a process of its own and drive its admin API: for the demo, the
benchmarks and the test fixtures.

`start_simulator_process()` launches `python -m connector.simulator --port 0` and returns once
the simulator printed its base URL (it never sleeps to wait). The handle's admin helpers speak to
`/_simulator` (see `connector.simulator.admin`).
"""

from __future__ import annotations

import os
import selectors
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx

from connector.devtools.processes import die_with_parent
from connector.errors import SimulatorStartError

READY_TIMEOUT_SECONDS = 30.0
STOP_TIMEOUT_SECONDS = 10.0


@dataclass
class SimulatorProcess:
    base_url: str
    api_key: str
    project_id: str
    process: subprocess.Popen[str]
    _admin: httpx.Client = field(repr=False)

    @property
    def root_url(self) -> str:
        """Scheme, host and port, without the API prefix."""
        return self.base_url.removesuffix("/api/app/v0")

    @property
    def items_url(self) -> str:
        return f"{self.base_url}/app-projects/{self.project_id}/items"

    def client(self, **kwargs: Any) -> httpx.Client:
        """A plain httpx client that sends the simulator's key."""
        headers = {"Authorization": f"ApiKey {self.api_key}", **kwargs.pop("headers", {})}
        return httpx.Client(headers=headers, timeout=kwargs.pop("timeout", 30.0), **kwargs)

    def admin(self, method: str, path: str, json: Any = None) -> Any:
        response = self._admin.request(method, f"{self.root_url}/_simulator{path}", json=json)
        response.raise_for_status()
        return response.json()

    def set_knobs(self, **knobs: Any) -> dict[str, Any]:
        result: dict[str, Any] = self.admin("PATCH", "/knobs", knobs)
        return result

    def stats(self) -> dict[str, Any]:
        result: dict[str, Any] = self.admin("GET", "/stats")
        return result

    def seed(self, count: int, status: str = "COMPLETED", per_timestamp: int = 1) -> Any:
        body = {"count": count, "status": status, "per_timestamp": per_timestamp}
        return self.admin("POST", "/seed", body)

    def reset(self, restore_knobs: bool = True) -> None:
        self.admin("POST", "/reset", {"restore_knobs": restore_knobs})

    def advance_clock(self, seconds: float) -> Any:
        return self.admin("POST", "/clock", {"advance": seconds})

    def creates(self, key: str) -> int:
        count: int = self.admin("GET", f"/creates?key={key}")["creates"]
        return count

    def duplicates(self) -> dict[str, int]:
        found: dict[str, int] = self.admin("GET", "/duplicates")["duplicates"]
        return found

    def stop(self) -> int:
        """SIGTERM, then wait (SIGKILL after a timeout); returns the exit code."""
        self._admin.close()
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(STOP_TIMEOUT_SECONDS)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self.process.stdout is not None:
            self.process.stdout.close()
        return self.process.returncode

    def __enter__(self) -> SimulatorProcess:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.stop()


def start_simulator_process(
    *,
    api_key: str,
    project_id: str,
    solution: str | None = None,
    seed: int | None = None,
    host: str = "127.0.0.1",
    also_serve: Sequence[str] = (),
    **knobs: Any,
) -> SimulatorProcess:
    """Start a simulator on a free port with start-up `knobs` and wait for its URL line; it
    serves `project_id` and the projects `also_serve` names."""
    command = [sys.executable, "-m", "connector.simulator", "--host", host, "--port", "0"]
    for project in also_serve:
        command += ["--also-serve", project]
    if solution is not None:
        command += ["--solution", solution]
    if seed is not None:
        command += ["--seed", str(seed)]
    for name, value in knobs.items():
        command += [f"--{name.replace('_', '-')}", str(value)]
    env = {**os.environ, "TOLOKA_API_KEY": api_key, "TOLOKA_APP_PROJECT_ID": project_id}
    process = subprocess.Popen(
        command,
        stdout=subprocess.PIPE,
        text=True,
        env=env,
        # Its own session: a terminal's Ctrl-C reaches only the parent, which stops it after
        # what depends on it (the demo's connector drains first); it still dies with the parent.
        start_new_session=True,
        preexec_fn=die_with_parent if sys.platform == "linux" else None,  # noqa: PLW1509
    )
    assert process.stdout is not None
    with selectors.DefaultSelector() as selector:
        selector.register(process.stdout, selectors.EVENT_READ)
        ready = selector.select(READY_TIMEOUT_SECONDS)
    line = process.stdout.readline().strip() if ready else ""
    if not line.startswith("http://"):
        process.kill()
        process.wait()
        raise SimulatorStartError(
            f"simulator did not start (exit code {process.returncode}): {line!r}"
        )
    return SimulatorProcess(line, api_key, project_id, process, httpx.Client(timeout=60.0))
