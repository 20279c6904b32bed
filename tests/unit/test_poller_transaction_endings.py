"""How a page transaction ends when Kafka does not answer as hoped (issue 11, items 3-5), at the
producer seam, with the error sequences librdkafka 2.x gives (seen on real Kafka with the broker
frozen by SIGSTOP):

    commit_transaction  -> _TIMED_OUT "retry call to resume" (retriable)
    abort_transaction   -> _CONFLICT "Conflicting commit_transaction API call is already in
                           progress", and so does every begin_transaction after it, until
                           commit_transaction is called again
    flush on a producer fenced meanwhile -> SystemError chained to the KafkaException (a delivery
                           callback ran while the exception was set)
"""

from __future__ import annotations

from typing import Any

import pytest
from confluent_kafka import KafkaError, KafkaException

from connector.errors import (
    PageAbortedError,
    ProducerFailedError,
    ProducerFencedError,
    PublishError,
    RecordsTooLargeError,
)
from connector.poller.publisher import (
    TAKEOVER_STEP_FLOOR_SECONDS,
    OutputRecord,
    TransactionalPublisher,
)
from testkit.clocks import FakeClock
from tests.unit.poller_fakes import FakeKafka, FakeProducer

TIMEOUT = 5.0
RESULTS = [OutputRecord(b"k", b"{}", [("toloka-item-id", b"i")])]
STATE = [("proj", b"cursor")]


def timed_out() -> KafkaException:
    return KafkaException(
        KafkaError(
            KafkaError._TIMED_OUT,
            "Timed out waiting for operation to finish, retry call to resume",
            retriable=True,
        )
    )


def conflicting(call: str = "commit_transaction") -> KafkaException:
    return KafkaException(
        KafkaError(
            KafkaError._CONFLICT,
            f"Conflicting {call} API call is already in progress",
            retriable=True,
        )
    )


class SlowFaults:
    """Each faulting call of `name` blocks for `seconds` of the fake clock, as a call into a
    frozen broker blocks until its timeout."""

    def __init__(self, producer: FakeProducer, clock: FakeClock, name: str, seconds: float):
        original = getattr(producer, name)

        def call(timeout: float, *args: Any) -> Any:
            if producer.faults.get(name):
                clock.advance(min(seconds, timeout))
            return original(timeout, *args)

        setattr(producer, name, call)


def publisher(producer: FakeProducer, clock: FakeClock) -> TransactionalPublisher:
    pub = TransactionalPublisher(
        producer,
        output_topic="out",
        state_topic="state",
        dlq_topic="dlq",
        timeout_seconds=TIMEOUT,
        clock=clock,
    )
    pub.init()
    return pub


def test_a_commit_that_times_out_is_resumed_by_calling_it_again_never_aborted() -> None:
    clock = FakeClock()
    producer = FakeProducer(FakeKafka(), "tid")
    producer.faults["commit_transaction"] = [timed_out()]
    SlowFaults(producer, clock, "commit_transaction", 2.0)
    publisher(producer, clock).commit_page(RESULTS, STATE)
    assert producer.calls.count("commit_transaction") == 2
    assert "abort_transaction" not in producer.calls
    assert all(record.status == "committed" for record in producer.kafka.records)


def test_a_commit_that_keeps_timing_out_replaces_the_producer_instead_of_aborting() -> None:
    """Today: an abort refused as conflicting, then every begin refused the same way (a wedge)."""
    clock = FakeClock()
    producer = FakeProducer(FakeKafka(), "tid")
    producer.faults["commit_transaction"] = [timed_out() for _ in range(10)]
    producer.faults["abort_transaction"] = [conflicting() for _ in range(10)]
    SlowFaults(producer, clock, "commit_transaction", TIMEOUT)
    with pytest.raises(ProducerFailedError, match="outcome is unknown"):
        publisher(producer, clock).commit_page(RESULTS, STATE)
    assert "abort_transaction" not in producer.calls


def test_a_commit_woken_from_a_freeze_past_its_deadline_asks_the_broker_once_more() -> None:
    """A leader frozen (SIGSTOP) inside commit_transaction wakes long past the deadline: it
    must hear that a newer leader fenced it (step down), not call the outcome unknown and claim
    the transactional id anew, which fences the new leader (seen in the failover test once the
    transaction timeout became half the leader timeout)."""
    clock = FakeClock()
    producer = FakeProducer(FakeKafka(), "tid")
    fenced = KafkaException(
        KafkaError(KafkaError._FENCED, "This instance has been fenced by a newer instance")
    )
    producer.faults["commit_transaction"] = [timed_out(), fenced]
    original = producer.commit_transaction

    def frozen_once(timeout: float) -> None:
        if len(producer.faults["commit_transaction"]) == 2:
            clock.advance(timeout + 30)  # the process did not run for 30 s past the bound
        original(timeout)

    producer.commit_transaction = frozen_once  # type: ignore[method-assign]
    with pytest.raises(ProducerFencedError):
        publisher(producer, clock).commit_page(RESULTS, STATE)


def test_an_abort_that_keeps_timing_out_replaces_the_producer() -> None:
    clock = FakeClock()
    producer = FakeProducer(FakeKafka(), "tid")
    producer.faults["flush"] = [
        KafkaException(KafkaError(KafkaError._STATE, "x", txn_requires_abort=True))
    ]
    producer.faults["abort_transaction"] = [timed_out() for _ in range(10)]
    SlowFaults(producer, clock, "abort_transaction", TIMEOUT / 2)
    with pytest.raises(ProducerFailedError, match="abort did not end"):
        publisher(producer, clock).commit_page(RESULTS, STATE)
    assert producer.calls.count("abort_transaction") >= 2, "retried while there was time"


