"""The README's "Without Toloka" section, followed as a new user follows it: a development broker
with the topics made, the simulator with its default key and project, samples on the input topic,
`run`, then `tail` and `status` showing the results. Only the ports differ (free ones, not 8800).
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from connector.simulator.cli import DEFAULT_API_KEY, DEFAULT_PORT, DEFAULT_PROJECT_ID
from testkit.waiting import wait_for
from tests.fixtures.console import Console

pytestmark = pytest.mark.integration

README = Path(__file__).resolve().parents[2] / "README.md"
SAMPLES = 200
MALFORMED = 2  # one in 100


def without_toloka_section() -> str:
    text = README.read_text()
    start = text.index("### Without Toloka")
    return text[start : text.index("\n## ", start)]


def test_the_readme_names_what_the_simulator_accepts() -> None:
    section = without_toloka_section()
    assert (
        f"export TOLOKA_API_KEY={DEFAULT_API_KEY} TOLOKA_APP_PROJECT_ID={DEFAULT_PROJECT_ID}"
        in (section)
    )
    assert f"http://127.0.0.1:{DEFAULT_PORT}/api/app/v0" in section
    commands = re.findall(r"^toloka-connector ([a-z-]+)", section, flags=re.MULTILINE)
    assert set(commands) == {
        "embedded-kafka", "simulator", "check", "produce-samples", "run", "tail", "status",
    }  # fmt: skip


def test_without_toloka_a_broker_the_simulator_samples_and_run_publish_results(
    console: Console,
) -> None:
    broker = console.start("embedded-kafka", "--kind", "mock", "--create-topics")
    broker.wait_for_output("broker running")
    bootstrap = broker.output().splitlines()[0]
    simulator = console.start("simulator", "--port", "0")
    simulator.wait_for_output("/api/app/v0")
    base_url = simulator.output().splitlines()[0]
    env = {
        "KAFKA_BOOTSTRAP_SERVERS": bootstrap,
        "TOLOKA_BASE_URL": base_url,
        "TOLOKA_API_KEY": DEFAULT_API_KEY,
        "TOLOKA_APP_PROJECT_ID": DEFAULT_PROJECT_ID,
    }

    check = console.run("check", env=env)
    assert check.returncode == 0, check.stdout + check.stderr
    produced = console.run("produce-samples", "--count", str(SAMPLES), env=env)
    assert produced.returncode == 0, produced.stderr
    run = console.start("run", env=env)

    def lines_of(topic: str) -> int:
        tail = console.run("tail", topic, env=env)
        assert tail.returncode == 0, tail.stderr
        return len(tail.stdout.splitlines())

    wait_for(lambda: lines_of("toloka.results") == SAMPLES - MALFORMED, "every result", 120)
    assert lines_of("toloka.items.dlq") == MALFORMED
    status = console.run("status", env=env)
    assert status.returncode == 0, status.stderr
    assert f"dead letters: {MALFORMED} on toloka.items.dlq" in status.stdout
    run.interrupt()
    assert run.exit_code() == 0
    for server in (simulator, broker):
        server.interrupt()
        assert server.exit_code() == 0
