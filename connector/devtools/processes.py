"""Child processes of the development tooling: free ports, spawning, waiting on conditions,
stopping (the brokers and the simulator; the test-support package waits with `poll_until` too)."""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import random
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import IO, TypeVar

from connector.errors import BrokerError

LOOPBACK = "127.0.0.1"
T = TypeVar("T")
_PR_SET_PDEATHSIG = 1

logger = logging.getLogger(__name__)


def free_port() -> int:
    """A loopback port nobody listens on right now, chosen outside the kernel's ephemeral range.

    A port the kernel picks is one it also hands to outgoing connections: one of those can take
    it between this check and the bind of the process it is meant for (seen: a metrics port
    "already in use" while tests ran beside each other), or while a broker restarts on it. The
    choice is random (the system's, not `random`'s: the test runner seeds that one alike in
    every worker), so that processes picking at once rarely pick alike. Where the ephemeral
    range leaves no room on either side, the kernel picks, as before. IPv4 loopback only."""
    choices = fixed_port_choices()
    for _ in range(100):
        port = _CHOOSER.choice(choices) if choices else 0
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            try:
                sock.bind((LOOPBACK, port))
            except OSError:
                continue
            chosen: int = sock.getsockname()[1]
            return chosen
    raise BrokerError("no free loopback port outside the ephemeral range after 100 tries")


FIXED_PORTS_FROM = 10_000
"""The lowest port `free_port` chooses (below it: well-known services' registered ports)."""
ROOM_PORTS = 1_000
"""The fewest ports a side of the ephemeral range must hold to be chosen from."""
_CHOOSER = random.SystemRandom()


def fixed_port_choices() -> range | None:
    """The ports `free_port` chooses from: below the ephemeral range, else above it; None when
    neither side has room."""
    low, high = _ephemeral_range()
    if low - FIXED_PORTS_FROM >= ROOM_PORTS:
        return range(FIXED_PORTS_FROM, low)
    if 65_535 - high >= ROOM_PORTS:
        return range(high + 1, 65_536)
    return None


def _ephemeral_range() -> tuple[int, int]:
    """The kernel's range of ports for outgoing connections (Linux's default when unknown)."""
    try:
        low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[:2]
        return int(low), int(high)
    except (OSError, ValueError):
        return 32768, 60999


def port_accepts(port: int, host: str = LOOPBACK) -> bool:
    with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=0.5):
        return True
    return False


def poll_until(
    probe: Callable[[], T | None],
    *,
    timeout: float,
    interval: float = 0.05,
    guard: Callable[[], None] | None = None,
) -> T | None:
    """Call `probe` until it returns something truthy and return that; None when `timeout`
    seconds passed first. `guard` runs before each probe: it raises when waiting is pointless
    (a process died)."""
    deadline = time.monotonic() + timeout
    while True:
        if guard is not None:
            guard()
        result = probe()
        if result:
            return result
        left = deadline - time.monotonic()
        if left <= 0:
            return None
        # Not synchronisation by sleeping: a short back-off between probes of the condition.
        time.sleep(min(interval, left))


def wait_until(
    condition: Callable[[], bool], timeout: float, what: str, poll: float = 0.05
) -> None:
    """Poll `condition` until it holds; BrokerError naming `what` after `timeout` seconds."""
    if not poll_until(condition, timeout=timeout, interval=poll):
        raise BrokerError(f"timed out after {timeout:.0f}s waiting for {what}")


def die_with_parent() -> None:
    # A broker orphaned by a SIGKILLed test run would hold its ports and RAM forever; the kernel
    # kills it when the parent goes (Linux only; elsewhere close() is the only cleanup). The
    # kernel tracks the spawning *thread*: start brokers from a thread that outlives them.
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


def spawn(
    argv: Sequence[str],
    log_path: Path,
    *,
    stdin: int | IO[bytes] | None = subprocess.DEVNULL,
    stdout: int | None = None,
    env: dict[str, str] | None = None,
) -> subprocess.Popen[bytes]:
    """Start a server in its own session (a terminal's Ctrl-C reaches only our handler), its
    output appended to `log_path`, not to our stdout."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("ab") as log:
        return subprocess.Popen(
            list(argv),
            stdin=stdin,
            stdout=log if stdout is None else stdout,
            stderr=log,
            env=env,
            start_new_session=True,
            preexec_fn=die_with_parent if sys.platform == "linux" else None,  # noqa: PLW1509
        )


def terminate(proc: subprocess.Popen[bytes], timeout: float) -> None:
    """SIGTERM (after SIGCONT, in case it is frozen), then SIGKILL if it does not exit in time."""
    if proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.kill(proc.pid, signal.SIGCONT)
        proc.terminate()
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        logger.warning("pid %d ignored SIGTERM for %.0fs; killing it", proc.pid, timeout)
        proc.kill()
        proc.wait()


def log_tail(path: Path, lines: int = 20) -> str:
    """The end of a server log, for error messages when the server fails to start."""
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return "(no log)"
    return "\n".join(text.splitlines()[-lines:])
