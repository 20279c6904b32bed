"""`embedded-kafka`: prints the address once serving, stops cleanly on SIGTERM, exit 0."""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from confluent_kafka.admin import AdminClient

from connector.commands import embedded_kafka
from connector.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]
# The command through its own register(), without the rest of the CLI.
SCRIPT = """
import argparse, sys
from connector.commands import embedded_kafka
parser = argparse.ArgumentParser(prog="toloka-connector")
embedded_kafka.register(parser.add_subparsers())
args = parser.parse_args(sys.argv[1:])
sys.exit(args.func(args))
"""


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="toloka-connector")
    embedded_kafka.register(parser.add_subparsers())
    return parser.parse_args(["embedded-kafka", *argv])


def test_mock_prints_bootstrap_and_stops_on_sigterm() -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(
        [sys.executable, "-c", SCRIPT, "embedded-kafka", "--kind", "mock"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        assert proc.stdout is not None
        bootstrap = proc.stdout.readline().strip()
        assert bootstrap.startswith("127.0.0.1:")
        metadata = AdminClient({"bootstrap.servers": bootstrap}).list_topics(timeout=10)
        assert len(metadata.brokers) == 3
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(20) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


@pytest.mark.parametrize(
    ("argv", "setting"), [(["--port", "9092"], "--port"), (["--data-dir", "/tmp/x"], "--data-dir")]
)
def test_mock_rejects_port_and_data_dir(argv: list[str], setting: str) -> None:
    with pytest.raises(ConfigError) as raised:
        embedded_kafka.run(parse("--kind", "mock", *argv))
    assert raised.value.problems[0].startswith(setting)


def test_help_names_every_kind(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        parse("--help")
    text = capsys.readouterr().out
    for word in ("kafka", "mock", "noida", "--port", "--data-dir", "SIGTERM"):
        assert word in text
