"""The librdkafka mock cluster in a child process, driven through the stdin/stdout JSON protocol
of `connector.devtools.brokers.mock_cluster`."""

from __future__ import annotations

import json
import os
import queue
import shutil
import subprocess
import sys
import tempfile
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import IO, Any, ClassVar

import connector
from connector.devtools.brokers.base import Broker, BrokerKind, Capability
from connector.devtools.processes import log_tail, spawn, terminate
from connector.errors import BrokerError
from connector.kafka.admin import TopicSpec

_START_TIMEOUT_SECONDS = 30.0
_COMMAND_TIMEOUT_SECONDS = 10.0
_DEFAULT_BROKERS = 3


class MockClusterBroker(Broker):
    kind = BrokerKind.MOCK
    lacks: ClassVar[Mapping[Capability, str]] = {
        Capability.TRANSACTIONS: (
            "the librdkafka mock cluster shows aborted and open-transaction records to "
            "read_committed readers, does not fence a second producer with the same "
            "transactional.id and does not store send_offsets_to_transaction offsets"
        ),
        Capability.PROCESS_CONTROL: (
            "the mock cluster keeps its records in memory: it cannot be stopped and restarted "
            "with its data (use broker_down/broker_up instead)"
        ),
        Capability.ADMIN_CREATE_TOPICS: (
            "the mock cluster does not implement CreateTopics/DeleteTopics/DescribeConfigs "
            "(they time out); topics are created through the mock API"
        ),
        Capability.SECURED_LISTENERS: (
            "the librdkafka mock cluster speaks PLAINTEXT only: no TLS, no SASL listener"
        ),
    }

    server: ClassVar[str] = "connector.devtools.brokers.mock_cluster"
    """The module the child process runs (`python -m`)."""

    def __init__(self, brokers: int = _DEFAULT_BROKERS) -> None:
        self._home = Path(tempfile.mkdtemp(prefix="toloka-kafka-mock-"))
        self._log = self._home / "mock.log"
        self._lock = threading.Lock()  # one command in flight: answers come back in order
        self._proc = spawn(
            [sys.executable, "-m", self.server, "--brokers", str(brokers)],
            self._log,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env=_child_env(),
        )
        assert self._proc.stdin is not None
        assert self._proc.stdout is not None
        self._stdin: IO[bytes] = self._proc.stdin
        self._lines = _LineReader(self._proc.stdout)
        try:
            hello = self._read_answer(_START_TIMEOUT_SECONDS, "the mock cluster to start")
            self._bootstrap: str = hello["bootstrap_servers"]
        except BaseException:
            self.close()
            raise
        self.broker_ids = tuple(range(1, brokers + 1))

    @property
    def bootstrap_servers(self) -> str:
        return self._bootstrap

    def _read_answer(self, timeout: float, what: str) -> dict[str, Any]:
        line = self._lines.next_line(timeout)
        if line is None:
            raise BrokerError(
                f"no answer from the mock cluster process waiting for {what}; "
                f"end of {self._log}:\n{log_tail(self._log)}"
            )
        answer: dict[str, Any] = json.loads(line)
        return answer

    def command(self, op: str, **args: Any) -> None:
        """Run `op` (a method of the server's cluster) in the child process."""
        with self._lock:
            if self._proc.poll() is not None:
                raise BrokerError(f"the mock cluster process exited ({self._proc.returncode})")
            self._stdin.write(json.dumps({"op": op, "args": args}).encode() + b"\n")
            self._stdin.flush()
            answer = self._read_answer(_COMMAND_TIMEOUT_SECONDS, op)
        if not answer.get("ok"):
            raise BrokerError(f"mock cluster {op} failed: {answer.get('error')}")

    def create_topics(self, specs: Sequence[TopicSpec]) -> None:
        # The mock accepts creating an existing topic again; compaction is never applied on it.
        for spec in specs:
            self.create_topic(spec.name, spec.partitions)

    def create_topic(self, name: str, partitions: int = 1, replication_factor: int = 1) -> None:
        self.command(
            "create_topic",
            name=name,
            partitions=partitions,
            replication_factor=replication_factor,
        )

    def close(self) -> None:
        if self._proc.poll() is None:
            # Closing stdin is the process's cue to exit; SIGTERM only if it does not.
            self._stdin.close()
            try:
                self._proc.wait(5)
            except subprocess.TimeoutExpired:
                terminate(self._proc, 5)
        shutil.rmtree(self._home, ignore_errors=True)


def _child_env() -> dict[str, str]:
    """Our environment, with this source tree importable even when it is not installed."""
    source_root = str(Path(connector.__file__).resolve().parent.parent)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [source_root, env.get("PYTHONPATH")]))
    return env


class _LineReader:
    """Reads a pipe on a daemon thread so waiting for an answer can have a timeout."""

    def __init__(self, pipe: IO[bytes]) -> None:
        self._lines: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._pump, args=(pipe,), daemon=True).start()

    def _pump(self, pipe: IO[bytes]) -> None:
        for raw in pipe:
            self._lines.put(raw.decode())
        self._lines.put(None)  # EOF: the process is gone

    def next_line(self, timeout: float) -> str | None:
        try:
            return self._lines.get(timeout=timeout)
        except queue.Empty:
            return None
