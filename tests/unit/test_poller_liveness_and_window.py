"""The poller loop on fakes (issue 11): leader liveness while a listing is slow, look-back scans
during a backlog, and a wall clock that jumps."""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from typing import Any

import pytest

from connector.errors import ProducerFencedError
from connector.lifecycle import Heartbeat
from connector.metrics import Metrics
from connector.poller.keepalive import KeepalivesWhileListing
from connector.poller.leadership import Standing
from connector.poller.loop import PollerLoop
from connector.toloka.models import ItemPage
from testkit.clocks import FakeClock
from testkit.waiting import WaitTimeoutError, wait_for
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


def cursor_records(kafka: FakeKafka) -> int:
    return sum(1 for record in kafka.visible("state") if record.key == b"proj")


def loop_for(
    api: Any,
    kafka: FakeKafka,
    clock: FakeClock,
    metrics: Metrics,
    configure: Callable[[FakeProducer], None] | None = None,
    made: list[FakeProducer] | None = None,
    heartbeat: Heartbeat | None = None,
    **settings: Any,
) -> PollerLoop:
    return PollerLoop(
        poller_settings(**settings),
        "proj",
        source=api,
        producer_factory=producer_factory(kafka, [] if made is None else made, configure),
        store=FakeStateStore(kafka, clock=clock),
        clock=clock,
        metrics=metrics,
        heartbeat=heartbeat or Heartbeat("poller", clock),
        instance_id="A",
        response_limit_bytes=RESPONSE_LIMIT_BYTES,
    )


class SlowListing(FakeApi):
    """The `slow_call`-th listing takes `seconds` of the clock and returns only once `done()`
    (by default: a cursor record was written meanwhile), or after 10 s of real time. A callable
    `during` runs at the start of it."""

    def __init__(self, clock: FakeClock, kafka: FakeKafka, slow_call: int, seconds: float):
        super().__init__(clock)
        self.kafka = kafka
        self.slow_call = slow_call
        self.seconds = seconds
        self.during: Callable[[], None] | None = None
        self.done: Callable[[int], bool] = lambda before: cursor_records(kafka) > before
        self.done_while_listing = False

    def list_items(
        self,
        *,
        sort: str = "finished",
        after_id: str | None = None,
        limit: int = 100,
        filters: Mapping[str, str] | None = None,
    ) -> ItemPage:
        if self.calls + 1 == self.slow_call:
            before = cursor_records(self.kafka)
            if self.during is not None:
                self.during()
            self.clock.advance(self.seconds)
            # The fake API "taking its time" while the keepalive thread writes.
            try:
                wait_for(lambda: self.done(before), "a keepalive during the listing", timeout=10)
            except WaitTimeoutError:
                self.done_while_listing = False
            else:
                self.done_while_listing = True
        return super().list_items(sort=sort, after_id=after_id, limit=limit, filters=filters)


def test_a_listing_slower_than_the_leader_timeout_still_gets_keepalives() -> None:
    clock = FakeClock(stop_at=T0 + 30)
    kafka = FakeKafka()
    api = SlowListing(clock, kafka, slow_call=3, seconds=5.0)  # leader timeout: 0.8
    api.add(finished_item("a", T0 - 5))
    loop = loop_for(api, kafka, clock, Metrics(), leader_timeout_seconds=0.8)
    loop.run(clock.stop)
    assert api.done_while_listing, "a keepalive was written while the listing took its time"
    assert kafka.published_ids() == ["a"]


