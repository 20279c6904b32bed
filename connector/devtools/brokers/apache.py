"""Real Apache Kafka (4.x, KRaft, one node) run from Maven Central's jars with `java`.

What it takes (found while writing this; Java 17, Kafka 4.1.1, 2-core machine):
- jars: see `maven.py` (kafka_2.13 + log4j-core + log4j-slf4j-impl, the slf4j *1.7* binding);
- logging: `-Dlog4j2.configurationFile=<tmp>/log4j2.properties`, a File appender writing
  `<tmp>/logs/server.log` (the properties format needs no YAML parser); the JVM's own
  stdout/stderr go to `<tmp>/logs/console.log`, never to ours;
- storage: `kafka.tools.StorageTool format --standalone -t <cluster id> -c server.properties`
  (4.x wants `controller.quorum.bootstrap.servers`, not `controller.quorum.voters`, for
  `--standalone`; the cluster id is 16 random bytes in URL-safe base64 without padding);
- the controller's host:port is written into the metadata log at format time, so a restart must
  keep the controller port: a kept `--data-dir` remembers its ports in `embedded.json`;
- JVM: `-Xmx512m -Xms128m -XX:+UseG1GC -XX:MaxGCPauseMillis=20` (kafka-run-class.sh's GC
  flags with a smaller heap) plus `-Djava.awt.headless=true`; no `--add-opens` needed on 17;
- single-node settings: every replication factor 1, `transaction.state.log.min.isr=1`,
  `group.initial.rebalance.delay.ms=0`, `group.min.session.timeout.ms=1000` (crash tests may use
  short session timeouts), 5 partitions for the internal offsets/transaction topics instead of
  50 (the first group or transaction then starts quicker);
- readiness: TCP probe, then an AdminClient Metadata request; start to ready takes 4-5 s on a
  warm cache (1 s of it the one-time storage format), up to 9 s while the 2 cores are shared;
  a graceful stop takes under a second;
- `secured=SecuredListeners(...)` adds a SASL_SSL (SCRAM-SHA-512) and a mutual-TLS listener on
  ports of their own (`security.py`); the plain listener stays (inter-broker, readiness).
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import ClassVar

from connector.devtools.brokers.base import Broker, BrokerKind, Capability
from connector.devtools.brokers.maven import KAFKA_VERSION, kafka_libs
from connector.devtools.brokers.readiness import wait_until_serving
from connector.devtools.brokers.security import MTLS_LISTENER, SASL_LISTENER, SecuredListeners
from connector.devtools.processes import LOOPBACK, free_port, spawn, terminate
from connector.errors import BrokerError
from connector.kafka.admin import TopicSpec, create_topics_tolerating_existing

_JVM_FLAGS = (
    "-XX:+UseG1GC",
    "-XX:MaxGCPauseMillis=20",
    "-XX:+ExplicitGCInvokesConcurrent",
    "-Djava.awt.headless=true",
)
_STOP_TIMEOUT_SECONDS = 30.0
_LAYOUT_FILE = "embedded.json"

_LOG4J2 = """status = warn
appender.file.type = File
appender.file.name = file
appender.file.fileName = {log_file}
appender.file.layout.type = PatternLayout
appender.file.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = info
rootLogger.appenderRef.file.ref = file
"""


def new_cluster_id() -> str:
    """A Kafka Uuid string; like Kafka's own generator, never one starting with '-'."""
    while True:
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode()
        if not cluster_id.startswith("-"):
            return cluster_id


def server_properties(
    data_dir: Path,
    port: int,
    controller_port: int,
    secured: tuple[SecuredListeners, int, int] | None = None,
) -> str:
    """`secured`: the secured listeners with their SASL_SSL and mutual-TLS ports."""
    advertised = [f"PLAINTEXT://{LOOPBACK}:{port}"]
    protocols = ["CONTROLLER:PLAINTEXT", "PLAINTEXT:PLAINTEXT"]
    listener_settings: Mapping[str, str] = {}
    if secured is not None:
        listeners, sasl_port, mtls_port = secured
        advertised += [
            f"{SASL_LISTENER}://{LOOPBACK}:{sasl_port}",
            f"{MTLS_LISTENER}://{LOOPBACK}:{mtls_port}",
        ]
        protocols += [f"{SASL_LISTENER}:SASL_SSL", f"{MTLS_LISTENER}:SSL"]
        listener_settings = listeners.server_properties()
    settings = {
        "process.roles": "broker,controller",
        "node.id": "1",
        "controller.quorum.bootstrap.servers": f"{LOOPBACK}:{controller_port}",
        "listeners": ",".join([*advertised, f"CONTROLLER://{LOOPBACK}:{controller_port}"]),
        "advertised.listeners": ",".join(advertised),
        "controller.listener.names": "CONTROLLER",
        "inter.broker.listener.name": "PLAINTEXT",
        "listener.security.protocol.map": ",".join(protocols),
        "log.dirs": str(data_dir),
        "num.partitions": "1",
        "default.replication.factor": "1",
        "offsets.topic.replication.factor": "1",
        "offsets.topic.num.partitions": "5",
        "transaction.state.log.replication.factor": "1",
        "transaction.state.log.min.isr": "1",
        "transaction.state.log.num.partitions": "5",
        "share.coordinator.state.topic.replication.factor": "1",
        "share.coordinator.state.topic.min.isr": "1",
        "group.initial.rebalance.delay.ms": "0",
        "group.min.session.timeout.ms": "1000",
        "auto.create.topics.enable": "true",
        **listener_settings,
    }
    return "".join(f"{key}={value}\n" for key, value in settings.items())


