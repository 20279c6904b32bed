"""noida-db (PyPI `noida-db`, one Rust binary) serving only its Kafka protocol.

We run the bundled binary itself rather than the `noida-db` Python wrapper, which would sit in
between as a second process (signals would reach the wrapper, not the server). The binary may
print a harmless GLIBC "weak version" warning; it goes to the log file with everything else.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from collections.abc import Mapping, Sequence
from importlib.resources import files
from pathlib import Path
from typing import ClassVar

from connector.devtools.brokers.base import Broker, BrokerKind, Capability
from connector.devtools.brokers.readiness import wait_until_serving
from connector.devtools.processes import LOOPBACK, free_port, spawn, terminate
from connector.errors import BrokerError
from connector.kafka.admin import TopicSpec, create_topics_tolerating_existing

_START_TIMEOUT_SECONDS = 30.0
_STOP_TIMEOUT_SECONDS = 10.0


def noida_binary() -> Path:
    try:
        binary = Path(str(files("noida_db").joinpath("noida-db")))
    except ModuleNotFoundError:
        raise BrokerError("noida-db is not installed (pip install noida-db)") from None
    if not binary.is_file():
        raise BrokerError(f"noida-db binary missing at {binary}")
    return binary


class NoidaBroker(Broker):
    kind = BrokerKind.NOIDA
    lacks: ClassVar[Mapping[Capability, str]] = {
        Capability.EVICTS_KILLED_MEMBERS: (
            "noida-db never evicts a consumer-group member killed with SIGKILL: its partitions "
            "stay unowned and no new member is assigned them"
        ),
        Capability.COOPERATIVE_REBALANCING: (
            "noida-db does not finish cooperative-sticky rebalances: the first member gives "
            "partitions up and a joining one is never assigned them (the range strategy works)"
        ),
        Capability.FAULT_INJECTION: (
            "noida-db has no request-level fault injection; run with TEST_KAFKA_BROKER=mock"
        ),
        Capability.PROCESS_CONTROL: (
            "noida-db persists a lagging JSON snapshot, so a restart can lose recent records"
        ),
        Capability.SECURED_LISTENERS: (
            "noida-db is started with one PLAINTEXT Kafka listener: no TLS or SASL listener to "
            "test against; run with TEST_KAFKA_BROKER=kafka"
        ),
    }

    def __init__(self, *, port: int | None = None, data_dir: Path | None = None) -> None:
        self._owns_home = data_dir is None
        self._home = data_dir or Path(tempfile.mkdtemp(prefix="toloka-kafka-noida-"))
        self._port = port or free_port()
        log = self._home / "noida.log"
        argv = [
            str(noida_binary()), "start", "--only", "kafka", "--host", LOOPBACK,
            "--kafka-port", str(self._port), "--data-dir", str(self._home / "data"),
        ]  # fmt: skip
        self._proc: subprocess.Popen[bytes] = spawn(argv, log)
        try:
            wait_until_serving(
                self._proc, self._port, log, _START_TIMEOUT_SECONDS, f"noida-db {self._port}"
            )
        except BaseException:
            self.close()
            raise

    @property
    def bootstrap_servers(self) -> str:
        return f"{LOOPBACK}:{self._port}"

    def create_topics(self, specs: Sequence[TopicSpec]) -> None:
        create_topics_tolerating_existing(self.bootstrap_servers, specs)

    def close(self) -> None:
        terminate(self._proc, _STOP_TIMEOUT_SECONDS)
        if self._owns_home:
            shutil.rmtree(self._home, ignore_errors=True)
