"""What the harness measures of processes: CPU seconds and resident memory (psutil). The connector
itself runs as users run it: `testkit.processes.ConnectorProcess`."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import psutil

from testkit.waiting import pause


def peak_rss_mib(process: psutil.Process) -> float:
    """The process's peak resident memory so far (Linux's VmHWM; 0 when it cannot be read)."""
    with contextlib.suppress(OSError, psutil.Error):
        for line in Path(f"/proc/{process.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return 0.0


def with_workers(labelled: Mapping[str, int]) -> dict[str, psutil.Process]:
    """`labelled` (label → pid of a connector process) and the uploader worker processes each
    started (`CONNECTOR_WORKERS`), as `<label>-worker-<n>`."""
    found: dict[str, psutil.Process] = {}
    for label, pid in labelled.items():
        parent = psutil.Process(pid)
        found[label] = parent
        workers = []
        for child in parent.children():
            with contextlib.suppress(psutil.Error):
                if "multiprocessing.spawn" in " ".join(child.cmdline()):
                    workers.append(child)
        for n, worker in enumerate(workers, start=2):
            found[f"{label}-worker-{n}"] = worker
    return found


def labelled_processes(
    extra: Mapping[str, int | psutil.Process] | None = None,
) -> dict[str, psutil.Process]:
    """The harness's child processes by role: `broker`, `simulator`, plus `extra` label → pid."""
    found: dict[str, psutil.Process] = {"harness": psutil.Process()}
    for child in psutil.Process().children(recursive=True):
        try:
            line = " ".join(child.cmdline())
        except psutil.Error:
            continue
        if (
            "kafka.Kafka" in line
            or "connector.devtools.brokers.mock_cluster" in line
            or "noida" in line
        ):
            found.setdefault("broker", child)
        elif "connector.simulator" in line:
            found.setdefault("simulator", child)
    for label, pid in (extra or {}).items():
        found[label] = pid if isinstance(pid, psutil.Process) else psutil.Process(pid)
    return found


MACHINE = "machine (every process)"


def machine_busy_seconds() -> float:
    """CPU seconds the whole machine spent busy (all cores, every process, ours or not)."""
    times = psutil.cpu_times()
    return float(sum(times) - times.idle - getattr(times, "iowait", 0.0))


def cpu_seconds(process: psutil.Process) -> float:
    try:
        times = process.cpu_times()
    except psutil.Error:
        return 0.0
    return float(times.user + times.system)


@dataclass
class CpuWindow:
    """CPU seconds each labelled process used between `start()` and `stop()`, and the whole
    machine's (`MACHINE`: other work on a shared machine shows as the difference)."""

    processes: Mapping[str, psutil.Process]
    _begin: dict[str, float] = field(default_factory=dict)
    _end: dict[str, float] = field(default_factory=dict)
    _started: float = 0.0
    seconds: float = 0.0

    def start(self) -> CpuWindow:
        self._begin = {label: cpu_seconds(p) for label, p in self.processes.items()}
        self._begin[MACHINE] = machine_busy_seconds()
        self._started = time.perf_counter()
        return self

    def stop(self) -> CpuWindow:
        self._end = {label: cpu_seconds(p) for label, p in self.processes.items()}
        self._end[MACHINE] = machine_busy_seconds()
        self.seconds = time.perf_counter() - self._started
        return self

    def cores(self) -> dict[str, float]:
        """Average cores used by each process over the window (1.0 = one core busy)."""
        if self.seconds <= 0:
            return {}
        return {
            label: round((self._end.get(label, 0.0) - self._begin[label]) / self.seconds, 3)
            for label in self._begin
        }


@dataclass
class RssSampler:
    """Samples the resident set size of `pids` every `interval` seconds on a thread."""

    pids: Sequence[int]
    interval: float = 0.5
    samples: list[tuple[float, int]] = field(default_factory=list)
    """(seconds since start, summed RSS in bytes)."""

    def __post_init__(self) -> None:
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rss-sampler", daemon=True)
        self._processes = [psutil.Process(pid) for pid in self.pids]
        self._started = time.perf_counter()

    def start(self) -> RssSampler:
        self._started = time.perf_counter()
        self._thread.start()
        return self

    def _run(self) -> None:
        while True:
            total = 0
            for process in self._processes:
                with contextlib.suppress(psutil.Error):
                    total += process.memory_info().rss
            self.samples.append((time.perf_counter() - self._started, total))
            if pause(self.interval, self._stop):
                return

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)

    @property
    def peak(self) -> int:
        return max((rss for _, rss in self.samples), default=0)
