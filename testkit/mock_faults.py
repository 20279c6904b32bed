"""The mock cluster's server with request-level fault injection, for the suites' `FaultyMock`:
`python -m testkit.mock_faults` speaks the protocol of `connector.devtools.brokers.mock_cluster`,
every method below one command more."""

from __future__ import annotations

import ctypes
import sys

from connector.devtools.brokers.mock_cluster import C_TYPES, MockCluster, Signatures, bind, main


def _fault_signatures() -> Signatures:
    ptr, c_int, i16, i32, size_t = C_TYPES
    return {
        "rd_kafka_mock_broker_set_down": ([ptr, i32], c_int),
        "rd_kafka_mock_broker_set_up": ([ptr, i32], c_int),
        "rd_kafka_mock_broker_set_rtt": ([ptr, i32, c_int], c_int),
        "rd_kafka_mock_push_request_errors_array": ([ptr, i16, size_t, ptr], None),
        "rd_kafka_mock_clear_request_errors": ([ptr, i16], None),
        "rd_kafka_mock_partition_set_leader": ([ptr, ctypes.c_char_p, i32, i32], c_int),
        "rd_kafka_mock_coordinator_set": ([ptr, ctypes.c_char_p, ctypes.c_char_p, i32], c_int),
        # rd_kafka_mock_broker_push_request_error_rtts is variadic: declared per call instead.
    }


class FaultyMockCluster(MockCluster):
    """A mock cluster in this process; every method below is one fault-injection call."""

    def __init__(self, brokers: int = 3, initial_rebalance_delay_ms: int = 0) -> None:
        super().__init__(brokers, initial_rebalance_delay_ms)
        bind(self._lib, _fault_signatures())

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
        self.check(err, f"push errors on broker {broker_id}")

    def clear_request_errors(self, api_key: int) -> None:
        self._lib.rd_kafka_mock_clear_request_errors(self._cluster, api_key)

    def broker_down(self, broker_id: int) -> None:
        self.check(self._lib.rd_kafka_mock_broker_set_down(self._cluster, broker_id), "down")

    def broker_up(self, broker_id: int) -> None:
        self.check(self._lib.rd_kafka_mock_broker_set_up(self._cluster, broker_id), "up")

    def set_rtt(self, broker_id: int, rtt_ms: int) -> None:
        err = self._lib.rd_kafka_mock_broker_set_rtt(self._cluster, broker_id, rtt_ms)
        self.check(err, "set rtt")

    def set_partition_leader(self, topic: str, partition: int, broker_id: int) -> None:
        err = self._lib.rd_kafka_mock_partition_set_leader(
            self._cluster, topic.encode(), partition, broker_id
        )
        self.check(err, f"set leader of {topic}[{partition}]")

    def set_coordinator(self, key_type: str, key: str, broker_id: int) -> None:
        err = self._lib.rd_kafka_mock_coordinator_set(
            self._cluster, key_type.encode(), key.encode(), broker_id
        )
        self.check(err, f"set {key_type} coordinator of {key}")


if __name__ == "__main__":
    sys.exit(main(FaultyMockCluster, "python -m testkit.mock_faults"))
