"""Output records per the contract, and the page transaction's order and error handling."""

from __future__ import annotations

import json
from typing import Any

import orjson
import pytest
from confluent_kafka import KafkaError, KafkaException

from connector.clock import SystemClock
from connector.errors import (
    PageAbortedError,
    ProducerFailedError,
    ProducerFencedError,
    RecordsTooLargeError,
    StateTooLargeError,
)
from connector.kafka.limits import record_size
from connector.metrics import Metrics
from connector.poller.encoded_output import EncodingProducer
from connector.poller.publisher import (
    OutputRecord,
    TransactionalPublisher,
    output_record,
    record_key,
)
from connector.toloka.models import Item
from tests.unit.poller_fakes import T0, FakeKafka, FakeProducer, finished_item


def item(**input_data: object) -> Item:
    raw = finished_item("item-1", T0)
    raw["input_data"] = input_data
    return Item.from_api(raw)


@pytest.mark.parametrize(
    ("input_data", "key"),
    [
        ({"id": "abc"}, "abc"),
        ({"id": 7}, "7"),
        ({"id": 1.5}, "1.5"),
        ({"id": True}, "true"),
        ({"id": None}, "item-1"),
        ({"text": "no id"}, "item-1"),
    ],
)
def test_key_is_the_key_field_as_a_string_else_the_item_id(
    input_data: dict[str, object], key: str
) -> None:
    assert record_key(item(**input_data), "id") == key


def test_key_field_is_configurable() -> None:
    assert record_key(item(id="a", url="u"), "url") == "u"


def test_value_is_the_item_exactly_as_the_api_sent_it() -> None:
    raw = finished_item("item-9", T0, status="ERROR", errors=[{"code": "X"}], future_field=[1])
    raw["finished_at"] = "2022-01-22T07:44:57.035"  # the API's own precision stays as sent
    record, _ = output_record(Item.from_api(raw), key_field="id", app_project_id="proj")
    assert orjson.loads(record.value) == raw
    assert b'"2022-01-22T07:44:57.035"' in record.value


def test_an_item_nested_deeper_than_orjson_writes_is_still_published() -> None:
    deep: object = "bottom"
    for _ in range(600):  # orjson reads 1,024 levels but writes only 254
        deep = [deep]
    raw = finished_item("item-deep", T0)
    raw["input_data"] = {"id": deep}
    record, _ = output_record(Item.from_api(raw), key_field="id", app_project_id="proj")
    assert orjson.loads(record.value) == raw
    assert json.loads(record.key) == deep


def test_headers_name_item_status_and_project() -> None:
    raw = finished_item("item-9", T0, status="CANCELLED")
    del raw["app_project_id"]
    record, _ = output_record(Item.from_api(raw), key_field="id", app_project_id="proj-x")
    assert record.headers == [
        ("toloka-item-id", b"item-9"),
        ("toloka-status", b"CANCELLED"),
        ("toloka-app-project-id", b"proj-x"),
    ]


@pytest.mark.parametrize(
    ("fields", "key_field"),
    [
        ({}, "id"),
        ({"status": None, "app_project_id": None}, "id"),  # empty status, the poller's project
        ({"status": "COMPLETED", "input_data": {"id": "i", "k": "ключ ✓"}}, "k"),  # UTF-8
        ({"input_data": {"id": "i", "k": {"a": [1, True]}}, "output_data": {"t": "ü" * 300}}, "k"),
    ],
)
def test_the_size_returned_with_an_output_record_is_its_record_size(
    fields: dict[str, Any], key_field: str
) -> None:
    raw = {**finished_item("item-é", T0), **fields}
    record, size = output_record(Item.from_api(raw), key_field=key_field, app_project_id="prøj")
    assert size == record_size(record.key, record.value, record.headers)


def publisher(producer: FakeProducer) -> TransactionalPublisher:
    return TransactionalPublisher(
        producer, output_topic="out", state_topic="state", timeout_seconds=5, clock=SystemClock()
    )


RESULTS = [OutputRecord(b"k", b"{}", [("toloka-item-id", b"i")])]
STATE = [("proj", b"cursor")]


def test_on_the_mock_cluster_results_are_flushed_before_the_cursor_is_produced() -> None:
    """The mock's transactions are not atomic: a crash after the cursor record was sent must not
    leave it pointing past results that were never written."""
    producer = FakeProducer(FakeKafka(transactional=False), "tid")
    pub = publisher(producer)
    pub.init()
    pub.commit_page(RESULTS, STATE)
    assert producer.calls == [
        "init_transactions",
        "begin_transaction",
        "produce",
        "flush",
        "produce",
        "commit_transaction",
        "flush",
    ]
    assert [r.status for r in producer.kafka.records] == ["committed", "committed"]


