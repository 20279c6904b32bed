"""Transactional producers: their configuration, and what their failures mean.

A failed transactional call is one of four things (`classify`): fencing (a newer holder of the
transactional id exists: `ProducerFencedError`), a transaction timeout the broker refuses (a
configuration problem: `TransactionTimeoutRefusedError`), a fatal error or one that cannot be
read (the producer must be replaced: `ProducerFailedError`), or an abortable error (abort the
transaction and try again: `PageAbortedError`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any

from confluent_kafka import KafkaError, KafkaException, Producer

from connector.contract.leadership import transactional_id
from connector.errors import (
    PageAbortedError,
    ProducerFailedError,
    ProducerFencedError,
    PublishError,
    TransactionTimeoutRefusedError,
)
from connector.kafka.clients import TransactionalProducer
from connector.kafka_properties import transactional_producer_settings
from connector.logs import kafka_logger

log = logging.getLogger(__name__)

ProducerFactory = Callable[[], TransactionalProducer]

PRODUCER_ERRORS = (KafkaException, SystemError)
"""What a producer call raises when it fails (see `kafka_error_of` for the SystemError)."""

_FENCED_CODES = frozenset(
    {KafkaError._FENCED, KafkaError.PRODUCER_FENCED, KafkaError.INVALID_PRODUCER_EPOCH}
)


def producer_config(
    kafka_config: Mapping[str, Any], app_project_id: str, transaction_timeout_seconds: float
) -> dict[str, Any]:
    """The transactional producer of `app_project_id`'s poller (its id fences older holders)."""
    return {
        **transactional_producer_settings(
            kafka_config, transactional_id(app_project_id), transaction_timeout_seconds
        ),
        "logger": kafka_logger(),
    }


def kafka_producer_factory(
    kafka_config: Mapping[str, Any],
    app_project_id: str,
    transaction_timeout_seconds: float,
    overrides: Callable[[], Mapping[str, Any]] = dict,
) -> ProducerFactory:
    """Creates producers of `producer_config`, with what `overrides()` says at that moment."""
    config = producer_config(kafka_config, app_project_id, transaction_timeout_seconds)

    def create() -> TransactionalProducer:
        producer: TransactionalProducer = Producer({**config, **overrides()})
        return producer

    return create


MOCK_CLUSTER_ID_PREFIX = "mockCluster"
"""How librdkafka's mock cluster names itself (`rdkafka_mock.c`: "mockCluster" and a number)."""


def transactions_are_atomic(producer: TransactionalProducer, timeout: float) -> bool:
    """Whether the cluster `producer` talks to keeps a transaction's records from read_committed
    readers until it commits, and for ever once it aborts: Kafka does, librdkafka's mock cluster
    does not (docs/brokers.md), and it is known by its cluster id. A cluster id not known within
    `timeout` counts as the mock's: the caller then takes the course that is safe on both."""
    cluster_id = producer.cluster_id(timeout)
    if cluster_id is None:
        log.warning("the cluster id was not known within %gs: results are flushed before the "
                    "cursor, as on a cluster whose transactions are not atomic (safe, slower)",
                    timeout)  # fmt: skip
        return False
    return not cluster_id.startswith(MOCK_CLUSTER_ID_PREFIX)


def is_fenced(error: KafkaError) -> bool:
    return error.code() in _FENCED_CODES


def kafka_error_of(exc: BaseException) -> KafkaError | None:
    """The KafkaError behind `exc`. confluent-kafka raises a SystemError chained to it when a
    delivery callback runs after the call has already failed (seen: `flush` on a fenced
    producer), so the chain is searched, not only `exc` itself."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, KafkaException) and seen.args and isinstance(seen.args[0], KafkaError):
            return seen.args[0]
        seen = seen.__cause__ or seen.__context__
    return None


def classify(exc: BaseException, during: str) -> PublishError:
    """Fencing, a fatal error (or one that cannot be read), or an abortable error."""
    error = kafka_error_of(exc)
    if error is None:
        return ProducerFailedError(f"{during}: {exc!r}")
    message = f"{during}: {error.str()}"
    if is_fenced(error):
        return ProducerFencedError(message)
    if error.code() == KafkaError.INVALID_TRANSACTION_TIMEOUT:
        return TransactionTimeoutRefusedError(message)
    if error.fatal():
        return ProducerFailedError(message)
    return PageAbortedError(message)
