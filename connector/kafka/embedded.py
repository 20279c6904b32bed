"""Start a development broker of any kind: the one function the demo, the `embedded-kafka`
command and the test fixtures call.

    with start_broker(BrokerKind.KAFKA) as broker:
        print(broker.bootstrap_servers)

Kinds: `kafka` (real Apache Kafka; needs java and mvn), `mock` (librdkafka's mock cluster, its
own process), `noida` (noida-db), `external` (an address given by the caller). `default_kind()`
is `kafka` where Java and Maven exist, else `mock`.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from connector.errors import BrokerError
from connector.kafka.broker import Broker, BrokerKind
from connector.kafka.brokers.apache import ApacheKafkaBroker
from connector.kafka.brokers.external import ExternalBroker
from connector.kafka.brokers.maven import java_and_maven_available
from connector.kafka.brokers.mock import MockClusterBroker
from connector.kafka.brokers.noida import NoidaBroker

BROKER_CLASSES: Mapping[BrokerKind, type[Broker]] = {
    BrokerKind.KAFKA: ApacheKafkaBroker,
    BrokerKind.MOCK: MockClusterBroker,
    BrokerKind.NOIDA: NoidaBroker,
    BrokerKind.EXTERNAL: ExternalBroker,
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
) -> Broker:
    """Start (or, for `external`, reach) a broker and return once it serves requests.

    The returned Broker is a context manager; `close()` stops it and removes its temporary
    files (a given `data_dir` is kept). `port` and `data_dir` apply to `kafka` and `noida`; the
    mock cluster picks its own ports and keeps records in memory only.
    """
    chosen = BrokerKind(kind) if kind is not None else default_kind()
    if chosen is BrokerKind.MOCK and (port is not None or data_dir is not None):
        raise BrokerError("the mock cluster picks its own ports and has no data dir")
    if chosen is BrokerKind.KAFKA:
        return ApacheKafkaBroker(port=port, data_dir=data_dir)
    if chosen is BrokerKind.MOCK:
        return MockClusterBroker()
    if chosen is BrokerKind.NOIDA:
        return NoidaBroker(port=port, data_dir=data_dir)
    if not bootstrap_servers:
        raise BrokerError("an external broker needs its bootstrap servers")
    return ExternalBroker(bootstrap_servers)
