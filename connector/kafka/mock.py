"""librdkafka's mock cluster through ctypes, served by `python -m connector.kafka.mock`.

The cluster lives inside librdkafka (the copy bundled in the confluent-kafka wheel): a real TCP
server speaking the Kafka protocol, owned by an `rd_kafka_t` handle. It runs in its own process
so that killing the code under test never takes the broker with it. Protocol of that process:

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

_RD_KAFKA_PRODUCER = 0
_ERRSTR_SIZE = 512


def _library_path() -> str:
    """The librdkafka shared object that the confluent-kafka wheel bundles."""
    libs_dir = Path(confluent_kafka.__file__).parent.parent / "confluent_kafka.libs"
    candidates = sorted(glob.glob(str(libs_dir / "librdkafka-*.so*")))
    if not candidates:
        raise RuntimeError(f"no librdkafka shared object in {libs_dir}")
    return candidates[0]


def _bind(lib: ctypes.CDLL) -> None:
    """Declare C signatures (rdkafka.h / rdkafka_mock.h) so ctypes passes 64-bit pointers."""
    ptr, c_int, i16, i32, size_t = (
        ctypes.c_void_p, ctypes.c_int, ctypes.c_int16, ctypes.c_int32, ctypes.c_size_t,
    )  # fmt: skip
    signatures: dict[str, tuple[list[Any], Any]] = {
        "rd_kafka_conf_new": ([], ptr),
        "rd_kafka_conf_set": ([ptr, ctypes.c_char_p, ctypes.c_char_p, ptr, size_t], c_int),
        "rd_kafka_new": ([c_int, ptr, ptr, size_t], ptr),
        "rd_kafka_mock_cluster_new": ([ptr, c_int], ptr),
        "rd_kafka_mock_cluster_bootstraps": ([ptr], ctypes.c_char_p),
        "rd_kafka_mock_topic_create": ([ptr, ctypes.c_char_p, c_int, c_int], c_int),
        "rd_kafka_mock_broker_set_down": ([ptr, i32], c_int),
        "rd_kafka_mock_broker_set_up": ([ptr, i32], c_int),
        "rd_kafka_mock_broker_set_rtt": ([ptr, i32, c_int], c_int),
        "rd_kafka_mock_push_request_errors_array": ([ptr, i16, size_t, ptr], None),
        "rd_kafka_mock_clear_request_errors": ([ptr, i16], None),
        "rd_kafka_mock_partition_set_leader": ([ptr, ctypes.c_char_p, i32, i32], c_int),
        "rd_kafka_mock_coordinator_set": ([ptr, ctypes.c_char_p, ctypes.c_char_p, i32], c_int),
        "rd_kafka_mock_group_initial_rebalance_delay_ms": ([ptr, i32], None),
        "rd_kafka_err2str": ([c_int], ctypes.c_char_p),
        "rd_kafka_mock_cluster_destroy": ([ptr], None),
        "rd_kafka_destroy": ([ptr], None),
        # rd_kafka_mock_broker_push_request_error_rtts is variadic: declared per call instead.
    }
    for name, (argtypes, restype) in signatures.items():
        function = getattr(lib, name)
        function.argtypes = argtypes
        function.restype = restype


class MockCluster:
    """A librdkafka mock cluster in this process; every method is one fault-injection call."""

    def __init__(self, brokers: int = 3, initial_rebalance_delay_ms: int = 0) -> None:
        self._lib = ctypes.CDLL(_library_path())
        _bind(self._lib)
        errstr = ctypes.create_string_buffer(_ERRSTR_SIZE)
        conf = self._lib.rd_kafka_conf_new()
        # The handle that owns the cluster; keep it alive as long as the cluster.
        self._rk = self._lib.rd_kafka_new(_RD_KAFKA_PRODUCER, conf, errstr, _ERRSTR_SIZE)
        if not self._rk:
            raise RuntimeError(f"rd_kafka_new failed: {errstr.value.decode()}")
        self._cluster = self._lib.rd_kafka_mock_cluster_new(self._rk, brokers)
        if not self._cluster:
            raise RuntimeError("rd_kafka_mock_cluster_new failed")
        self.broker_count = brokers
        # librdkafka's mock waits 3 s before the first assignment; the dev Kafka waits 0.
        self.set_group_initial_rebalance_delay_ms(initial_rebalance_delay_ms)

    @property
    def bootstrap_servers(self) -> str:
        raw: bytes = self._lib.rd_kafka_mock_cluster_bootstraps(self._cluster)
        return raw.decode()

    def _check(self, err: int, what: str) -> None:
        if err != 0:
            raise RuntimeError(f"{what}: {self._lib.rd_kafka_err2str(err).decode()}")

    def create_topic(self, name: str, partitions: int = 1, replication_factor: int = 1) -> None:
        err = self._lib.rd_kafka_mock_topic_create(
            self._cluster, name.encode(), partitions, min(replication_factor, self.broker_count)
        )
        self._check(err, f"create topic {name}")

    def push_request_errors(self, api_key: int, errors: list[int]) -> None:
        array = (ctypes.c_int * len(errors))(*errors)
        self._lib.rd_kafka_mock_push_request_errors_array(
            self._cluster, api_key, len(errors), array
        )

    def push_broker_request_errors(
        self, broker_id: int, api_key: int, errors_with_rtt_ms: list[list[int]]
    ) -> None:
        function = self._lib.rd_kafka_mock_broker_push_request_error_rtts
        function.restype = ctypes.c_int
        pairs = [ctypes.c_int(value) for pair in errors_with_rtt_ms for value in pair]
        err = function(
            ctypes.c_void_p(self._cluster),
            ctypes.c_int32(broker_id),
            ctypes.c_int16(api_key),
            ctypes.c_size_t(len(errors_with_rtt_ms)),
            *pairs,
        )
        self._check(err, f"push errors on broker {broker_id}")

    def clear_request_errors(self, api_key: int) -> None:
        self._lib.rd_kafka_mock_clear_request_errors(self._cluster, api_key)

    def broker_down(self, broker_id: int) -> None:
        self._check(self._lib.rd_kafka_mock_broker_set_down(self._cluster, broker_id), "down")

    def broker_up(self, broker_id: int) -> None:
        self._check(self._lib.rd_kafka_mock_broker_set_up(self._cluster, broker_id), "up")

    def set_rtt(self, broker_id: int, rtt_ms: int) -> None:
        err = self._lib.rd_kafka_mock_broker_set_rtt(self._cluster, broker_id, rtt_ms)
        self._check(err, "set rtt")

    def set_partition_leader(self, topic: str, partition: int, broker_id: int) -> None:
        err = self._lib.rd_kafka_mock_partition_set_leader(
            self._cluster, topic.encode(), partition, broker_id
        )
        self._check(err, f"set leader of {topic}[{partition}]")

    def set_coordinator(self, key_type: str, key: str, broker_id: int) -> None:
        err = self._lib.rd_kafka_mock_coordinator_set(
            self._cluster, key_type.encode(), key.encode(), broker_id
        )
        self._check(err, f"set {key_type} coordinator of {key}")

    def set_group_initial_rebalance_delay_ms(self, delay_ms: int) -> None:
        self._lib.rd_kafka_mock_group_initial_rebalance_delay_ms(self._cluster, delay_ms)

    def close(self) -> None:
        """Destroy the cluster (its brokers stop listening), then the handle that owned it."""
        if self._cluster:
            self._lib.rd_kafka_mock_cluster_destroy(self._cluster)
            self._lib.rd_kafka_destroy(self._rk)
            self._cluster = None


# Everything but the address and the lifetime is a remote command.
_COMMANDS = frozenset(
    name
    for name in vars(MockCluster)
    if not name.startswith("_") and name not in {"bootstrap_servers", "close"}
)


def execute(cluster: MockCluster, line: str) -> dict[str, Any]:
    """Run one JSON command line against the cluster; the answer as a JSON-able dict."""
    try:
        command = json.loads(line)
        op = command["op"]
        if op not in _COMMANDS:
            return {"ok": False, "error": f"unknown op {op!r}"}
        getattr(cluster, op)(**command.get("args", {}))
    except Exception as error:  # every failure goes back to the caller
        return {"ok": False, "error": f"{type(error).__name__}: {error}"}
    return {"ok": True}


def serve(brokers: int) -> int:
    cluster = MockCluster(brokers)
    # Answers go to the real stdout; anything else printing to fd 1 would corrupt the protocol.
    answers = os.fdopen(os.dup(sys.stdout.fileno()), "w", buffering=1)
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    answers.write(json.dumps({"bootstrap_servers": cluster.bootstrap_servers}) + "\n")
    for line in sys.stdin:
        if line.strip():
            answers.write(json.dumps(execute(cluster, line)) + "\n")
    cluster.close()
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(
        prog="python -m connector.kafka.mock",
        description="Serve a librdkafka mock cluster; fault-injection commands on stdin (JSON).",
    )
    parser.add_argument("--brokers", type=int, default=3, help="number of brokers (ids 1..N)")
    return serve(parser.parse_args().brokers)


if __name__ == "__main__":
    sys.exit(main())
