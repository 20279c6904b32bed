"""The development brokers with the controls only the suites use: request-level fault injection
(the mock cluster) and process control (real Kafka: stop, kill, pause, resume, restart).

`start_test_broker(kind)` starts the broker of `kind` as a `ControllableBroker`: every control is
there, and one the kind lacks raises `BrokerCapabilityError` with the kind's reason (see
`connector.devtools.brokers.base` and docs/brokers.md for what each kind can show).
"""

from __future__ import annotations

import os
import signal
from collections.abc import Sequence
from enum import IntEnum
from typing import cast

from connector.devtools.brokers.apache import ApacheKafkaBroker
from connector.devtools.brokers.base import Broker, BrokerKind, Capability
from connector.devtools.brokers.external import ExternalBroker
from connector.devtools.brokers.mock import MockClusterBroker
from connector.devtools.brokers.noida import NoidaBroker
from connector.devtools.brokers.start import BrokerClasses, start_broker
from connector.errors import BrokerError


class ApiKey(IntEnum):
    """Kafka protocol request numbers, for request-level fault injection on the mock."""

    PRODUCE = 0
    FETCH = 1
    LIST_OFFSETS = 2
    METADATA = 3
    OFFSET_COMMIT = 8
    OFFSET_FETCH = 9
    FIND_COORDINATOR = 10
    JOIN_GROUP = 11
    HEARTBEAT = 12
    LEAVE_GROUP = 13
    SYNC_GROUP = 14
    API_VERSIONS = 18
    CREATE_TOPICS = 19
    INIT_PRODUCER_ID = 22
    ADD_PARTITIONS_TO_TXN = 24
    ADD_OFFSETS_TO_TXN = 25
    END_TXN = 26
    TXN_OFFSET_COMMIT = 28


class ControllableBroker(Broker):
    """A development broker with every control the suites use; those its kind lacks raise."""

    # --- process control (real Kafka): the reliability tests stop, freeze and restart it ---
    def stop(self) -> None:
        """Graceful shutdown (SIGTERM); the data and port stay for `restart()`."""
        raise self.unsupported(Capability.PROCESS_CONTROL)

    def kill(self) -> None:
        """SIGKILL, as a crash would."""
        raise self.unsupported(Capability.PROCESS_CONTROL)

    def pause(self) -> None:
        """SIGSTOP: the broker freezes, its sockets stay open."""
        raise self.unsupported(Capability.PROCESS_CONTROL)

    def resume(self) -> None:
        """SIGCONT after `pause()`."""
        raise self.unsupported(Capability.PROCESS_CONTROL)

    def restart(self) -> None:
        """Stop if running, then start again on the same port and log dir; wait until ready."""
        raise self.unsupported(Capability.PROCESS_CONTROL)

    def ensure_running(self) -> None:
        """Undo a test's stop/kill/pause so the next test finds the broker serving."""

    # --- request-level fault injection (librdkafka mock cluster) ---
    def push_request_errors(self, api_key: ApiKey | int, errors: Sequence[int]) -> None:
        """The next len(errors) requests of `api_key` (any broker) fail with these codes."""
        raise self.unsupported(Capability.FAULT_INJECTION)

    def push_broker_request_errors(
        self, broker_id: int, api_key: ApiKey | int, errors_with_rtt_ms: Sequence[tuple[int, int]]
    ) -> None:
        """Errors (code, delay in ms) for the next requests of `api_key` on one broker only."""
        raise self.unsupported(Capability.FAULT_INJECTION)

    def clear_request_errors(self, api_key: ApiKey | int) -> None:
        raise self.unsupported(Capability.FAULT_INJECTION)

    def broker_down(self, broker_id: int) -> None:
        """Close the broker's connections and refuse new ones until `broker_up`."""
        raise self.unsupported(Capability.FAULT_INJECTION)

    def broker_up(self, broker_id: int) -> None:
        raise self.unsupported(Capability.FAULT_INJECTION)

    def set_rtt(self, broker_id: int, rtt_ms: int) -> None:
        """Delay every response of one broker by `rtt_ms`."""
        raise self.unsupported(Capability.FAULT_INJECTION)

    def set_partition_leader(self, topic: str, partition: int, broker_id: int) -> None:
        raise self.unsupported(Capability.FAULT_INJECTION)

    def set_coordinator(self, key_type: str, key: str, broker_id: int) -> None:
        """Pin the "group" or "transaction" coordinator for `key` to one broker."""
        raise self.unsupported(Capability.FAULT_INJECTION)

    def set_group_initial_rebalance_delay_ms(self, delay_ms: int) -> None:
        raise self.unsupported(Capability.FAULT_INJECTION)


