"""Start a development broker of any kind: the one function the demo, the `embedded-kafka`
command and the test suites (with their own `classes`, which add the controls they need) call.

    with start_broker(BrokerKind.KAFKA) as broker:
        print(broker.bootstrap_servers)

Kinds: `kafka` (real Apache Kafka; needs java and mvn), `mock` (librdkafka's mock cluster, its
own process), `noida` (noida-db), `external` (an address given by the caller). `default_kind()`
is `kafka` where Java and Maven exist, else `mock`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from connector.devtools.brokers.apache import ApacheKafkaBroker
from connector.devtools.brokers.base import Broker, BrokerKind
from connector.devtools.brokers.external import ExternalBroker
from connector.devtools.brokers.maven import java_and_maven_available
from connector.devtools.brokers.mock import MockClusterBroker
from connector.devtools.brokers.noida import NoidaBroker
from connector.errors import BrokerError


@dataclass(frozen=True)
class BrokerClasses:
    """The class each kind is started as (the test suites give subclasses with controls)."""

    kafka: type[ApacheKafkaBroker] = ApacheKafkaBroker
    mock: type[MockClusterBroker] = MockClusterBroker
    noida: type[NoidaBroker] = NoidaBroker
    external: type[ExternalBroker] = ExternalBroker

    def of(self, kind: BrokerKind) -> type[Broker]:
        found: type[Broker] = getattr(self, kind.value)
        return found


BROKER_CLASSES: Mapping[BrokerKind, type[Broker]] = {
    kind: BrokerClasses().of(kind) for kind in BrokerKind
}
"""Each kind's class: what a kind can show is known before one is started (`lacks`)."""


def default_kind() -> BrokerKind:
    return BrokerKind.KAFKA if java_and_maven_available() else BrokerKind.MOCK


def start_broker(
    kind: BrokerKind | str | None = None,
    *,
    port: int | None = None,
    data_dir: Path | None = None,
    bootstrap_servers: str | None = None,
    classes: BrokerClasses = BrokerClasses(),
) -> Broker:
    """Start (or, for `external`, reach) a broker and return once it serves requests.

    The returned Broker is a context manager; `close()` stops it and removes its temporary
    files (a given `data_dir` is kept). `port` and `data_dir` apply to `kafka` and `noida`; the
    mock cluster picks its own ports and keeps records in memory only. `classes` gives each kind
    its class.
    """
    chosen = BrokerKind(kind) if kind is not None else default_kind()
    if chosen is BrokerKind.MOCK and (port is not None or data_dir is not None):
        raise BrokerError("the mock cluster picks its own ports and has no data dir")
    if chosen is BrokerKind.KAFKA:
        return classes.kafka(port=port, data_dir=data_dir)
    if chosen is BrokerKind.MOCK:
        return classes.mock()
    if chosen is BrokerKind.NOIDA:
        return classes.noida(port=port, data_dir=data_dir)
    if not bootstrap_servers:
        raise BrokerError("an external broker needs its bootstrap servers")
    return classes.external(bootstrap_servers)
