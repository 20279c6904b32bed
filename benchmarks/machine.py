"""What the figures were measured on: cores, memory, CPU, load, Python, library versions."""

from __future__ import annotations

import os
import platform
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

import confluent_kafka
import psutil

from benchmarks.profiling import py_spy


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _version(distribution: str) -> str:
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return "not installed"


def _command_output(command: list[str]) -> str:
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=20, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return "unavailable"
    text = (done.stdout or done.stderr).strip()
    return text.splitlines()[0] if text else "unavailable"


def git_revision(root: Path) -> str:
    revision = _command_output(["git", "-C", str(root), "rev-parse", "--short", "HEAD"])
    status = _command_output(
        ["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"]
    )
    dirty = status not in ("", "unavailable")
    return f"{revision}{' + uncommitted changes' if dirty else ''}"


def describe(root: Path) -> dict[str, Any]:
    memory = psutil.virtual_memory()
    spy = py_spy()
    return {
        "cores": os.cpu_count(),
        "cpu": _cpu_model(),
        "memory_gib": round(memory.total / 1024**3, 1),
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
        "os": f"{platform.system()} {platform.release()}",
        "python": f"{platform.python_implementation()} {sys.version.split()[0]}",
        "libraries": {
            "confluent-kafka": _version("confluent-kafka"),
            "librdkafka": confluent_kafka.libversion()[0],
            "httpx": _version("httpx"),
            "orjson": _version("orjson"),
            "pydantic": _version("pydantic"),
            "pydantic-core": _version("pydantic-core"),
            "psutil": _version("psutil"),
            "py-spy": (
                _command_output([spy, "--version"]).removeprefix("py-spy ")
                if spy
                else "not installed"
            ),
        },
        "java": _command_output(["java", "-version"]),
        "git": git_revision(root),
    }