def test_a_keepalive_fenced_while_listing_makes_the_leader_step_down_not_crash() -> None:
    clock = FakeClock(stop_at=T0 + 30)
    kafka = FakeKafka()
    made: list[FakeProducer] = []
    api = SlowListing(clock, kafka, slow_call=3, seconds=5.0)
    attempts_at_fence = 0

    def fence() -> None:
        nonlocal attempts_at_fence
        attempts_at_fence = made[0].calls.count("begin_transaction")
        FakeProducer(kafka, "toloka-connector-poller-proj").init_transactions(1)  # a newer one

    api.during = fence
    api.done = lambda _before: made[0].calls.count("begin_transaction") > attempts_at_fence
    roles: list[Standing] = []
    loop = loop_for(api, kafka, clock, Metrics(), made=made, leader_timeout_seconds=0.8)
    original = loop._set_standing

    def record(role: Standing) -> None:
        roles.append(role)
        original(role)

    loop._set_standing = record  # type: ignore[method-assign]
    loop.run(clock.stop)  # returns at the end of the run, having raised nothing
    assert api.done_while_listing, "the keepalive written while listing found it fenced"
    first_lead = roles.index(Standing.LEADER)
    assert roles[first_lead + 1 : first_lead + 3] == [Standing.STANDBY, Standing.LEADER], (
        "stepped down, then took over again from the silent newer holder"
    )


def commits_take(clock: FakeClock, seconds: float) -> Callable[[FakeProducer], None]:
    def configure(producer: FakeProducer) -> None:
        original = producer.commit_transaction

        def commit(timeout: float) -> None:
            clock.advance(seconds)
            original(timeout)

        producer.commit_transaction = commit  # type: ignore[method-assign]

    return configure


def test_a_late_item_is_published_during_a_backlog_within_the_look_back_interval() -> None:
    """Items finish faster than the poller publishes them (a transaction of one item takes a
    second): it never catches up, and stays less than the window behind. An item that shows up
    40 s after it finished, long after the main scan passed it, must not wait for the backlog."""
    clock = FakeClock(stop_at=T0 + 100)
    api = FakeApi(clock)
    for n in range(125):
        finished = T0 + n * 0.8
        api.add(finished_item(f"i{n:03d}", finished), visible_at=finished)
    api.add(finished_item("late", T0 + 20.1), visible_at=T0 + 60)
    kafka = FakeKafka()
    metrics = Metrics()
    loop = loop_for(
        api, kafka, clock, metrics, commits_take(clock, 1.0), page_size=1,
        late_window_seconds=60, late_scan_interval_seconds=5, poll_interval_seconds=0.1,
        transaction_span_seconds=0,  # a transaction per item, each taking a second
    )  # fmt: skip
    loop.run(clock.stop)
    published = kafka.published_ids()
    assert "late" in published
    assert "i124" not in published, "the backlog is not through yet"
    assert metrics.sample("toloka_connector_late_items_total") == 1


class TrueTime:
    """The API's clock: it never jumps (it runs on the fake clock's monotonic time)."""

    def __init__(self, clock: FakeClock) -> None:
        self._clock = clock

    def time(self) -> float:
        return T0 + self._clock.monotonic() - 1000.0

    def advance(self, seconds: float) -> None:
        self._clock.advance(seconds)


def test_a_forward_step_of_the_wall_clock_does_not_disable_the_late_window() -> None:
    clock = FakeClock(stop_at=T0 + 3600 + 120)
    api = FakeApi(clock)
    api.clock = TrueTime(clock)  # type: ignore[assignment]
    api.add(finished_item("on-time", T0 + 5), visible_at=T0 + 5)
    # Behind the cursor ("on-time") once it shows up, 20 s late: within the 30 s window.
    api.add(finished_item("late", T0 + 4), visible_at=T0 + 4 + 20)
    stepped = False
    original = api.list_items

    def list_items(**kwargs: Any) -> ItemPage:
        nonlocal stepped
        if not stepped and api.clock.time() >= T0 + 10:
            clock.step_wall_clock(3600)  # NTP, or an operator: an hour ahead
            stepped = True
        return original(**kwargs)

    api.list_items = list_items  # type: ignore[method-assign]
    kafka = FakeKafka()
    loop_for(api, kafka, clock, Metrics(), late_window_seconds=30).run(clock.stop)
    assert stepped
    assert sorted(kafka.published_ids()) == ["late", "on-time"]


