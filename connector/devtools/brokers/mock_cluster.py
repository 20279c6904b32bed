"""librdkafka's mock cluster through ctypes, in a process of its own (`python -m` this module).

The cluster lives inside librdkafka (the copy bundled in the confluent-kafka wheel): a real TCP
server speaking the Kafka protocol, owned by an `rd_kafka_t` handle. It runs in its own process
so that killing the code under test never takes the broker with it. Here it creates topics only;
the test suites serve a subclass with the mock's fault injection (`testkit.mock_faults`).
Protocol of that process:

- it prints one JSON line `{"bootstrap_servers": "127.0.0.1:p1,..."}` once the cluster is up;
- then it reads one JSON command per stdin line, `{"op": NAME, "args": {...}}` (NAME is a method
  of `MockCluster`), and answers each with one line `{"ok": true}` or `{"ok": false, "error": ...}`;
- it exits when stdin closes (its owner went away) or on SIGTERM.

Brokers get ids 1..N and listen on ephemeral loopback ports (librdkafka binds port 0 itself).
"""

from __future__ import annotations

import argparse
import ctypes
import glob
import json
import os
import sys
from pathlib import Path
from typing import Any

import confluent_kafka

from connector.errors import BrokerError

_RD_KAFKA_PRODUCER = 0
_ERRSTR_SIZE = 512


def _library_path() -> str:
    """The librdkafka shared object that the confluent-kafka wheel bundles."""
    libs_dir = Path(confluent_kafka.__file__).parent.parent / "confluent_kafka.libs"
    candidates = sorted(glob.glob(str(libs_dir / "librdkafka-*.so*")))
    if not candidates:
        raise BrokerError(f"no librdkafka shared object in {libs_dir}")
    return candidates[0]


Signatures = dict[str, tuple[list[Any], Any]]

C_TYPES = ctypes.c_void_p, ctypes.c_int, ctypes.c_int16, ctypes.c_int32, ctypes.c_size_t
"""pointer, int, int16, int32, size_t: the C types of the signatures."""


def bind(lib: ctypes.CDLL, signatures: Signatures) -> None:
    """Declare C signatures (rdkafka.h / rdkafka_mock.h) so ctypes passes 64-bit pointers."""
    for name, (argtypes, restype) in signatures.items():
        function = getattr(lib, name)
        function.argtypes = argtypes
        function.restype = restype


def _core_signatures() -> Signatures:
    ptr, c_int, _int16, i32, size_t = C_TYPES
    return {
        "rd_kafka_conf_new": ([], ptr),
        "rd_kafka_conf_set": ([ptr, ctypes.c_char_p, ctypes.c_char_p, ptr, size_t], c_int),
        "rd_kafka_new": ([c_int, ptr, ptr, size_t], ptr),
        "rd_kafka_mock_cluster_new": ([ptr, c_int], ptr),
        "rd_kafka_mock_cluster_bootstraps": ([ptr], ctypes.c_char_p),
        "rd_kafka_mock_topic_create": ([ptr, ctypes.c_char_p, c_int, c_int], c_int),
        "rd_kafka_mock_group_initial_rebalance_delay_ms": ([ptr, i32], None),
        "rd_kafka_err2str": ([c_int], ctypes.c_char_p),
        "rd_kafka_mock_cluster_destroy": ([ptr], None),
        "rd_kafka_destroy": ([ptr], None),
    }


class MockCluster:
    """A librdkafka mock cluster in this process; every public method is one remote command."""

    def __init__(self, brokers: int = 3, initial_rebalance_delay_ms: int = 0) -> None:
        self._lib = ctypes.CDLL(_library_path())
        bind(self._lib, _core_signatures())
        errstr = ctypes.create_string_buffer(_ERRSTR_SIZE)
        conf = self._lib.rd_kafka_conf_new()
        # The handle that owns the cluster; keep it alive as long as the cluster.
        self._rk = self._lib.rd_kafka_new(_RD_KAFKA_PRODUCER, conf, errstr, _ERRSTR_SIZE)
        if not self._rk:
            raise BrokerError(f"rd_kafka_new failed: {errstr.value.decode()}")
        self._cluster = self._lib.rd_kafka_mock_cluster_new(self._rk, brokers)
        if not self._cluster:
            raise BrokerError("rd_kafka_mock_cluster_new failed")
        self.broker_count = brokers
        # librdkafka's mock waits 3 s before the first assignment; the dev Kafka waits 0.
        self.set_group_initial_rebalance_delay_ms(initial_rebalance_delay_ms)

    @property
    def bootstrap_servers(self) -> str:
        raw: bytes = self._lib.rd_kafka_mock_cluster_bootstraps(self._cluster)
        return raw.decode()

    def check(self, err: int, what: str) -> None:
        """BrokerError naming `what` when a mock call returned an error code."""
        if err != 0:
            raise BrokerError(f"{what}: {self._lib.rd_kafka_err2str(err).decode()}")

    def create_topic(self, name: str, partitions: int = 1, replication_factor: int = 1) -> None:
        err = self._lib.rd_kafka_mock_topic_create(
            self._cluster, name.encode(), partitions, min(replication_factor, self.broker_count)
        )
        self.check(err, f"create topic {name}")

    def set_group_initial_rebalance_delay_ms(self, delay_ms: int) -> None:
        self._lib.rd_kafka_mock_group_initial_rebalance_delay_ms(self._cluster, delay_ms)

    def close(self) -> None:
        """Destroy the cluster (its brokers stop listening), then the handle that owned it."""
        if self._cluster:
            self._lib.rd_kafka_mock_cluster_destroy(self._cluster)
            self._lib.rd_kafka_destroy(self._rk)
            self._cluster = None


_NOT_COMMANDS = frozenset({"bootstrap_servers", "close", "check"})
"""Everything else public is a remote command: the address and the lifetime are not."""


def commands(cluster_class: type[MockCluster]) -> frozenset[str]:
    return frozenset(
        name
        for klass in cluster_class.__mro__
        for name in vars(klass)
        if not name.startswith("_") and name not in _NOT_COMMANDS
    )


def execute(cluster: MockCluster, line: str) -> dict[str, Any]:
    """Run one JSON command line against the cluster; the answer as a JSON-able dict."""
    try:
        command = json.loads(line)
        op = command["op"]
        if op not in commands(type(cluster)):
            return {"ok": False, "error": f"unknown op {op!r}"}
        getattr(cluster, op)(**command.get("args", {}))
    except Exception as error:  # every failure goes back to the caller
        return {"ok": False, "error": f"{type(error).__name__}: {error}"}
    return {"ok": True}


def serve(cluster: MockCluster) -> int:
    # Answers go to the real stdout; anything else printing to fd 1 would corrupt the protocol.
    answers = os.fdopen(os.dup(sys.stdout.fileno()), "w", buffering=1)
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    answers.write(json.dumps({"bootstrap_servers": cluster.bootstrap_servers}) + "\n")
    for line in sys.stdin:
        if line.strip():
            answers.write(json.dumps(execute(cluster, line)) + "\n")
    cluster.close()
    return 0


def main(cluster_class: type[MockCluster] = MockCluster, prog: str = "") -> int:
    parser = argparse.ArgumentParser(
        prog=prog or f"python -m {__name__}",
        description="Serve a librdkafka mock cluster; its commands on stdin (JSON).",
    )
    parser.add_argument("--brokers", type=int, default=3, help="number of brokers (ids 1..N)")
    return serve(cluster_class(parser.parse_args().brokers))


if __name__ == "__main__":
    sys.exit(main())
