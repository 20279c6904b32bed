"""The poller loop driven by fakes: ties, unfinished items, late items, restarts, Kafka errors."""

from __future__ import annotations

import collections
import logging
from collections.abc import Callable
from typing import Any

import pytest
from confluent_kafka import KafkaError, KafkaException
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from connector.errors import AuthenticationError, ServerError
from connector.lifecycle import Heartbeat
from connector.metrics import Metrics
from connector.outstanding import OutstandingItems
from connector.poller.leadership import Standing
from connector.poller.loop import PollerLoop
from connector.poller.state import StateStore
from testkit.clocks import FakeClock
from tests.unit.poller_fakes import (
    RESPONSE_LIMIT_BYTES,
    T0,
    Crash,
    FakeApi,
    FakeKafka,
    FakeProducer,
    FakeStateStore,
    finished_item,
    poller_settings,
    producer_factory,
)


class Harness:
    def __init__(
        self,
        *,
        transactional: bool = True,
        clock: FakeClock | None = None,
        api: FakeApi | None = None,
        **overrides: Any,
    ) -> None:
        self.clock = clock or FakeClock()
        self.api = api or FakeApi(self.clock)
        self.kafka = FakeKafka(transactional=transactional)
        self.settings = poller_settings(**overrides)
        self.producers: list[FakeProducer] = []
        self.metrics = Metrics()

    def loop(
        self,
        instance: str = "A",
        configure: Callable[[FakeProducer], None] | None = None,
        store: StateStore | None = None,
        outstanding: OutstandingItems | None = None,
    ) -> PollerLoop:
        return PollerLoop(
            self.settings,
            "proj",
            source=self.api,
            producer_factory=producer_factory(self.kafka, self.producers, configure),
            store=store or FakeStateStore(self.kafka, clock=self.clock),
            clock=self.clock,
            metrics=self.metrics,
            heartbeat=Heartbeat("poller", self.clock),
            instance_id=instance,
            outstanding=outstanding,
            response_limit_bytes=RESPONSE_LIMIT_BYTES,
        )

    def run_until(self, seconds_after_t0: float, loop: PollerLoop | None = None) -> PollerLoop:
        loop = loop or self.loop()
        self.clock.stop.clear()
        self.clock.stop_at = T0 + seconds_after_t0
        loop.run(self.clock.stop)
        return loop

    def published(self) -> list[str]:
        return self.kafka.published_ids("out")

    def metric(self, name: str, labels: dict[str, str] | None = None) -> float:
        value = self.metrics.sample(name, labels or {})
        return 0.0 if value is None else value


def test_ties_across_page_boundaries_are_all_published_once() -> None:
    h = Harness(page_size=2)
    for item_id in "abcdefg":
        h.api.add(finished_item(item_id, T0 - 50))
    h.api.add(finished_item("z", T0 - 40))
    h.run_until(20)
    assert h.published() == [*"abcdefg", "z"]


def test_every_terminal_status_is_published_and_counted() -> None:
    h = Harness()
    for n, status in enumerate(["COMPLETED", "ERROR", "CANCELLED", "SOMETHING_NEW"]):
        h.api.add(finished_item(f"i{n}", T0 - 50 + n, status=status))
    h.run_until(10)
    assert h.published() == ["i0", "i1", "i2", "i3"]
    for status in ("COMPLETED", "ERROR", "CANCELLED", "OTHER"):
        assert h.metric("toloka_connector_results_published_total", {"status": status}) == 1


@pytest.mark.parametrize(
    ("unfinished", "honour_filters"), [("last", False), ("last", True), ("first", True)]
)
def test_unfinished_items_are_never_published_nor_the_cursor(
    unfinished: str, honour_filters: bool
) -> None:
    h = Harness(page_size=2)
    h.api.unfinished, h.api.honour_filters = unfinished, honour_filters
    h.api.add(finished_item("p1", None))
    h.api.add(finished_item("f1", T0 - 20))
    h.api.add(finished_item("p2", None))
    h.api.add(finished_item("f2", T0 - 10))
    loop = h.run_until(20)
    assert h.published() == ["f1", "f2"]
    assert loop is not None
    state = FakeStateStore(h.kafka).read()
    assert state.cursor is not None
    assert state.cursor.after_id == "f2"


def test_a_late_visible_item_is_published_exactly_once() -> None:
    h = Harness()
    h.api.add(finished_item("on-time", T0 + 5), visible_at=T0 + 5)
    h.api.add(finished_item("late", T0 + 4), visible_at=T0 + 4 + 25)  # within the 30 s window
    h.run_until(120)
    assert sorted(h.published()) == ["late", "on-time"]
    assert h.metric("toloka_connector_late_items_total") == 1


def test_latest_start_skips_what_finished_before() -> None:
    h = Harness(start_from="latest")
    h.api.add(finished_item("before", T0 - 1))
    h.api.add(finished_item("before-late", T0 - 1), visible_at=T0 + 5)
    h.api.add(finished_item("after", T0 + 2), visible_at=T0 + 2)
    h.run_until(60)
    assert h.published() == ["after"]


