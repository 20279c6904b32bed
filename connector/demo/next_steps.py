"""The commands that look at a running demo, printed ready to paste: the real bootstrap address,
the settings each needs, and this very `toloka-connector` (also when it is not on PATH)."""

from __future__ import annotations

import shlex
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

from connector.config import Settings
from connector.devtools.brokers.base import Broker

SCRIPT_NAME = "toloka-connector"


def invocation() -> str:
    """How a shell runs this connector: `toloka-connector` when PATH finds this one, else the
    script's path (`.venv/bin/toloka-connector` after `make demo`), else `python -m connector`."""
    script = Path(sys.argv[0])
    if script.name != SCRIPT_NAME:
        return f"{shlex.quote(sys.executable)} -m connector"
    on_path = shutil.which(SCRIPT_NAME)
    if on_path is not None and Path(on_path).resolve() == script.resolve():
        return SCRIPT_NAME
    return shlex.quote(str(script.absolute()))


@dataclass(frozen=True)
class DemoCommands:
    settings: Settings
    broker: Broker

    def _environ(self, *names: str) -> str:
        values = {
            "KAFKA_BOOTSTRAP_SERVERS": self.broker.bootstrap_servers,
            "TOLOKA_APP_PROJECT_ID": self.settings.toloka.app_project_id,
        }
        return " ".join(f"{name}={shlex.quote(values[name])}" for name in names)

    def lines(self) -> list[tuple[str, str]]:
        program = invocation()
        kafka = self._environ("KAFKA_BOOTSTRAP_SERVERS")
        project = self._environ("KAFKA_BOOTSTRAP_SERVERS", "TOLOKA_APP_PROJECT_ID")
        port = self.settings.runtime.metrics_port
        return [
            ("results", f"{kafka} {program} tail {self.settings.poller.output_topic} --follow"),
            ("dead letters", f"{kafka} {program} tail {self.settings.uploader.dlq_topic}"),
            ("status", f"{project} {program} status"),
            ("readiness", f"{program} healthcheck --ready --url http://127.0.0.1:{port}"),
            ("more items", f"{kafka} {program} produce-samples --count 100"),
        ]

    def as_text(self) -> str:
        return "\n".join(
            ["while it runs, from another terminal:"]
            + [f"  {what:<13} {command}" for what, command in self.lines()]
        )