class ControlledKafka(ApacheKafkaBroker, ControllableBroker):
    """Real Apache Kafka whose process the suites stop, kill, freeze and restart."""

    _paused = False

    def stop(self) -> None:
        self._stop()
        self._paused = False

    def kill(self) -> None:
        if self._running():
            assert self._proc is not None
            self._proc.kill()
            self._proc.wait()
        self._paused = False

    def pause(self) -> None:
        if not self._running():
            raise BrokerError("cannot pause: the broker process is not running")
        assert self._proc is not None
        os.kill(self._proc.pid, signal.SIGSTOP)
        self._paused = True

    def resume(self) -> None:
        if self._running() and self._paused:
            assert self._proc is not None
            os.kill(self._proc.pid, signal.SIGCONT)
        self._paused = False

    def restart(self) -> None:
        self.stop()
        self._start()

    def ensure_running(self) -> None:
        if self._paused:
            self.resume()
        if not self._running():
            self._start()


class FaultyMock(MockClusterBroker, ControllableBroker):
    """The mock cluster, its server able to inject faults (`testkit.mock_faults`)."""

    server = "testkit.mock_faults"

    def push_request_errors(self, api_key: ApiKey | int, errors: Sequence[int]) -> None:
        self.command("push_request_errors", api_key=int(api_key), errors=list(errors))

    def push_broker_request_errors(
        self, broker_id: int, api_key: ApiKey | int, errors_with_rtt_ms: Sequence[tuple[int, int]]
    ) -> None:
        self.command(
            "push_broker_request_errors",
            broker_id=broker_id,
            api_key=int(api_key),
            errors_with_rtt_ms=[list(pair) for pair in errors_with_rtt_ms],
        )

    def clear_request_errors(self, api_key: ApiKey | int) -> None:
        self.command("clear_request_errors", api_key=int(api_key))

    def broker_down(self, broker_id: int) -> None:
        self.command("broker_down", broker_id=broker_id)

    def broker_up(self, broker_id: int) -> None:
        self.command("broker_up", broker_id=broker_id)

    def set_rtt(self, broker_id: int, rtt_ms: int) -> None:
        self.command("set_rtt", broker_id=broker_id, rtt_ms=rtt_ms)

    def set_partition_leader(self, topic: str, partition: int, broker_id: int) -> None:
        self.command("set_partition_leader", topic=topic, partition=partition, broker_id=broker_id)

    def set_coordinator(self, key_type: str, key: str, broker_id: int) -> None:
        self.command("set_coordinator", key_type=key_type, key=key, broker_id=broker_id)

    def set_group_initial_rebalance_delay_ms(self, delay_ms: int) -> None:
        self.command("set_group_initial_rebalance_delay_ms", delay_ms=delay_ms)


class ControllableNoida(NoidaBroker, ControllableBroker):
    """noida-db: no controls (its capabilities say why)."""


class ControllableExternal(ExternalBroker, ControllableBroker):
    """A broker someone else runs: not ours to control."""


CONTROLLABLE = BrokerClasses(
    kafka=ControlledKafka, mock=FaultyMock, noida=ControllableNoida, external=ControllableExternal
)


def start_test_broker(
    kind: BrokerKind | str | None = None, *, bootstrap_servers: str | None = None
) -> ControllableBroker:
    """`connector.devtools.brokers.start.start_broker`, the broker with the suites' controls."""
    broker = start_broker(kind, bootstrap_servers=bootstrap_servers, classes=CONTROLLABLE)
    return cast(ControllableBroker, broker)
