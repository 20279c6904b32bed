"""`toloka-connector` run as users run it: the installed console script, in a process of its own.

`ConnectorProcess(argv, env, log_path)` starts `toloka-connector ARGV` with this process's
environment minus its own TOLOKA_*, CONNECTOR_* and KAFKA_* variables (none may leak into the
command), plus `env`; its output is appended to `log_path`, and a free metrics port is given
unless `env` names one (`get("/readyz")`, `ready()`). It runs in a session of its own (a
terminal's Ctrl-C reaches it only through `interrupt(group=True)`, as a terminal sends it) and
dies with the process that started it. `toloka_connector(*argv, env=...)` runs a one-shot command
to its end.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

import httpx

from connector.devtools.processes import die_with_parent, free_port
from testkit.waiting import wait_for

EXIT_TIMEOUT_SECONDS = 60.0
_OURS = ("TOLOKA_", "CONNECTOR_", "KAFKA_")
_LEADER_LINE = "poller of app project"


class ProcessExitedError(AssertionError):
    """The connector process ended while it was still needed; the message holds its log's end."""


def console_script() -> list[str]:
    """The console script next to this interpreter (`python -m connector` where it is missing)."""
    script = Path(sys.executable).with_name("toloka-connector")
    if script.exists():
        return [str(script)]
    found = shutil.which("toloka-connector")
    return [found] if found else [sys.executable, "-m", "connector"]


def environment(settings: Mapping[str, str]) -> dict[str, str]:
    """This process's environment without its own settings, unbuffered output, plus `settings`."""
    inherited = {k: v for k, v in os.environ.items() if not k.startswith(_OURS)}
    return {**inherited, "PYTHONUNBUFFERED": "1", **settings}


def toloka_connector(
    *argv: str, env: Mapping[str, str], timeout: float = 120.0
) -> subprocess.CompletedProcess[str]:
    """`toloka-connector ARGV` to its end; its exit code, stdout and stderr."""
    return subprocess.run(
        [*console_script(), *argv],
        env=environment(env),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


class ConnectorProcess:
    def __init__(self, argv: Sequence[str], env: Mapping[str, str], log_path: Path) -> None:
        self.argv = tuple(argv)
        self.log_path = log_path
        self.metrics_port = int(env.get("CONNECTOR_METRICS_PORT") or free_port())
        self.started = time.perf_counter()
        """When it was started (perf_counter: the benchmarks' clock)."""
        with log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [*console_script(), *self.argv],
                env=environment({"CONNECTOR_METRICS_PORT": str(self.metrics_port), **env}),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group, as a terminal gives a command
                preexec_fn=die_with_parent if sys.platform == "linux" else None,  # noqa: PLW1509
            )

    @property
    def pid(self) -> int:
        return self.process.pid

    def __repr__(self) -> str:
        return f"toloka-connector {' '.join(self.argv)} (pid {self.pid})"

    # --- what it says ---------------------------------------------------------------------
    def output(self) -> str:
        return self.log_path.read_text(errors="replace")

    def lines(self, text: str) -> Iterator[str]:
        return (line for line in self.output().splitlines() if text in line)

    def log_tail(self, lines: int = 20) -> str:
        return "\n".join(self.output().splitlines()[-lines:])

    def wait_for_output(self, text: str, timeout: float = 60.0) -> None:
        wait_for(
            lambda: text in self.output() or self.process.poll() is not None,
            f"{text!r} in the output of {' '.join(self.argv)}",
            timeout,
        )
        assert text in self.output(), f"exited {self.process.returncode}:\n{self.output()[-3000:]}"

    def is_leader(self) -> bool:
        standings = list(self.lines(_LEADER_LINE))
        return bool(standings) and standings[-1].endswith(": leader")

    def is_standby(self) -> bool:
        standings = list(self.lines(_LEADER_LINE))
        return bool(standings) and standings[-1].endswith(": standby")

    def get(self, path: str) -> httpx.Response | None:
        try:
            return httpx.get(f"http://127.0.0.1:{self.metrics_port}{path}", timeout=5.0)
        except httpx.HTTPError:
            return None

    def ready(self) -> bool:
        response = self.get("/readyz")
        return response is not None and response.status_code == 200

    # --- its life -------------------------------------------------------------------------
    def alive(self) -> bool:
        return self.process.poll() is None

    def check_alive(self) -> None:
        """ProcessExitedError, with the end of the log, when the process has exited."""
        code = self.process.poll()
        if code is not None:
            raise ProcessExitedError(f"{self!r} exited with {code}; end of {self.log_path}:\n"
                                f"{self.log_tail()}")  # fmt: skip

    def signal(self, signum: signal.Signals) -> None:
        self.process.send_signal(signum)

    def interrupt(self, *, group: bool = False) -> None:
        """SIGINT, as Ctrl-C sends it (`group`: to the whole process group, as a terminal)."""
        if group:
            os.killpg(self.process.pid, signal.SIGINT)
        else:
            self.process.send_signal(signal.SIGINT)

    def exit_code(self, timeout: float = EXIT_TIMEOUT_SECONDS) -> int:
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(
                f"{' '.join(self.argv)} did not exit within {timeout:.0f}s:\n"
                f"{self.output()[-3000:]}"
            ) from None

    def kill(self) -> None:
        """SIGKILL, as a crash would."""
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(30)

    def terminate(self, timeout: float = 90.0) -> int:
        """SIGTERM (a clean drain), SIGKILL after `timeout`; the exit code."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill()
        return self.process.returncode
