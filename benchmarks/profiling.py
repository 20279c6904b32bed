"""Sampling profiles of a running connector process with py-spy, summarised as shares.

`py-spy record --format raw` writes collapsed stacks, one line per distinct stack with its
sample count. Two modes:
- `gil` (`--gil`): only the thread holding the GIL, so the shares are shares of the Python CPU
  time of the process (what a GIL-bound process spends its one core on);
- `wall` (`--idle`): every thread, idle or not, restricted to the stacks under one function
  (the poller's loop thread): where that thread's wall-clock time goes, waits included.
The summary has two views:
- self: the innermost frame with its line (for a call into C — librdkafka, orjson, the socket
  layer — the line that made the call);
- inclusive: every function on the stack, counted once per sample, for the connector's own code
  and the libraries it calls.
"""

from __future__ import annotations

import re
import shutil
import signal
import subprocess
import sys
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

_FRAME = re.compile(r"^(?P<function>.+?) \((?P<file>[^():]+)(?::(?P<line>\d+))?\)$")
STOP_TIMEOUT_SECONDS = 30.0


def py_spy() -> str | None:
    candidate = Path(sys.executable).with_name("py-spy")
    if candidate.exists():
        return str(candidate)
    return shutil.which("py-spy")


class Profiler:
    """`py-spy record` attached to `pid` until `stop()` (SIGINT makes py-spy write its file)."""

    def __init__(self, pid: int, output: Path, rate: int = 100, mode: str = "gil") -> None:
        self.rate = rate
        binary = py_spy()
        if binary is None:
            raise FileNotFoundError("py-spy is not installed (pip install py-spy)")
        self.output = output
        self._log = output.with_suffix(".log").open("wb")
        self._process = subprocess.Popen(
            [binary, "record", "--pid", str(pid), "--format", "raw", "--rate", str(rate),
             "--idle" if mode == "wall" else "--gil", "--output", str(output)],
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )  # fmt: skip

    def stop(self) -> Path | None:
        if self._process.poll() is None:
            self._process.send_signal(signal.SIGINT)
            try:
                self._process.wait(STOP_TIMEOUT_SECONDS)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
        self._log.close()
        return self.output if self.output.exists() else None


@dataclass(frozen=True)
class Frame:
    function: str
    file: str
    line: int | None

    @property
    def where(self) -> str:
        return f"{self.function} ({self.file}:{self.line})" if self.line else self.name

    @property
    def name(self) -> str:
        return f"{self.function} ({self.file})"


def parse_frame(text: str) -> Frame:
    match = _FRAME.match(text.strip())
    if match is None:
        return Frame(text.strip(), "?", None)
    line = match["line"]
    return Frame(match["function"], match["file"], int(line) if line else None)


@dataclass
class ProfileSummary:
    label: str
    samples: int
    unit: str = "samples of the thread holding the GIL"
    self_lines: list[tuple[str, float]] = field(default_factory=list)
    inclusive: list[tuple[str, float]] = field(default_factory=list)
    by_file: list[tuple[str, float]] = field(default_factory=list)
    """Self time summed per source file (what part of the stack burns the CPU)."""

    def as_json(self) -> dict[str, Any]:
        return {
            "label": self.label,
            "samples": self.samples,
            "unit": self.unit,
            "self": [{"frame": f, "share": round(s, 6)} for f, s in self.self_lines],
            "inclusive": [{"function": f, "share": round(s, 6)} for f, s in self.inclusive],
            "by_file": [{"file": f, "share": round(s, 6)} for f, s in self.by_file],
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ProfileSummary:
        return cls(
            data["label"],
            data["samples"],
            data["unit"],
            self_lines=[(entry["frame"], entry["share"]) for entry in data["self"]],
            inclusive=[(entry["function"], entry["share"]) for entry in data["inclusive"]],
            by_file=[(entry["file"], entry["share"]) for entry in data["by_file"]],
        )


_SKIPPED_INCLUSIVE = re.compile(r"^(Thread\.|<module>|_bootstrap|run \(threading|main \()")


def summarise(
    raws: Sequence[Path], label: str, top: int = 15, only_under: str | None = None
) -> ProfileSummary:
    """Top frames by self share, and top functions by inclusive share, of raw py-spy files
    (several runs of the same process kind add up); with `only_under`, only the stacks that
    pass through a function of that name (`PollerLoop.run`)."""
    self_counts: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    files: Counter[str] = Counter()
    total = 0
    lines = [line for raw in raws for line in raw.read_text(errors="replace").splitlines()]
    for line in lines:
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = [parse_frame(part) for part in stack.split(";") if part]
        if not frames or (only_under and all(f.function != only_under for f in frames)):
            continue
        total += count
        leaf = frames[-1]
        self_counts[leaf.where] += count
        files[leaf.file] += count
        for name in {frame.name for frame in frames}:
            if not _SKIPPED_INCLUSIVE.match(name):
                inclusive[name] += count
    if total == 0:
        return ProfileSummary(label, 0)

    def shares(counter: Counter[str]) -> list[tuple[str, float]]:
        # A frame on every sampled stack (the thread's entry point) says nothing: left out.
        ranked = [(name, n) for name, n in counter.most_common() if n < total]
        return [(name, n / total) for name, n in ranked[:top]]

    return ProfileSummary(
        label,
        total,
        self_lines=shares(self_counts),
        inclusive=shares(inclusive),
        by_file=shares(files),
    )
