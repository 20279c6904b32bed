"""Several pages in one transaction while a backlog drains (`connector.poller.leading`,
`TransactionSpan`): every item still published once and in order, a crash or an abort between
pages of one transaction publishes none of it and moves no cursor, and a span never waits for a
page longer than its time (fakes at the poller's seams)."""

from __future__ import annotations

import collections
import threading
from collections.abc import Callable, Mapping

import pytest
from confluent_kafka import KafkaError, KafkaException

from connector.contract.cursor import initial_cursor
from connector.poller.commits import OpenTransaction
from connector.poller.publishing import TransactionSpan
from connector.poller.scan import main_scan
from connector.toloka.models import ItemPage
from testkit.clocks import FakeClock
from testkit.waiting import wait_for
from tests.unit.poller_fakes import T0, Crash, FakeApi, FakeProducer, FakeStateStore, finished_item
from tests.unit.test_poller_loop import Harness

PAGES = 10
PAGE_SIZE = 3
SPAN = 0.5


def backlog(h: Harness) -> list[str]:
    ids = [f"i{n:02}" for n in range(PAGES * PAGE_SIZE)]
    for n, item_id in enumerate(ids):
        h.api.add(finished_item(item_id, T0 - 100 + n))
    return ids


class ResultTransactions:
    """Counts the transactions that commit results."""

    def __init__(self, h: Harness) -> None:
        self.h = h
        self.count = 0

    def __call__(self, producer: FakeProducer) -> None:
        original = producer.commit_transaction

        def commit(timeout: float) -> None:
            with self.h.kafka.lock:
                results = any(r.status == "open" and r.topic == "out" for r in self.h.kafka.records)
            original(timeout)
            self.count += results

        producer.commit_transaction = commit  # type: ignore[method-assign]


def test_a_backlog_shares_transactions_and_every_item_is_published_once_in_order() -> None:
    h = Harness(page_size=PAGE_SIZE, transaction_span_seconds=SPAN)
    ids = backlog(h)
    transactions = ResultTransactions(h)
    h.run_until(20, h.loop(configure=transactions))
    assert h.published() == ids
    state = FakeStateStore(h.kafka).read()
    assert state.cursor is not None
    assert state.cursor.after_id == ids[-1]
    assert 1 <= transactions.count < PAGES


def test_on_a_broker_without_atomic_transactions_each_page_has_its_own() -> None:
    h = Harness(transactional=False, page_size=PAGE_SIZE, transaction_span_seconds=SPAN)
    ids = backlog(h)
    transactions = ResultTransactions(h)
    h.run_until(20, h.loop(configure=transactions))
    assert h.published() == ids
    assert transactions.count == PAGES


def test_a_crash_between_pages_of_one_transaction_publishes_none_of_it_and_repeats_nothing() -> (
    None
):
    h = Harness(page_size=PAGE_SIZE, transaction_span_seconds=SPAN)
    ids = backlog(h)
    crashed_after: list[int] = []
    crash_at_the_second_page = raise_at_the_second_page(h, Crash(), crashed_after)

    with pytest.raises(Crash):
        h.run_until(60, h.loop("A", configure=crash_at_the_second_page))
    assert crashed_after, "the crash came"
    assert crashed_after[0] > PAGE_SIZE, "a page was in the open transaction"
    assert h.published() == [], "nothing of the open transaction is visible"
    h.run_until(120, h.loop("B"))
    assert h.published() == ids, "the restart publishes each item once, in order"


class Abortable(KafkaException):
    def __init__(self) -> None:
        super().__init__(KafkaError(KafkaError._STATE, "injected", txn_requires_abort=True))


def test_an_aborted_span_puts_the_state_back_and_its_pages_are_listed_again() -> None:
    """Without the state put back, the aborted pages' items would count as published: lost."""
    h = Harness(page_size=PAGE_SIZE, transaction_span_seconds=SPAN)
    ids = backlog(h)

    def abort_the_first_page_commit(producer: FakeProducer) -> None:
        original = producer.commit_transaction
        commits = 0

        def commit(timeout: float) -> None:
            nonlocal commits
            commits += 1
            if commits == 2:  # the take-over's was the first
                with h.kafka.lock:
                    open_results = [r for r in h.kafka.records if r.status == "open"
                                    and r.topic == "out"]  # fmt: skip
                assert len(open_results) > PAGE_SIZE, "several pages in the transaction"
                raise Abortable
            original(timeout)

        producer.commit_transaction = commit  # type: ignore[method-assign]

    h.run_until(60, h.loop("A", configure=abort_the_first_page_commit))
    assert h.published() == ids
    assert h.metric("toloka_connector_transactions_total", {"outcome": "aborted"}) == 1
    # The page-size histogram counts what was listed and committed: the aborted span's pages,
    # listed and committed again, were counted twice.
    assert h.metric("toloka_connector_poll_page_items_sum") == len(ids)