def test_a_take_over_lost_to_another_standby_leaves_a_ready_standby() -> None:
    """Two standbys see the leader gone at once; the one fenced while taking over stands by
    (it is doing its job: /readyz must not call it broken)."""
    clock = FakeClock(stop_at=T0 + 5)
    kafka = FakeKafka()
    rival_took_over = False

    def fenced_by_a_rival(producer: FakeProducer) -> None:
        original = producer.begin_transaction

        def begin() -> None:
            nonlocal rival_took_over
            if not rival_took_over:
                FakeProducer(kafka, "toloka-connector-poller-proj").init_transactions(1)
                rival_took_over = True
            original()

        producer.begin_transaction = begin  # type: ignore[method-assign]

    roles: list[Standing] = []
    loop = loop_for(FakeApi(clock), kafka, clock, Metrics(), fenced_by_a_rival)
    original_set_role = loop._set_standing

    def record(role: Standing) -> None:
        roles.append(role)
        original_set_role(role)
        if rival_took_over and role is Standing.STANDBY:
            clock.stop.set()  # back to standby after the lost race: look at it now

    loop._set_standing = record  # type: ignore[method-assign]
    loop.run(clock.stop)
    assert rival_took_over
    assert Standing.LEADER not in roles
    assert loop.status.kafka_problem is None


@pytest.mark.parametrize(
    "raised", [ProducerFencedError("fenced"), RuntimeError("a bug"), Crash()], ids=repr
)
def test_what_a_keepalive_raises_while_listing_is_raised_in_the_loop_after_the_call(
    raised: BaseException,
) -> None:
    attempts = threading.Event()

    def write() -> None:
        attempts.set()
        raise raised

    def slow_call_that_fails(keepalives: KeepalivesWhileListing) -> None:
        with keepalives.listing():
            assert attempts.wait(5), "the due keepalive was attempted while the call ran"
            raise TimeoutError("the API call's own failure")  # what the keepalive met outranks it

    with (
        KeepalivesWhileListing(write, lambda: 0.0, 1.0) as keepalives,
        pytest.raises(type(raised)),
    ):
        slow_call_that_fails(keepalives)


def test_one_keepalive_thread_serves_every_listing_of_a_leadership_and_writes_only_in_them() -> (
    None
):
    writers: list[threading.Thread] = []
    wrote = threading.Semaphore(0)
    listing = threading.Event()

    due = [0.0]

    def write() -> None:
        assert listing.is_set(), "a keepalive written outside a listing"
        writers.append(threading.current_thread())
        due[0] = 3600.0  # written: the next one falls due after the test
        wrote.release()

    with KeepalivesWhileListing(write, lambda: due[0], 1.0) as keepalives:
        for _ in range(3):
            with keepalives.listing():
                listing.set()
                assert wrote.acquire(timeout=5), "the due keepalive was written"
            listing.clear()
            due[0] = 0.0
        thread = writers[0]
    assert len(writers) == 3
    assert all(writer is thread for writer in writers), "one thread for the leadership"
    assert not thread.is_alive(), "the thread ends with the leadership"


def test_the_loop_heartbeat_names_the_listing_and_keepalives_do_not_beat_it() -> None:
    """/healthz must tell a slow listing from a stuck loop by the loop's own word; a keepalive
    written meanwhile (another thread) must neither beat the loop's heartbeat nor clear it."""
    clock = FakeClock(stop_at=T0 + 30)
    kafka = FakeKafka()
    api = SlowListing(clock, kafka, slow_call=3, seconds=5.0)
    api.add(finished_item("a", T0 - 5))
    heartbeat = Heartbeat("poller", clock)
    seen: list[tuple[str | None, float]] = []
    api.during = lambda: seen.append((heartbeat.waiting_for, heartbeat.last))
    original_done = api.done

    def done(before: int) -> bool:
        if not original_done(before):
            return False
        seen.append((heartbeat.waiting_for, heartbeat.last))
        return True

    api.done = done
    loop = loop_for(api, kafka, clock, Metrics(), heartbeat=heartbeat, leader_timeout_seconds=0.8)
    loop.run(clock.stop)
    assert api.done_while_listing, "a keepalive was written while the listing took its time"
    (at_start, beat_at_start), (after_keepalive, beat_after) = seen[0], seen[-1]
    assert at_start == "the Toloka API (listing)"
    assert after_keepalive == "the Toloka API (listing)"
    assert beat_after == beat_at_start, "the keepalive thread beat the loop's heartbeat"