def test_an_abort_that_timed_out_once_is_resumed() -> None:
    clock = FakeClock()
    producer = FakeProducer(FakeKafka(), "tid")
    producer.faults["flush"] = [
        KafkaException(KafkaError(KafkaError._STATE, "x", txn_requires_abort=True))
    ]
    producer.faults["abort_transaction"] = [timed_out()]
    with pytest.raises(PageAbortedError):
        publisher(producer, clock).commit_page(RESULTS, STATE)
    assert producer.calls.count("abort_transaction") == 2
    assert all(record.status == "aborted" for record in producer.kafka.records)


def test_a_begin_refused_as_conflicting_replaces_the_producer() -> None:
    producer = FakeProducer(FakeKafka(), "tid")
    producer.faults["begin_transaction"] = [conflicting()]
    with pytest.raises(ProducerFailedError):
        publisher(producer, FakeClock()).commit_page(RESULTS, STATE)
    assert "abort_transaction" not in producer.calls


def system_error_from(cause: BaseException | None) -> SystemError:
    error = SystemError(
        "<method 'append' of 'list' objects> returned a result with an exception set"
    )
    error.__cause__ = cause
    return error


@pytest.mark.parametrize(
    ("raised", "expected"),
    [
        (system_error_from(KafkaException(KafkaError(KafkaError._FENCED, "fenced", fatal=True))),
         ProducerFencedError),
        (system_error_from(None), ProducerFailedError),
    ],
)  # fmt: skip
def test_a_system_error_out_of_flush_is_fencing_or_a_failed_producer_never_a_crash(
    raised: SystemError, expected: type[Exception]
) -> None:
    producer = FakeProducer(FakeKafka(), "tid")
    producer.faults["flush"] = [raised]
    with pytest.raises(expected):
        publisher(producer, FakeClock()).commit_page(RESULTS, STATE)


def test_a_local_queue_that_stays_full_aborts_the_page() -> None:
    clock = FakeClock()
    producer = FakeProducer(FakeKafka(), "tid")
    producer.faults["produce"] = [BufferError("Local: Queue full") for _ in range(10_000)]
    original_poll = producer.poll

    def poll(timeout: float) -> int:
        clock.advance(timeout)  # serving delivery reports takes time
        return original_poll(timeout)

    producer.poll = poll  # type: ignore[method-assign]
    with pytest.raises(PageAbortedError, match="queue stayed full"):
        publisher(producer, clock).commit_page(RESULTS, STATE)
    assert producer.calls[-1] == "abort_transaction"


def test_a_record_librdkafka_refuses_as_too_large_is_named_and_nothing_is_committed() -> None:
    producer = FakeProducer(FakeKafka(), "tid")
    big = OutputRecord(b"big", b"x" * 10, [("toloka-item-id", b"big")])
    producer.faults["produce"] = [
        KafkaException(KafkaError(KafkaError.MSG_SIZE_TOO_LARGE, "Message size too large"))
    ]
    with pytest.raises(RecordsTooLargeError) as raised:
        publisher(producer, FakeClock()).commit_page([big, *RESULTS], STATE)
    (refusal,) = raised.value.refused
    assert refusal.record is big
    assert refusal.topic == "out"
    assert not refusal.by_broker
    assert producer.calls[-1] == "abort_transaction"
    assert producer.kafka.visible("state") == []


def test_dead_letters_go_to_the_dead_letter_topic_in_the_same_transaction() -> None:
    producer = FakeProducer(FakeKafka(), "tid")
    letter = OutputRecord(b"k2", b"{}", [("error-reason", b"result_too_large")])
    publisher(producer, FakeClock()).commit_page(RESULTS, STATE, [letter])
    topics = [(record.topic, record.status) for record in producer.kafka.records]
    assert topics == [("out", "committed"), ("dlq", "committed"), ("state", "committed")]


def test_a_claim_that_times_out_is_resumed_on_the_same_producer_past_a_short_timeout() -> None:
    """init_transactions waits for the coordinator to abort the previous holder's transaction.
    Given up at a short transaction timeout (1.5 s), each take-over started over with a new
    producer and failed the same way, for minutes, on a loaded broker."""
    clock = FakeClock()
    producer = FakeProducer(FakeKafka(), "tid")
    producer.faults["init_transactions"] = [timed_out() for _ in range(4)]
    SlowFaults(producer, clock, "init_transactions", 1.5)
    TransactionalPublisher(
        producer, output_topic="out", state_topic="state", timeout_seconds=1.5, clock=clock
    ).init()
    assert producer.calls.count("init_transactions") == 5


def test_a_claim_that_never_ends_fails_at_the_take_over_step_bound() -> None:
    clock = FakeClock()
    producer = FakeProducer(FakeKafka(), "tid")
    producer.faults["init_transactions"] = [timed_out() for _ in range(100)]
    SlowFaults(producer, clock, "init_transactions", 1.5)
    pub = TransactionalPublisher(
        producer, output_topic="out", state_topic="state", timeout_seconds=1.5, clock=clock
    )
    with pytest.raises(PublishError, match="init_transactions"):
        pub.init()
    assert clock.monotonic() >= TAKEOVER_STEP_FLOOR_SECONDS
    assert producer.calls.count("init_transactions") < 100