def test_the_late_window_is_off_at_zero_and_tracks_nothing() -> None:
    h = Harness(late_window_seconds=0)
    for n in range(10):
        h.api.add(finished_item(f"i{n}", T0 + n), visible_at=T0 + n)
    h.run_until(30)
    assert h.published() == [f"i{n}" for n in range(10)]
    assert h.metric("toloka_connector_late_window_tracked_items") <= 1


def test_idle_leader_writes_keepalives_within_a_quarter_of_the_timeout() -> None:
    h = Harness(idle_poll_interval_seconds=30.0, leader_timeout_seconds=8.0)
    h.run_until(60)
    cursors = [r for r in h.kafka.visible("state") if r.key == b"proj"]
    assert len(cursors) >= 60 / 2
    store = FakeStateStore(h.kafka)
    assert store.read().cursor is not None


def test_listing_errors_are_retried() -> None:
    h = Harness()
    h.api.add(finished_item("a", T0 - 5))
    h.api.failures = [ServerError("boom", status=503), ServerError("again", status=502)]
    h.run_until(10)
    assert h.published() == ["a"]


def test_a_key_refused_after_start_up_is_waited_out_and_said_once_each_way(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Start-up proved the key (a refusal there is fatal); one refused later (rotated,
    revoked, a WAF) is waited out: exiting would restart into the same refusal."""
    caplog.set_level(logging.INFO)
    h = Harness()
    h.api.add(finished_item("a", T0 - 5))
    loop = h.run_until(10)
    assert h.published() == ["a"]
    h.api.failures = [AuthenticationError("revoked", status=401) for _ in range(5)]
    h.api.failures.append(AuthenticationError("forbidden", status=403))
    h.api.add(finished_item("b", T0 + 12), visible_at=T0 + 12)
    h.run_until(12, loop)
    assert not loop.key.up
    assert "the API refuses the key (401/403)" in loop.key.reason
    h.run_until(200, loop)
    assert loop.key.up
    assert h.published() == ["a", "b"]
    said = [r.getMessage() for r in caplog.records if "toloka-api-key" in r.getMessage()]
    assert len(said) == 2, f"not once when the refusal began and once when it ended: {said}"


def abortable() -> KafkaException:
    return KafkaException(KafkaError(KafkaError._STATE, "abortable", txn_requires_abort=True))


def test_an_aborted_page_is_listed_and_published_again() -> None:
    h = Harness(transactional=True)
    for n in range(5):
        h.api.add(finished_item(f"i{n}", T0 - 10 + n))

    def abort_the_first_page(producer: FakeProducer) -> None:
        original = producer.commit_transaction
        commits = 0

        def commit(timeout: float) -> None:
            nonlocal commits
            commits += 1
            if commits == 2:  # the first page (the first commit is the take-over keepalive)
                raise abortable()
            original(timeout)

        producer.commit_transaction = commit  # type: ignore[method-assign]

    h.run_until(20, h.loop(configure=abort_the_first_page))
    assert h.published() == [f"i{n}" for n in range(5)]
    assert h.metric("toloka_connector_transactions_total", {"outcome": "aborted"}) == 1
    assert len(h.producers) == 1, "an abortable error keeps the producer"


def test_failing_transactions_make_the_poller_not_ready_until_one_succeeds() -> None:
    h = Harness(transactional=True)
    h.api.add(finished_item("i0", T0 - 10))
    failing = [True]

    def abort_while_failing(producer: FakeProducer) -> None:
        original = producer.commit_transaction
        commits = 0

        def commit(timeout: float) -> None:
            nonlocal commits
            commits += 1
            if failing[0] and commits > 1:  # the take-over succeeds, every later commit fails
                raise abortable()
            original(timeout)

        producer.commit_transaction = commit  # type: ignore[method-assign]

    loop = h.loop(configure=abort_while_failing)
    h.run_until(3, loop)
    assert h.published() == []
    assert loop.status.kafka_problem is not None
    assert loop.status.kafka_problem.startswith("transaction failed")
    failing[0] = False
    h.run_until(15, loop)
    assert h.published() == ["i0"]
    assert loop.status.kafka_problem is None


def test_a_fatal_error_after_an_unknown_commit_rereads_the_state_without_repeats() -> None:
    h = Harness(transactional=True)
    for n in range(6):
        h.api.add(finished_item(f"i{n}", T0 - 10 + n))
    failed: list[bool] = []

    def commit_then_fail(producer: FakeProducer) -> None:
        original = producer.commit_transaction

        def commit(timeout: float) -> None:
            original(timeout)  # committed on the broker, but the answer is lost
            if len(producer.calls) > 8 and not failed:
                failed.append(True)
                raise KafkaException(KafkaError(KafkaError._INCONSISTENT, "lost", fatal=True))

        producer.commit_transaction = commit  # type: ignore[method-assign]

    h.run_until(20, h.loop(configure=commit_then_fail))
    assert failed
    assert h.published() == [f"i{n}" for n in range(6)]
    assert len(h.producers) == 2, "the producer was rebuilt once"


@pytest.mark.parametrize("transactional", [True, False])
def test_a_crash_mid_page_then_restart(transactional: bool) -> None:
    """kill -9 inside a transaction: with transactions nothing repeats; on the mock (no
    transactions) the crashed page may repeat but nothing is lost (flush before cursor)."""
    h = Harness(transactional=transactional, page_size=4)
    for n in range(20):
        h.api.add(finished_item(f"i{n:02}", T0 - 30 + n))
    produced = 0

    def crash_mid_page(producer: FakeProducer) -> None:
        original = producer.produce

        def produce(topic: str, **kwargs: Any) -> None:
            nonlocal produced
            produced += 1
            if produced == 11 and topic == "state":
                producer.flush(1)  # the results reached the broker, the cursor did not
                raise Crash
            if produced == 11 and topic == "out":
                original(topic, **kwargs)
                producer.flush(1)
                raise Crash
            original(topic, **kwargs)

        producer.produce = produce  # type: ignore[method-assign]

    with pytest.raises(Crash):
        h.run_until(60, h.loop("A", configure=crash_mid_page))
    h.run_until(120, h.loop("B"))
    published = h.published()
    counts = collections.Counter(published)
    assert set(counts) == {f"i{n:02}" for n in range(20)}, "nothing lost"
    repeats = sum(c - 1 for c in counts.values())
    if transactional:
        assert repeats == 0
    else:
        assert repeats <= 4, "at most the page open at the crash"


def test_a_fenced_poller_steps_down_instead_of_crashing() -> None:
    h = Harness(transactional=True)
    for n in range(3):
        h.api.add(finished_item(f"i{n}", T0 - 10 + n))
    roles: list[Standing] = []
    loop = h.loop("A")
    original = loop._set_standing

    def record(role: Standing) -> None:
        roles.append(role)
        original(role)

    loop._set_standing = record  # type: ignore[method-assign]
    h.run_until(5, loop)
    FakeProducer(h.kafka, "toloka-connector-poller-proj").init_transactions(1)  # a newer poller
    h.api.add(finished_item("after-fencing", T0 + 6), visible_at=T0 + 6)
    h.run_until(40, loop)
    assert Standing.STANDBY in roles[roles.index(Standing.LEADER) + 1 :], "stepped down"
    assert h.published() == ["i0", "i1", "i2", "after-fencing"]
    assert roles[-1] is Standing.STANDBY


def test_end_to_end_time_and_outstanding_items_are_measured() -> None:
    h = Harness()
    outstanding = OutstandingItems()
    outstanding.add([("a", T0 - 100), ("other", T0)])
    h.api.add(finished_item("a", T0 - 5))
    h.run_until(5, h.loop(outstanding=outstanding))
    assert h.metric("toloka_connector_end_to_end_seconds_count") == 1
    assert h.metric("toloka_connector_items_outstanding") == 1
    assert h.metric("toloka_connector_item_processing_seconds_count") == 1


# --- the property: every finished item visible within the window is published exactly once ---

item_specs = st.lists(
    st.tuples(
        st.integers(0, 60),  # finished_at offset (few values: many ties)
        st.one_of(st.none(), st.integers(0, 30), st.integers(31, 60)),  # visibility delay
        st.sampled_from(["COMPLETED", "ERROR", "CANCELLED", "PROCESSING"]),
    ),
    max_size=40,
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    specs=item_specs,
    page_size=st.integers(1, 5),
    crash_at=st.one_of(st.none(), st.integers(1, 60)),
    transactional=st.booleans(),
)
def test_every_finished_item_is_published_once(
    specs: list[tuple[int, int | None, str]],
    page_size: int,
    crash_at: int | None,
    transactional: bool,
) -> None:
    h = Harness(transactional=transactional, page_size=page_size, late_window_seconds=30)
    h.api.unfinished = "last"
    in_window: set[str] = set()
    beyond: set[str] = set()
    for n, (offset, delay, status) in enumerate(specs):
        item_id = f"i{n}"
        finished = None if status == "PROCESSING" else T0 + offset
        visible = T0 + offset + (delay or 0)
        h.api.add(finished_item(item_id, finished, status=status), visible_at=visible)
        if finished is not None:
            (beyond if (delay or 0) > 30 else in_window).add(item_id)
    calls = 0

    def crash(producer: FakeProducer) -> None:
        original = producer.produce

        def produce(topic: str, **kwargs: Any) -> None:
            nonlocal calls
            calls += 1
            original(topic, **kwargs)
            if calls == crash_at:
                raise Crash

        producer.produce = produce  # type: ignore[method-assign]

    try:
        h.run_until(200, h.loop("A", configure=crash))
    except Crash:
        h.run_until(200, h.loop("B"))
    counts = collections.Counter(h.published())
    assert in_window <= set(counts), "a finished item visible within the window was lost"
    assert set(counts) <= in_window | beyond, "only finished items are published"
    repeats = {i: c for i, c in counts.items() if c > 1}
    if transactional or crash_at is None:
        assert not repeats
    else:
        assert sum(c - 1 for c in repeats.values()) <= page_size