class ApacheKafkaBroker(Broker):
    kind = BrokerKind.KAFKA
    lacks: ClassVar[Mapping[Capability, str]] = {
        Capability.FAULT_INJECTION: (
            "real Kafka has no request-level fault injection (stop, kill or pause the process "
            "instead); run with TEST_KAFKA_BROKER=mock"
        ),
    }

    def __init__(
        self,
        *,
        port: int | None = None,
        data_dir: Path | None = None,
        version: str = KAFKA_VERSION,
        heap: str = "512m",
        start_timeout: float = 90.0,
        secured: SecuredListeners | None = None,
    ) -> None:
        self._libs = kafka_libs(version)
        self._secured = secured
        self._secured_ports: dict[str, int] = {}
        self._owns_home = data_dir is None
        self._home = data_dir or Path(tempfile.mkdtemp(prefix="toloka-kafka-"))
        self._heap = heap
        self._start_timeout = start_timeout
        self._proc: subprocess.Popen[bytes] | None = None
        try:
            self._port, self._controller_port = self._prepare(port)
            self._start()
        except BaseException:
            self.close()
            raise

    @property
    def bootstrap_servers(self) -> str:
        return f"{LOOPBACK}:{self._port}"

    def secured_bootstrap_servers(self, listener: str) -> str:
        """The address of a secured listener (`security.SASL_LISTENER`, `MTLS_LISTENER`)."""
        if listener not in self._secured_ports:
            raise BrokerError(f"this broker was started without the {listener} listener")
        return f"{LOOPBACK}:{self._secured_ports[listener]}"

    @property
    def home(self) -> Path:
        """Folder with `data/` (the log dir), `logs/server.log` and the generated configs."""
        return self._home

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    def create_topics(self, specs: Sequence[TopicSpec]) -> None:
        create_topics_tolerating_existing(self.bootstrap_servers, specs)

    # --- preparation -----------------------------------------------------------------------
    def _prepare(self, port: int | None) -> tuple[int, int]:
        """Write configs and format storage once; reuse ports a kept data dir remembers."""
        self._home.mkdir(parents=True, exist_ok=True)
        layout_file = self._home / _LAYOUT_FILE
        layout: dict[str, int | str] = (
            json.loads(layout_file.read_text()) if layout_file.exists() else {}
        )
        broker_port = port or int(layout.get("port", 0)) or free_port()
        controller_port = int(layout.get("controller_port", 0)) or free_port()
        secured = None
        if self._secured is not None:
            for listener in (SASL_LISTENER, MTLS_LISTENER):
                self._secured_ports[listener] = int(layout.get(listener, 0)) or free_port()
            secured = (
                self._secured,
                self._secured_ports[SASL_LISTENER],
                self._secured_ports[MTLS_LISTENER],
            )
        (self._home / "server.properties").write_text(
            server_properties(self._home / "data", broker_port, controller_port, secured)
        )
        (self._home / "log4j2.properties").write_text(
            _LOG4J2.format(log_file=self._home / "logs" / "server.log")
        )
        if "cluster_id" not in layout:
            cluster_id = new_cluster_id()
            self._format_storage(cluster_id)
            layout = {"cluster_id": cluster_id, "controller_port": controller_port}
        layout["port"] = broker_port
        layout.update(self._secured_ports)
        layout_file.write_text(json.dumps(layout))
        return broker_port, controller_port

    def _java(self, main_class: str, *args: str, heap: str) -> list[str]:
        return [
            "java",
            f"-Xmx{heap}",
            "-Xms128m",
            *_JVM_FLAGS,
            f"-Dlog4j2.configurationFile={self._home / 'log4j2.properties'}",
            f"-Dkafka.logs.dir={self._home / 'logs'}",
            "-cp",
            f"{self._libs}{os.sep}*",
            main_class,
            *args,
        ]

    def _format_storage(self, cluster_id: str) -> None:
        argv = self._java(
            "kafka.tools.StorageTool",
            "format", "--standalone", "-t", cluster_id,
            "-c", str(self._home / "server.properties"),
            *(self._secured.format_arguments() if self._secured is not None else ()),
            heap="256m",
        )  # fmt: skip
        result = subprocess.run(argv, capture_output=True, text=True, check=False, timeout=120)
        if result.returncode != 0:
            raise BrokerError(f"kafka-storage format failed:\n{result.stdout}{result.stderr}")

    # --- the server process ----------------------------------------------------------------
    def _start(self) -> None:
        """Start the server on the broker's port and log dir; return once it serves."""
        argv = self._java("kafka.Kafka", str(self._home / "server.properties"), heap=self._heap)
        self._proc = spawn(argv, self._home / "logs" / "console.log")
        wait_until_serving(
            self._proc,
            self._port,
            self._home / "logs" / "server.log",
            self._start_timeout,
            f"Apache Kafka {self.bootstrap_servers}",
        )

    def _running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def _stop(self) -> None:
        """A graceful stop (SIGTERM, after SIGCONT should it be frozen); data and port stay."""
        if self._proc is not None:
            terminate(self._proc, _STOP_TIMEOUT_SECONDS)

    def close(self) -> None:
        self._stop()
        self._proc = None
        if self._owns_home:
            shutil.rmtree(self._home, ignore_errors=True)
