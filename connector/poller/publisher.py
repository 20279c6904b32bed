"""Output records and the transaction that carries one page of them with the state change.

Per the contract, the value of an output record is the item exactly as the API sent it, the key
is `input_data[CONNECTOR_KEY_FIELD]` as a string (else the item id), and three headers name the
item, its status and its app project.

`TransactionalPublisher.commit_page` produces a page's results and its cursor in one transaction.
On Kafka the results and the cursor become visible together or not at all, so they are produced
one after the other and `commit_transaction` flushes them (librdkafka's: "any outstanding
messages will be flushed (delivered) before actually committing the transaction. If any of the
outstanding messages fail permanently the current transaction will enter the abortable error
state"); the delivery reports are served during the commit or, when it fails, during the abort
(which flushes as well), so a record refused as too large is named all the same. On a broker
whose transactions are not atomic (the librdkafka mock cluster, known by its cluster id at
`init`) the results are flushed before the cursor is produced: a crash can then repeat results
but never leave a cursor that points past a result that was not written.
"""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any, NamedTuple, NoReturn

import orjson
from confluent_kafka import KafkaError, KafkaException

from connector.clock import Clock
from connector.contract.cursor import STATE_PARTITION
from connector.contract.results import APP_PROJECT_ID_HEADER, ITEM_ID_HEADER, STATUS_HEADER
from connector.errors import (
    PageAbortedError,
    ProducerFailedError,
    PublishError,
    RecordsTooLargeError,
    StateTooLargeError,
)
from connector.kafka.clients import DeliveryCallback, Header, TransactionalProducer
from connector.kafka.limits import record_size
from connector.kafka.produce import produce_when_room
from connector.kafka.transactions import (
    PRODUCER_ERRORS,
    classify,
    is_fenced,
    kafka_error_of,
    transactions_are_atomic,
)
from connector.toloka.models import Item

log = logging.getLogger(__name__)

_FROZEN_SLACK_SECONDS = 1.0
"""A call that returns this much later than its bound means the process was not running."""

_FULL_QUEUE_WAIT_SECONDS = 0.1
_CLUSTER_ID_SECONDS = 5.0
"""How long `init` waits for the cluster id (known at once once the transactional id is claimed)."""
TAKEOVER_STEP_FLOOR_SECONDS = 10.0
"""The least time a take-over step (claiming the transactional id, reading the state) is given,
however short the transaction timeout. Claiming waits for the coordinator to abort the previous
holder's transaction; a step given up early starts over with a new producer and, on a loaded
broker, fails the same way again (seen: minutes of failed take-overs at a 1.5 s bound). A slow
take-over is harmless: fencing keeps it safe."""

# --- output records ----------------------------------------------------------------------------


class OutputRecord(NamedTuple):
    """(A tuple: one is built per result, and a frozen dataclass costs twice as much to make.)"""

    key: bytes
    value: bytes
    headers: list[Header]


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


_OUTPUT_RECORD_FRAMING = record_size(
    b"", b"", [(name, b"") for name in (ITEM_ID_HEADER, STATUS_HEADER, APP_PROJECT_ID_HEADER)]
)
"""`record_size` of an output record without its key, value and header values."""


def output_record(item: Item, *, key_field: str, app_project_id: str) -> tuple[OutputRecord, int]:
    """The output record of `item`, and its `record_size` (summed from its parts: the header
    names are always the same three; one is built per result)."""
    key = record_key(item, key_field).encode()
    value = encode_json(item.raw)
    item_id = item.id.encode()
    status = (item.status or "").encode()
    project = (item.app_project_id or app_project_id).encode()
    headers: list[Header] = [
        (ITEM_ID_HEADER, item_id),
        (STATUS_HEADER, status),
        (APP_PROJECT_ID_HEADER, project),
    ]
    size = _OUTPUT_RECORD_FRAMING + len(key) + len(value) + len(item_id) + len(status)
    return OutputRecord(key, value, headers), size + len(project)


# --- the transaction ---------------------------------------------------------------------------