def test_on_kafka_results_and_cursor_are_produced_together_and_the_commit_flushes_them() -> None:
    """One flush per transaction (the commit's), not two: on Kafka the results and the cursor
    become visible together or not at all."""
    producer = FakeProducer(FakeKafka(), "tid")
    pub = publisher(producer)
    pub.init()
    pub.commit_page(RESULTS, STATE)
    assert producer.calls == [
        "init_transactions",
        "begin_transaction",
        "produce",
        "produce",
        "commit_transaction",
        "flush",
    ]
    assert [r.status for r in producer.kafka.records] == ["committed", "committed"]


def test_a_failed_result_delivery_aborts_before_the_cursor_is_written() -> None:
    kafka = FakeKafka(transactional=False)  # the mock: nothing is undone by an abort
    producer = FakeProducer(kafka, "tid")
    producer.delivery_errors.append(KafkaError(KafkaError.REQUEST_TIMED_OUT))
    pub = publisher(producer)
    pub.init()
    with pytest.raises(PageAbortedError):
        pub.commit_page(RESULTS, STATE)
    assert kafka.visible("state") == []
    assert producer.calls[-1] == "abort_transaction"


@pytest.mark.parametrize("transactional", [True, False], ids=["kafka", "mock"])
def test_a_result_the_broker_refuses_as_too_large_is_named_and_nothing_commits(
    transactional: bool,
) -> None:
    """On Kafka the refusal comes back from the commit (which then fails): its delivery report
    is served by the abort, and still names the record."""
    kafka = FakeKafka(transactional=transactional)
    producer = FakeProducer(kafka, "tid")
    producer.delivery_errors.append(KafkaError(KafkaError.MSG_SIZE_TOO_LARGE))
    pub = publisher(producer)
    pub.init()
    with pytest.raises(RecordsTooLargeError) as raised:
        pub.commit_page(RESULTS, STATE)
    (refusal,) = raised.value.refused
    assert (refusal.topic, refusal.record, refusal.by_broker) == ("out", RESULTS[0], True)
    assert kafka.visible("state") == []
    assert kafka.visible("out") == []
    assert producer.calls[-1] == "abort_transaction"


@pytest.mark.parametrize("transactional", [True, False], ids=["kafka", "mock"])
def test_a_refusal_names_the_very_record_among_a_pages_results(transactional: bool) -> None:
    """One delivery callback serves the whole transaction: the refused record is found again
    by its key and headers (two results may share a key: the item id header tells them apart),
    and a wrapper that rewrote its value on the way out (an output format) still gets the
    record it was handed."""
    results = [
        OutputRecord(b"same-key", b'{"n":1}', [("toloka-item-id", b"a")]),
        OutputRecord(b"same-key", b'{"n":2}', [("toloka-item-id", b"b")]),
        OutputRecord(b"other", b'{"n":3}', [("toloka-item-id", b"c")]),
    ]
    kafka = FakeKafka(transactional=transactional)
    producer = FakeProducer(kafka, "tid")
    producer.delivery_errors += [None, KafkaError(KafkaError.MSG_SIZE_TOO_LARGE), None]
    pub = TransactionalPublisher(
        EncodingProducer(
            producer, lambda item: b"encoded", output_topic="out", dlq_topic="dlq",
            dlq_limit=lambda: 1_000_000, metrics=Metrics(),
        ),
        output_topic="out", state_topic="state", timeout_seconds=5, clock=SystemClock(),
    )  # fmt: skip
    pub.init()
    with pytest.raises(RecordsTooLargeError) as raised:
        pub.commit_page(results, STATE)
    (refusal,) = raised.value.refused
    assert (refusal.topic, refusal.by_broker) == ("out", True)
    assert refusal.record is results[1]


@pytest.mark.parametrize("transactional", [True, False], ids=["kafka", "mock"])
def test_a_state_record_the_broker_refuses_fails_the_page_without_naming_a_result(
    transactional: bool,
) -> None:
    """A refused state record is no result to dead-letter: the page fails as any delivery."""
    kafka = FakeKafka(transactional=transactional)
    producer = FakeProducer(kafka, "tid")
    producer.delivery_errors += [None] * len(RESULTS) + [KafkaError(KafkaError.MSG_SIZE_TOO_LARGE)]
    pub = publisher(producer)
    pub.init()
    with pytest.raises(PageAbortedError) as raised:
        pub.commit_page(RESULTS, STATE)
    assert not isinstance(raised.value, RecordsTooLargeError)
    assert kafka.visible("state") == []


