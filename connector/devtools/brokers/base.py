"""One handle for every Kafka-protocol broker the project starts or reaches in development.

A `Broker` knows its `bootstrap_servers`, its `kind`, and which Kafka behaviours it can really
show (its capabilities). Tests skip with the broker's own reason when a capability is missing,
so no test ever passes because of a broker's gaps (docs/brokers.md):

    capability              kafka  mock  noida  external
    transactions            yes    no    yes    yes      read_committed, fencing, aborts like Kafka
    evicts_killed_members   yes    yes   no     yes      a SIGKILLed group member is evicted
    cooperative_rebalancing yes    yes   no     yes      cooperative-sticky hands partitions over
    fault_injection         no     yes   no     no       request-level errors, broker down/up, rtt
    process_control         yes    no    no     no       stop / kill / pause / resume / restart
    admin_create_topics     yes    no    yes    yes      AdminClient.create_topics works
    secured_listeners       yes    no    no     no       SASL_SSL (SCRAM) and mutual-TLS listeners

Fault injection and process control are the test suites' (`testkit.brokers`): a broker kind that
has the capability gets the methods there; `unsupported()` is the error for one that lacks it.
"""

from __future__ import annotations

import abc
from collections.abc import Mapping, Sequence
from enum import StrEnum
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

    def unsupported(self, capability: Capability) -> BrokerCapabilityError:
        """The error for an operation needing `capability`, which this kind lacks."""
        reason = self.lacks.get(capability, "not implemented for this broker kind")
        return BrokerCapabilityError(self.kind, capability, reason)

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