@dataclass(frozen=True)
class SizeRefusal:
    """A record refused as too large for its topic."""

    topic: str
    record: OutputRecord
    by_broker: bool
    """False: librdkafka refused it before sending (larger than its message.max.bytes); True:
    the broker refused the batch that held it (which may have held other records too)."""


class _DeliveryReports:
    """What the delivery reports of one transaction's records said. One callback serves every
    record of the transaction (a closure made per record cost more than producing it); the
    record a refusal names is found again by its topic, key and headers (the item id header
    tells a page's results apart) only when there is one."""

    def __init__(self, state_topic: str) -> None:
        self.refused: list[SizeRefusal] = []
        self.failures: list[KafkaError] = []
        self._state_topic = state_topic
        self._sent: list[tuple[str, Sequence[OutputRecord]]] = []

    def sending(self, topic: str, records: Sequence[OutputRecord]) -> None:
        """`records` are produced to `topic` in this transaction."""
        self._sent.append((topic, records))

    def on_delivery(self, error: KafkaError | None, message: Any) -> None:
        if error is None:
            return
        topic = message.topic()
        if error.code() == KafkaError.MSG_SIZE_TOO_LARGE and topic != self._state_topic:
            self.refused.append(SizeRefusal(topic, self._record_of(message), by_broker=True))
        else:
            self.failures.append(error)

    def _record_of(self, message: Any) -> OutputRecord:
        """The record as it was handed to the producer (with its JSON value where an encoder
        wrote another), or, for one not handed over as such (a result written as a dead letter
        by the encoder), the record as it was sent."""
        topic, key, headers = message.topic(), message.key(), message.headers() or []
        for sent_to, records in self._sent:
            if sent_to == topic:
                for record in records:
                    if record.key == key and record.headers == headers:
                        return record
        return OutputRecord(key or b"", message.value() or b"", headers)

    def reason(self, unflushed: int) -> str:
        if self.failures:
            return self.failures[0].str()
        return "records too large" if self.refused else f"{unflushed} records not delivered"

    def too_large(self, aborted: PageAbortedError) -> RecordsTooLargeError | None:
        """`aborted` as a RecordsTooLargeError naming the records refused as too large (None
        when no record was)."""
        if not self.refused:
            return None
        return RecordsTooLargeError(f"{aborted} ({len(self.refused)} too large)", self.refused)


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
        dlq_topic: str = "",
    ) -> None:
        self._producer = producer
        self._output_topic = output_topic
        self._state_topic = state_topic
        self._dlq_topic = dlq_topic
        self._timeout = timeout_seconds
        self._clock = clock
        self.flushes_before_cursor = True
        """Flush a page's results before its cursor is produced (`init` decides: see above)."""
        self._reports = _DeliveryReports(state_topic)
        """The delivery reports of the open transaction's records."""
        self._open = False
        """A transaction was begun and neither committed nor aborted since."""

    def init(self) -> None:
        """Claim the transactional id (fencing older holders, aborting their open transaction).
        A timed-out claim is resumed by calling it again, on the same producer, until the
        step's bound."""
        deadline = self._clock.monotonic() + max(self._timeout, TAKEOVER_STEP_FLOOR_SECONDS)
        while True:
            try:
                self._producer.init_transactions(self._remaining(deadline))
                atomic = transactions_are_atomic(self._producer, _CLUSTER_ID_SECONDS)
                self.flushes_before_cursor = not atomic
                return
            except PRODUCER_ERRORS as exc:
                error = kafka_error_of(exc)
                retriable = error is not None and error.retriable() and not error.fatal()
                if not retriable or self._clock.monotonic() >= deadline:
                    raise classify(exc, "init_transactions") from exc
                log.debug("init_transactions will be resumed: %s", error)

    def commit_page(
        self,
        results: Sequence[OutputRecord],
        state: Sequence[tuple[str, bytes | None]],
        dead_letters: Sequence[OutputRecord] = (),
    ) -> None:
        """One page in a transaction of its own (`begin`, `add`, `commit`)."""
        self.begin()
        try:
            self.add(results, state, dead_letters)
            self.commit()
        except PublishError:
            raise  # (aborted where it failed)
        except Exception as failure:
            self.abort_after(failure)
            raise

    def abort_after(self, failure: Exception) -> bool:
        """Abort the open transaction that `failure` (not Kafka's: a bug) left unfinishable, so
        that nothing of it commits later and read_committed consumers are not held back by it
        until the transaction timeout; the caller raises `failure`, which ends the role. An
        abort that fails is logged: the transaction then ends when the next holder of the
        transactional id (this poller restarted, or a standby) fences it. False when no
        transaction was open: the failure came after an abort (`StateTooLargeError` is raised
        once its transaction is aborted), and a second abort would only be refused."""
        if not self._open:
            return False
        try:
            self._abort(PageAbortedError(f"the transaction cannot go on: {failure!r}"))
        except PageAbortedError:
            return True
        except PublishError as abort_failed:
            log.warning("the transaction could not be aborted (%s): the next holder of the "
                        "transactional id ends it", abort_failed)  # fmt: skip
        return True

    def begin(self) -> None:
        """Open a transaction. A PublishError when it did not open (never an abortable one:
        begin has none, a transaction state other than expected means the producer is lost)."""
        self._reports = _DeliveryReports(self._state_topic)
        try:
            self._producer.begin_transaction()
            self._open = True
        except PRODUCER_ERRORS as exc:
            error = classify(exc, "begin_transaction")
            if isinstance(error, PageAbortedError):
                error = ProducerFailedError(str(error))
            raise error from exc

    def add(
        self,
        results: Sequence[OutputRecord],
        state: Sequence[tuple[str, bytes | None]],
        dead_letters: Sequence[OutputRecord] = (),
    ) -> None:
        """Results and dead letters, then the state records, into the open transaction (a flush
        in between where transactions are not atomic). A PublishError when they could not be
        produced: the transaction is aborted where that is still possible (every page added to
        it with it); RecordsTooLargeError names records refused as too large."""
        reports = self._reports
        step = "produce results"
        try:
            on_delivery = reports.on_delivery
            for topic, records in ((self._output_topic, results), (self._dlq_topic, dead_letters)):
                reports.sending(topic, records)
                for record in records:
                    if not self._produce(
                        topic, record.key, record.value, on_delivery, record.headers
                    ):
                        reports.refused.append(SizeRefusal(topic, record, by_broker=False))
            if reports.refused:
                self._abort(PageAbortedError("produce results: records too large"))
            if self.flushes_before_cursor:
                step = "flush results"
                unflushed = self._producer.flush(self._timeout)
                if unflushed or reports.failures or reports.refused:
                    self._abort(PageAbortedError(f"flush results: {reports.reason(unflushed)}"))
            step = "produce state"
            for key, value in state:
                if not self._produce(
                    self._state_topic,
                    key.encode(),
                    value,
                    reports.on_delivery,
                    partition=STATE_PARTITION,
                ):
                    # Committing without it would lose the cursor's move (every result of the
                    # transaction published again after a take-over): no transaction commits.
                    with contextlib.suppress(PublishError):
                        self._abort(PageAbortedError("produce state: a state record too large"))
                    raise StateTooLargeError(
                        f"the poller's state record {key!r} ({len(value or b'')} bytes) is "
                        "larger than its producer may send: raise KAFKA_MESSAGE_MAX_BYTES (and "
                        f"max.message.bytes of {self._state_topic}), or shorten "
                        "CONNECTOR_LATE_WINDOW_SECONDS (the cursor lists a segment per "
                        "transaction within it)"
                    )
        except PRODUCER_ERRORS as exc:
            error = classify(exc, step)
            if isinstance(error, PageAbortedError):
                self._abort(error)
            raise error from exc

    def commit(self) -> None:
        """Commit the open transaction (its records are flushed first); a PublishError when it
        did not commit, as `add`."""
        self._commit()

    def _produce(
        self,
        topic: str,
        key: bytes,
        value: bytes | None,
        on_delivery: DeliveryCallback,
        headers: list[Header] | None = None,
        *,
        partition: int = -1,
    ) -> bool:
        """Produce one record; False when librdkafka refused it as too large."""
        send = self._producer.produce
        try:
            try:
                # The common case, room in the queue: one direct call (a closure or a partial
                # made per record cost more than the call itself).
                send(
                    topic, value=value, key=key, partition=partition, on_delivery=on_delivery,
                    headers=headers,
                )  # fmt: skip
                return True
            except BufferError:
                produce = partial(
                    send, topic, value=value, key=key, partition=partition,
                    on_delivery=on_delivery, headers=headers,
                )  # fmt: skip
                produced = produce_when_room(
                    produce,
                    self._producer.poll,
                    wait_seconds=_FULL_QUEUE_WAIT_SECONDS,
                    give_up_at=self._clock.monotonic() + self._timeout,
                    now=self._clock.monotonic,
                )
        except KafkaException as exc:
            error = kafka_error_of(exc)
            if error is not None and error.code() == KafkaError.MSG_SIZE_TOO_LARGE:
                return False
            raise
        if not produced:
            self._abort(
                PageAbortedError(f"produce: the local queue stayed full {self._timeout:g}s")
            )
        return True

    def _commit(self) -> None:
        """commit_transaction, called again while its error is retriable (a timed-out commit
        is resumed by calling it again; anything else in between is refused as conflicting)."""
        deadline = self._clock.monotonic() + self._timeout
        woken = False
        while True:
            bound = self._remaining(deadline)
            called_at = self._clock.monotonic()
            try:
                self._producer.commit_transaction(bound)
                self._open = False
                return
            except PRODUCER_ERRORS as exc:
                error = kafka_error_of(exc)
                if error is None or error.fatal() or is_fenced(error):
                    raise classify(exc, "commit_transaction") from exc
                if error.txn_requires_abort():
                    self._abort(PageAbortedError(f"commit_transaction: {error.str()}"))
                overslept = self._clock.monotonic() - called_at > bound + _FROZEN_SLACK_SECONDS
                if error.retriable() and overslept and not woken:
                    # The call came back long after its bound: the process was frozen (SIGSTOP,
                    # a paused VM) and woke past its deadline without having heard the broker.
                    # One more call, bounded afresh: by now the broker may answer that a newer
                    # leader fenced this one (step down), rather than leave it to claim the
                    # transactional id anew and fence that leader in turn.
                    woken = True
                    deadline = self._clock.monotonic() + self._timeout
                    log.warning("commit_transaction resumed after a freeze: %s", error.str())
                    continue
                if not error.retriable() or self._clock.monotonic() >= deadline:
                    raise ProducerFailedError(
                        f"commit_transaction: {error.str()}: the commit did not end within "
                        f"{self._timeout:g}s, its outcome is unknown"
                    ) from exc
                log.warning("commit_transaction will be retried: %s", error.str())

    def _abort(self, error: PageAbortedError) -> NoReturn:
        """Abort the open transaction, then raise `error`, as a RecordsTooLargeError where records
        were refused as too large (or what the abort itself hit: a ProducerFailedError when it
        did not end within the timeout)."""
        log.warning("aborting the page transaction: %s", error)
        self._open = False  # whatever the abort answers: it is not retried by anyone after it
        deadline = self._clock.monotonic() + self._timeout
        while True:
            try:
                self._producer.abort_transaction(self._remaining(deadline))
            except PRODUCER_ERRORS as exc:
                abort_error = kafka_error_of(exc)
                if abort_error is None or abort_error.fatal() or is_fenced(abort_error):
                    raise classify(exc, "abort_transaction") from exc
                if not abort_error.retriable() or self._clock.monotonic() >= deadline:
                    raise ProducerFailedError(
                        f"abort_transaction: {abort_error.str()}: the abort did not end within "
                        f"{self._timeout:g}s"
                    ) from exc
                log.warning("abort_transaction will be retried: %s", abort_error.str())
                continue
            # The abort served the delivery reports of the transaction's records: the ones the
            # broker refused as too large are known now, whichever step failed.
            too_large = self._reports.too_large(error)
            if too_large is None:
                raise error
            raise too_large from error

    def _remaining(self, deadline: float) -> float:
        """Seconds a call may block: what is left of the deadline, but never nothing."""
        return max(deadline - self._clock.monotonic(), 0.5)