class SecondPageWaitsForTheFirst(FakeApi):
    """The second page's listing answers only once the first page is visible: a span that
    waited for it longer than its time would commit nothing until the test gives up."""

    def __init__(self, clock: FakeClock, visible: threading.Event) -> None:
        super().__init__(clock)
        self.visible = visible
        self.first_was_visible: bool | None = None

    def list_items(
        self,
        *,
        sort: str = "finished",
        after_id: str | None = None,
        limit: int = 100,
        filters: Mapping[str, str] | None = None,
    ) -> ItemPage:
        if after_id == f"i{PAGE_SIZE - 1:02}" and self.first_was_visible is None:
            wait_for(self.visible.is_set, "the first page published", timeout=10)
            self.first_was_visible = True
        return super().list_items(sort=sort, after_id=after_id, limit=limit, filters=filters)


def test_a_span_waits_for_the_next_page_no_longer_than_its_time() -> None:
    clock = FakeClock()
    visible = threading.Event()
    api = SecondPageWaitsForTheFirst(clock, visible)
    h = Harness(clock=clock, api=api, page_size=PAGE_SIZE, transaction_span_seconds=0.2)
    ids = backlog(h)

    def tell_when_published(producer: FakeProducer) -> None:
        original = producer.commit_transaction

        def commit(timeout: float) -> None:
            original(timeout)
            if h.published():
                visible.set()

        producer.commit_transaction = commit  # type: ignore[method-assign]

    h.run_until(20, h.loop(configure=tell_when_published))
    assert api.first_was_visible
    assert collections.Counter(h.published()) == collections.Counter(ids)


@pytest.mark.parametrize(
    ("records", "value_bytes", "seconds_later", "room"),
    [(0, 0, 0.0, True), (0, 0, 1.0, False), (10, 0, 0.0, False), (0, 100, 0.0, False)],
)
def test_a_span_has_room_within_its_time_records_and_bytes(
    records: int, value_bytes: int, seconds_later: float, room: bool
) -> None:
    span = TransactionSpan(1.0, records=10, value_bytes=100)
    cursor = initial_cursor("proj", "earliest", now=T0, late_window_seconds=0, holder="A")
    txn = OpenTransaction(main_scan(T0), cursor, {}, opened_at=5.0)
    txn.records, txn.value_bytes = records, value_bytes
    assert span.has_room(txn, 5.0 + seconds_later) is room


class BugError(Exception):
    """Not a PublishError: what a bug in a page's planning or records raises."""


def test_a_failure_other_than_kafkas_inside_a_span_aborts_its_transaction() -> None:
    """A failure between pages of one transaction that is not Kafka's (a bug) ends the role; its
    transaction used to stay open (holding read_committed consumers back for the transaction
    timeout, and committable by whatever came next on that producer)."""
    h = Harness(page_size=PAGE_SIZE, transaction_span_seconds=SPAN)
    backlog(h)
    failed: list[int] = []
    fail_at_the_second_page = raise_at_the_second_page(h, BugError("injected"), failed)

    with pytest.raises(BugError):
        h.run_until(60, h.loop("A", configure=fail_at_the_second_page))
    assert failed, "the failure came"
    assert failed[0] > PAGE_SIZE, "a page was in the open transaction"
    with h.kafka.lock:
        still_open = [r for r in h.kafka.records if r.status == "open"]
    assert still_open == [], "the transaction was left open"
    assert h.published() == []
    assert h.metric("toloka_connector_transactions_total", {"outcome": "aborted"}) == 1


def test_a_failure_other_than_kafkas_in_a_single_page_transaction_is_counted_aborted() -> None:
    """The same failure in a transaction of one page (no span) aborted it without counting it:
    `transactions{aborted}` said nothing of a transaction a span's path counts."""
    h = Harness(page_size=PAGE_SIZE)
    backlog(h)

    def fail_at_the_first_result(producer: FakeProducer) -> None:
        original = producer.produce

        def produce(topic: str, **kwargs: object) -> None:
            if topic == "out":
                raise BugError("injected")
            original(topic, **kwargs)  # type: ignore[arg-type]

        producer.produce = produce  # type: ignore[method-assign]

    with pytest.raises(BugError):
        h.run_until(60, h.loop("A", configure=fail_at_the_first_result))
    with h.kafka.lock:
        still_open = [r for r in h.kafka.records if r.status == "open"]
    assert still_open == [], "the transaction was left open"
    assert h.published() == []
    assert h.metric("toloka_connector_transactions_total", {"outcome": "aborted"}) == 1


def raise_at_the_second_page(
    h: Harness, failure: BaseException, open_records: list[int]
) -> Callable[[FakeProducer], None]:
    """A producer configuration that raises `failure` once, when the second page of a
    transaction produces its first result (a page's results and cursor are in the open
    transaction), noting how many records were open then in `open_records`."""

    def configure(producer: FakeProducer) -> None:
        original_begin, original_produce = producer.begin_transaction, producer.produce
        cursors_in_transaction = 0

        def begin() -> None:
            nonlocal cursors_in_transaction
            cursors_in_transaction = 0
            original_begin()

        def produce(topic: str, **kwargs: object) -> None:
            nonlocal cursors_in_transaction
            if topic == "out" and cursors_in_transaction == 1 and not open_records:
                with h.kafka.lock:
                    open_records.append(len([r for r in h.kafka.records if r.status == "open"]))
                raise failure
            if topic == "state" and kwargs.get("key") == b"proj":
                cursors_in_transaction += 1
            original_produce(topic, **kwargs)  # type: ignore[arg-type]

        producer.begin_transaction = begin  # type: ignore[method-assign]
        producer.produce = produce  # type: ignore[method-assign]

    return configure