@pytest.mark.parametrize("transactional", [True, False], ids=["kafka", "mock"])
def test_a_state_record_too_large_to_send_commits_nothing_and_names_the_settings(
    transactional: bool,
) -> None:
    """Before, it was dropped in silence and the results committed without their cursor: a
    take-over then published every one of them again."""
    kafka = FakeKafka(transactional=transactional)
    producer = FakeProducer(kafka, "tid")
    producer.max_bytes = max(len(r.value or b"") for r in RESULTS)
    large_state = [(key, b"x" * (producer.max_bytes + 1)) for key, _value in STATE]
    pub = publisher(producer)
    pub.init()
    with pytest.raises(StateTooLargeError, match="KAFKA_MESSAGE_MAX_BYTES"):
        pub.commit_page(RESULTS, large_state)
    # Aborted once: a second abort, refused by librdkafka (no transaction is open), was
    # logged as a transaction the next holder of the id must end.
    assert producer.calls.count("abort_transaction") == 1
    assert producer.calls[-1] == "abort_transaction"
    assert kafka.visible("state") == []
    if transactional:
        assert kafka.visible("out") == []


def test_a_failed_delivery_on_kafka_fails_the_commit() -> None:
    kafka = FakeKafka()
    producer = FakeProducer(kafka, "tid")
    producer.delivery_errors.append(KafkaError(KafkaError.REQUEST_TIMED_OUT))
    pub = publisher(producer)
    pub.init()
    with pytest.raises(PageAbortedError) as raised:
        pub.commit_page(RESULTS, STATE)
    assert not isinstance(raised.value, RecordsTooLargeError)
    assert kafka.visible("state") == kafka.visible("out") == []


def fault(code: int, **flags: bool) -> KafkaException:
    return KafkaException(KafkaError(code, "injected", **flags))


def test_a_failure_other_than_kafkas_in_a_page_transaction_aborts_it() -> None:
    """A bug while the page's records are produced (an encoder's, say) used to leave the
    transaction open: read_committed consumers held back until the transaction timeout, and
    the page's records committable by whatever came next on that producer."""
    kafka = FakeKafka()
    producer = FakeProducer(kafka, "tid")
    pub = publisher(producer)
    pub.init()
    produce = producer.produce

    def produce_failing_on_state(topic: str, **kwargs: Any) -> None:
        if topic == "state":
            raise ValueError("a bug")
        produce(topic, **kwargs)

    producer.produce = produce_failing_on_state  # type: ignore[method-assign]
    with pytest.raises(ValueError, match="a bug"):
        pub.commit_page(RESULTS, STATE)
    assert producer.calls[-1] == "abort_transaction"
    assert [r.status for r in kafka.records] == ["aborted"]


def test_such_a_failure_is_raised_even_when_its_abort_fails(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The failure ends the role (a bug is not retried); the transaction the abort could not
    end is ended by the next holder of the transactional id."""
    kafka = FakeKafka()
    producer = FakeProducer(kafka, "tid")
    pub = publisher(producer)
    pub.init()
    producer.faults["produce"] = [ValueError("a bug")]
    producer.faults["abort_transaction"] = [fault(KafkaError._FATAL, fatal=True)]
    with pytest.raises(ValueError, match="a bug"):
        pub.commit_page(RESULTS, STATE)
    assert any("could not be aborted" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize(
    ("error", "raised", "aborted"),
    [
        (fault(KafkaError._STATE, txn_requires_abort=True), PageAbortedError, True),
        (fault(KafkaError._FENCED, fatal=True), ProducerFencedError, False),
        (fault(KafkaError.PRODUCER_FENCED, fatal=True), ProducerFencedError, False),
        (
            fault(KafkaError.INVALID_PRODUCER_EPOCH, txn_requires_abort=True),
            ProducerFencedError,
            False,
        ),
        (fault(KafkaError._INCONSISTENT, fatal=True), ProducerFailedError, False),
    ],
)
def test_commit_errors_are_classified(
    error: KafkaException, raised: type[Exception], aborted: bool
) -> None:
    producer = FakeProducer(FakeKafka(), "tid")
    producer.faults["commit_transaction"] = [error]
    pub = publisher(producer)
    pub.init()
    with pytest.raises(raised):
        pub.commit_page(RESULTS, STATE)
    assert (producer.calls[-1] == "abort_transaction") is aborted


def test_a_retriable_commit_error_is_retried() -> None:
    producer = FakeProducer(FakeKafka(), "tid")
    producer.faults["commit_transaction"] = [fault(KafkaError._TIMED_OUT, retriable=True)]
    pub = publisher(producer)
    pub.init()
    pub.commit_page(RESULTS, STATE)
    assert producer.calls.count("commit_transaction") == 2
    assert all(r.status == "committed" for r in producer.kafka.records)


def test_a_fenced_abort_is_reported_as_fencing() -> None:
    producer = FakeProducer(FakeKafka(), "tid")
    producer.faults["commit_transaction"] = [fault(KafkaError._STATE, txn_requires_abort=True)]
    producer.faults["abort_transaction"] = [fault(KafkaError._FENCED, fatal=True)]
    pub = publisher(producer)
    pub.init()
    with pytest.raises(ProducerFencedError):
        pub.commit_page(RESULTS, STATE)
