"""Output records and the transaction that carries one page of them with the state change.

Per the contract, the value of an output record is the item exactly as the API sent it, the key
is `input_data[CONNECTOR_KEY_FIELD]` as a string (else the item id), and three headers name the
item, its status and its app project.

`TransactionalPublisher.commit_page` flushes the results before it produces the cursor: on a
broker without transactional semantics (the librdkafka mock) a crash can then repeat results but
never leave a cursor that points past a result that was not written.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import orjson
from confluent_kafka import KafkaError, KafkaException, Producer

from connector.clock import Clock
from connector.logs import kafka_logger
from connector.toloka.models import Item

log = logging.getLogger(__name__)

STATE_PARTITION = 0
"""The state topic is read and written on partition 0 only, so the cursor's key never depends on
a partitioner."""

Headers = list[tuple[str, str | bytes | None]]
DeliveryCallback = Callable[[KafkaError | None, Any], None]

_FENCED_CODES = frozenset(
    {KafkaError._FENCED, KafkaError.PRODUCER_FENCED, KafkaError.INVALID_PRODUCER_EPOCH}
)


def transactional_id(app_project_id: str) -> str:
    """Stable per app project: whoever initialises it fences every older holder."""
    return f"toloka-connector-poller-{app_project_id}"


def producer_config(
    kafka_config: Mapping[str, Any], app_project_id: str, transaction_timeout_seconds: float
) -> dict[str, Any]:
    return {
        "linger.ms": 5,  # a default: a user's KAFKA_LINGER_MS wins
        **kafka_config,
        "transactional.id": transactional_id(app_project_id),
        "transaction.timeout.ms": int(transaction_timeout_seconds * 1000),
        "logger": kafka_logger(),
    }


class TransactionalProducer(Protocol):
    """The part of confluent_kafka.Producer the poller uses (fakes implement it in tests)."""

    def init_transactions(self, timeout: float) -> None: ...
    def begin_transaction(self) -> None: ...
    def produce(
        self,
        topic: str,
        *,
        value: bytes | None = None,
        key: bytes | None = None,
        partition: int = -1,
        on_delivery: DeliveryCallback | None = None,
        headers: Headers | None = None,
    ) -> None: ...
    def poll(self, timeout: float) -> int: ...
    def flush(self, timeout: float) -> int: ...
    def commit_transaction(self, timeout: float) -> None: ...
    def abort_transaction(self, timeout: float) -> None: ...


ProducerFactory = Callable[[], TransactionalProducer]


def kafka_producer_factory(
    kafka_config: Mapping[str, Any], app_project_id: str, transaction_timeout_seconds: float
) -> ProducerFactory:
    config = producer_config(kafka_config, app_project_id, transaction_timeout_seconds)

    def create() -> TransactionalProducer:
        producer: TransactionalProducer = Producer(config)
        return producer

    return create


# --- output records ----------------------------------------------------------------------------


@dataclass(frozen=True)
class OutputRecord:
    key: bytes
    value: bytes
    headers: Headers


def record_key(item: Item, key_field: str) -> str:
    """`input_data[key_field]` as a string when present (JSON text for non-strings, so `7` keys
    as "7" and `true` as "true"), else the item id."""
    value = item.input_data.get(key_field)
    if value is None:
        return item.id
    if isinstance(value, str):
        return value
    return encode_json(value).decode()


def encode_json(value: Any) -> bytes:
    """`value` as compact JSON. orjson writes at most 254 levels of nesting while the API's
    answer was read with up to 1,024: deeper values take the slower standard library instead of
    stopping the poller on them."""
    try:
        return orjson.dumps(value)
    except orjson.JSONEncodeError:
        return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode()


def output_record(item: Item, *, key_field: str, app_project_id: str) -> OutputRecord:
    return OutputRecord(
        key=record_key(item, key_field).encode(),
        value=encode_json(item.raw),
        headers=[
            ("toloka-item-id", item.id.encode()),
            ("toloka-status", (item.status or "").encode()),
            ("toloka-app-project-id", (item.app_project_id or app_project_id).encode()),
        ],
    )


# --- the transaction ---------------------------------------------------------------------------


class PublishError(Exception):
    """Base of what `commit_page` raises; the page was not committed."""


class PageAbortedError(PublishError):
    """An abortable error: the transaction was aborted; the same page may be tried again."""


class ProducerFencedError(PublishError):
    """A newer holder of the transactional id exists: step down to standby."""


class ProducerFailedError(PublishError):
    """A fatal producer error other than fencing: the producer must be rebuilt."""


def is_fenced(error: KafkaError) -> bool:
    return error.code() in _FENCED_CODES


def classify(exc: KafkaException, during: str) -> PublishError:
    error: KafkaError = exc.args[0]
    message = f"{during}: {error.str()}"
    if is_fenced(error):
        return ProducerFencedError(message)
    if error.fatal():
        return ProducerFailedError(message)
    return PageAbortedError(message)


class TransactionalPublisher:
    """One transactional producer, held while this instance leads."""

    def __init__(
        self,
        producer: TransactionalProducer,
        *,
        output_topic: str,
        state_topic: str,
        timeout_seconds: float,
        clock: Clock,
    ) -> None:
        self._producer = producer
        self._output_topic = output_topic
        self._state_topic = state_topic
        self._timeout = timeout_seconds
        self._clock = clock

    def init(self) -> None:
        """Claim the transactional id (fencing older holders, aborting their open transaction)."""
        try:
            self._producer.init_transactions(self._timeout)
        except KafkaException as exc:
            raise classify(exc, "init_transactions") from exc

    def commit_page(
        self, results: Sequence[OutputRecord], state: Sequence[tuple[str, bytes | None]]
    ) -> None:
        """Results, a flush, then the state records, in one transaction; raise a PublishError
        when it did not commit (the transaction is aborted where that is still possible)."""
        failures: list[KafkaError] = []

        def on_delivery(error: KafkaError | None, _message: Any) -> None:
            if error is not None:
                failures.append(error)

        step = "begin_transaction"
        try:
            self._producer.begin_transaction()
            step = "produce results"
            for record in results:
                self._produce(
                    self._output_topic,
                    record.value,
                    key=record.key,
                    on_delivery=on_delivery,
                    headers=record.headers,
                )
            step = "flush results"
            unflushed = self._producer.flush(self._timeout)
            if unflushed or failures:
                reason = failures[0].str() if failures else f"{unflushed} records not delivered"
                self._abort(f"flush results: {reason}")
            step = "produce state"
            for key, value in state:
                self._produce(
                    self._state_topic,
                    value,
                    key=key.encode(),
                    partition=STATE_PARTITION,
                    on_delivery=on_delivery,
                )
            step = "commit_transaction"
            self._commit()
        except KafkaException as exc:
            error = classify(exc, step)
            if isinstance(error, PageAbortedError):
                self._abort(str(error))
            raise error from exc

    def _produce(
        self,
        topic: str,
        value: bytes | None,
        *,
        key: bytes,
        on_delivery: DeliveryCallback,
        partition: int = -1,
        headers: Headers | None = None,
    ) -> None:
        deadline = self._clock.monotonic() + self._timeout
        while True:
            try:
                self._producer.produce(
                    topic,
                    value=value,
                    key=key,
                    partition=partition,
                    on_delivery=on_delivery,
                    headers=headers,
                )
                return
            except BufferError:
                # The local queue is full: serve delivery reports until there is room.
                if self._clock.monotonic() > deadline:
                    raise
                self._producer.poll(0.1)

    def _commit(self) -> None:
        """commit_transaction, repeated while its error is retriable (the outcome is then still
        open and a repeated call completes it)."""
        deadline = self._clock.monotonic() + self._timeout
        while True:
            try:
                self._producer.commit_transaction(self._timeout)
                return
            except KafkaException as exc:
                error: KafkaError = exc.args[0]
                if not error.retriable() or self._clock.monotonic() > deadline:
                    raise
                log.warning("commit_transaction will be retried: %s", error.str())

    def _abort(self, reason: str) -> None:
        """Abort the open transaction and raise PageAbortedError (or what the abort itself hit)."""
        log.warning("aborting the page transaction: %s", reason)
        try:
            self._producer.abort_transaction(self._timeout)
        except KafkaException as exc:
            raise classify(exc, "abort_transaction") from exc
        raise PageAbortedError(reason)
