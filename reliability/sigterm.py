"""SIGTERM at random moments: `toloka-connector poll` must drain and exit 0 every time.

Each try starts a poller with its metrics server on 0.0.0.0, probes the metrics port (from
loopback and from the machine's other address, as a scraper would), sends SIGTERM a random
moment later and waits for the exit."""

from __future__ import annotations

import random
import socket
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from connector.simulator.process import start_simulator_process
from testkit.brokers import ControllableBroker
from testkit.processes import ConnectorProcess
from testkit.waiting import wait_for

EXIT_TIMEOUT_SECONDS = 30.0


@dataclass
class SigtermOutcome:
    tries: int
    exit_codes: list[int | None] = field(default_factory=list)
    hung_logs: list[str] = field(default_factory=list)

    def summary(self) -> str:
        hung = sum(code is None for code in self.exit_codes)
        clean = sum(code == 0 for code in self.exit_codes)
        return (
            f"SIGTERM at random moments after start: {clean} of {self.tries} exited 0, "
            f"{hung} did not exit within {EXIT_TIMEOUT_SECONDS:.0f} s"
        )

    def failures(self) -> list[str]:
        if all(code == 0 for code in self.exit_codes):
            return []
        return [f"{self.summary()}; logs: {self.hung_logs[:3]}"]


def _probe(host: str, port: int) -> None:
    try:
        with socket.create_connection((host, port), timeout=1.0):
            pass
    except OSError:
        pass


def _other_address() -> str:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(("192.0.2.1", 9))  # nothing is sent: this picks a route
            return str(probe.getsockname()[0])
        except OSError:
            return "127.0.0.1"


def run_sigterm(
    broker: ControllableBroker, workdir: Path, *, tries: int, seed: int
) -> SigtermOutcome:
    workdir.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)  # noqa: S311 - reproducible moments
    sim = start_simulator_process(api_key=f"sigterm-{seed}", project_id="sigterm")
    outcome = SigtermOutcome(tries)
    other = _other_address()
    try:
        for attempt in range(tries):
            tag = uuid.uuid4().hex[:8]
            environ = {
                "TOLOKA_API_KEY": sim.api_key,
                "TOLOKA_BASE_URL": sim.base_url,
                "TOLOKA_APP_PROJECT_ID": sim.project_id,
                "KAFKA_BOOTSTRAP_SERVERS": broker.bootstrap_servers,
                "CONNECTOR_OUTPUT_TOPIC": f"sigterm-out-{tag}",
                "CONNECTOR_STATE_TOPIC": f"sigterm-state-{tag}",
                "CONNECTOR_LEADER_TIMEOUT_SECONDS": "2",
                "CONNECTOR_METRICS_HOST": "0.0.0.0",  # noqa: S104 - probed from outside too
            }
            process = ConnectorProcess(["poll"], environ, workdir / f"poll-{attempt}.log")

            def serving(p: ConnectorProcess = process) -> bool:
                try:
                    with socket.create_connection(("127.0.0.1", p.metrics_port), timeout=1.0):
                        return True
                except OSError:
                    return False

            wait_for(serving, "the metrics port", 60)
            _probe(other, process.metrics_port)
            # A random moment drawn from the seeded RNG; half the tries right after start.
            time.sleep(rng.choice([0.0, rng.uniform(0.0, 1.0)]))
            process.process.terminate()
            try:
                outcome.exit_codes.append(process.process.wait(EXIT_TIMEOUT_SECONDS))
            except Exception:
                outcome.exit_codes.append(None)
                outcome.hung_logs.append(str(process.log_path))
                process.kill()
    finally:
        sim.stop()
    return outcome
