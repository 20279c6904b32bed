"""One handle for every Kafka-protocol broker the project starts or reaches in development.

A `Broker` knows its `bootstrap_servers`, its `kind`, and which Kafka behaviours it can really
show (its capabilities). Tests skip with the broker's own reason when a capability is missing,
so no test ever passes because of a broker's gaps (see docs in dev-broker.md):

    capability              kafka  mock  noida  external
    transactions            yes    no    yes    yes      read_committed, fencing, aborts like Kafka
    evicts_killed_members   yes    yes   no     yes      a SIGKILLed group member is evicted
    cooperative_rebalancing yes    yes   no     yes      cooperative-sticky hands partitions over
    fault_injection         no     yes   no     no       request-level errors, broker down/up, rtt
    process_control         yes    no    no     no       stop / kill / pause / resume / restart
    admin_create_topics     yes    no    yes    yes      AdminClient.create_topics works
    secured_listeners       yes    no    no     no       SASL_SSL (SCRAM) and mutual-TLS listeners

Operations a broker cannot do raise `BrokerCapabilityError` naming the capability and the reason.
"""

from __future__ import annotations

import abc
from collections.abc import Mapping, Sequence
from enum import IntEnum, StrEnum
from types import TracebackType
from typing import ClassVar

from connector.errors import BrokerCapabilityError
from connector.kafka.admin import TopicSpec


class BrokerKind(StrEnum):
    KAFKA = "kafka"
    MOCK = "mock"
    NOIDA = "noida"
    EXTERNAL = "external"


class Capability(StrEnum):
    TRANSACTIONS = "transactions"
    EVICTS_KILLED_MEMBERS = "evicts_killed_members"
    COOPERATIVE_REBALANCING = "cooperative_rebalancing"
    FAULT_INJECTION = "fault_injection"
    PROCESS_CONTROL = "process_control"
    ADMIN_CREATE_TOPICS = "admin_create_topics"
    SECURED_LISTENERS = "secured_listeners"


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


class Broker(abc.ABC):
    """A running (or reachable) broker. Use as a context manager or call `close()`."""

    kind: ClassVar[BrokerKind]
    # Capabilities this kind lacks, each with the reason a skipped test reports.
    lacks: ClassVar[Mapping[Capability, str]]

    @property
    @abc.abstractmethod
    def bootstrap_servers(self) -> str: ...

    @abc.abstractmethod
    def create_topics(self, specs: Sequence[TopicSpec]) -> None:
        """Create the topics, tolerating ones that already exist."""

    @abc.abstractmethod
    def close(self) -> None:
        """Stop the broker and remove what it left behind (idempotent)."""

    @classmethod
    def supports(cls, capability: Capability | str) -> bool:
        return Capability(capability) not in cls.lacks

    @classmethod
    def missing_reason(cls, capability: Capability | str) -> str | None:
        """Why this kind of broker lacks `capability`, or None when it has it (asked of the
        class too, before a broker is started)."""
        return cls.lacks.get(Capability(capability))

    def _unsupported(self, capability: Capability) -> BrokerCapabilityError:
        reason = self.lacks.get(capability, "not implemented for this broker kind")
        return BrokerCapabilityError(self.kind, capability, reason)

    # --- process control (real Kafka): the reliability tests stop, freeze and restart it ---
    def stop(self) -> None:
        """Graceful shutdown (SIGTERM); the data and port stay for `restart()`."""
        raise self._unsupported(Capability.PROCESS_CONTROL)

    def kill(self) -> None:
        """SIGKILL, as a crash would."""
        raise self._unsupported(Capability.PROCESS_CONTROL)

    def pause(self) -> None:
        """SIGSTOP: the broker freezes, its sockets stay open."""
        raise self._unsupported(Capability.PROCESS_CONTROL)

    def resume(self) -> None:
        """SIGCONT after `pause()`."""
        raise self._unsupported(Capability.PROCESS_CONTROL)

    def restart(self) -> None:
        """Stop if running, then start again on the same port and log dir; wait until ready."""
        raise self._unsupported(Capability.PROCESS_CONTROL)

    def ensure_running(self) -> None:  # noqa: B027 - only brokers with process control act
        """Undo a test's stop/kill/pause so the next test finds the broker serving."""

    # --- request-level fault injection (librdkafka mock cluster) ---
    def push_request_errors(self, api_key: ApiKey | int, errors: Sequence[int]) -> None:
        """The next len(errors) requests of `api_key` (any broker) fail with these codes."""
        raise self._unsupported(Capability.FAULT_INJECTION)

    def push_broker_request_errors(
        self, broker_id: int, api_key: ApiKey | int, errors_with_rtt_ms: Sequence[tuple[int, int]]
    ) -> None:
        """Errors (code, delay in ms) for the next requests of `api_key` on one broker only."""
        raise self._unsupported(Capability.FAULT_INJECTION)

    def clear_request_errors(self, api_key: ApiKey | int) -> None:
        raise self._unsupported(Capability.FAULT_INJECTION)

    def broker_down(self, broker_id: int) -> None:
        """Close the broker's connections and refuse new ones until `broker_up`."""
        raise self._unsupported(Capability.FAULT_INJECTION)

    def broker_up(self, broker_id: int) -> None:
        raise self._unsupported(Capability.FAULT_INJECTION)

    def set_rtt(self, broker_id: int, rtt_ms: int) -> None:
        """Delay every response of one broker by `rtt_ms`."""
        raise self._unsupported(Capability.FAULT_INJECTION)

    def set_partition_leader(self, topic: str, partition: int, broker_id: int) -> None:
        raise self._unsupported(Capability.FAULT_INJECTION)

    def set_coordinator(self, key_type: str, key: str, broker_id: int) -> None:
        """Pin the "group" or "transaction" coordinator for `key` to one broker."""
        raise self._unsupported(Capability.FAULT_INJECTION)

    def set_group_initial_rebalance_delay_ms(self, delay_ms: int) -> None:
        raise self._unsupported(Capability.FAULT_INJECTION)

    def __enter__(self) -> Broker:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.kind} {self.bootstrap_servers}>"
