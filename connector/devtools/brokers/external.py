"""A broker someone else runs (TEST_KAFKA_BROKER=external): we only know its address.

It is taken to be real Kafka; we neither start nor stop it, so no process control and no
fault injection.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import ClassVar

from connector.devtools.brokers.base import Broker, BrokerKind, Capability
from connector.kafka.admin import TopicSpec, create_topics_tolerating_existing


class ExternalBroker(Broker):
    kind = BrokerKind.EXTERNAL
    lacks: ClassVar[Mapping[Capability, str]] = {
        Capability.FAULT_INJECTION: "an external broker offers no fault injection",
        Capability.PROCESS_CONTROL: "an external broker is not ours to stop or restart",
        Capability.SECURED_LISTENERS: (
            "an external broker's listeners are not ours to configure (one bootstrap address is "
            "given); run with TEST_KAFKA_BROKER=kafka"
        ),
    }

    def __init__(self, bootstrap_servers: str) -> None:
        self._bootstrap = bootstrap_servers

    @property
    def bootstrap_servers(self) -> str:
        return self._bootstrap

    def create_topics(self, specs: Sequence[TopicSpec]) -> None:
        create_topics_tolerating_existing(self.bootstrap_servers, specs)

    def close(self) -> None:
        """Nothing to do: the broker is not ours."""
