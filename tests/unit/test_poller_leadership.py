"""Leader or standby: the standby's judgement, take-over after a leader dies, readiness."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

from confluent_kafka import KafkaError, KafkaException

from connector.clock import SystemClock
from connector.contract.cursor import Cursor, initial_cursor
from connector.errors import NotFoundError, ServerError, StartupError, TransportError
from connector.lifecycle import Heartbeat, Readiness
from connector.metrics import Metrics
from connector.poller.leadership import LeaderWatch
from connector.poller.loop import PollerLoop
from connector.poller.role import Poller
from connector.poller.state import FeedUpdate
from connector.toloka.models import ItemPage
from connector.toloka.retry import RetryPolicy
from testkit.clocks import FakeClock
from testkit.waiting import wait_for
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


def written(at: float, holder: str | None = "leader") -> Cursor:
    cursor = initial_cursor("proj", "earliest", now=at, late_window_seconds=60, holder=holder)
    return replace(cursor, written_at=datetime.fromtimestamp(at, UTC))


def test_no_decision_before_the_standby_has_read_to_the_end() -> None:
    watch = LeaderWatch(10, FakeClock())
    watch.observe(FeedUpdate(False, ()))
    assert not watch.leader_gone()


def test_no_cursor_at_all_means_take_over_at_once() -> None:
    watch = LeaderWatch(10, FakeClock())
    watch.observe(FeedUpdate(True, ()))
    assert watch.leader_gone()


def test_a_cursor_written_by_a_command_means_take_over_at_once() -> None:
    watch = LeaderWatch(10, FakeClock())
    watch.observe(FeedUpdate(True, (written(T0, holder=None),)))
    assert watch.leader_gone()


def test_a_recent_keepalive_keeps_the_standby_waiting_until_the_timeout() -> None:
    clock = FakeClock()
    watch = LeaderWatch(10, clock)
    watch.observe(FeedUpdate(True, (written(T0 - 4),)))
    clock.advance(5.9)
    assert not watch.leader_gone()
    clock.advance(0.2)
    assert watch.leader_gone()


def test_new_keepalives_keep_the_leader_alive() -> None:
    clock = FakeClock()
    watch = LeaderWatch(10, clock)
    watch.observe(FeedUpdate(True, (written(T0),)))
    for _ in range(5):
        clock.advance(8)
        watch.observe(FeedUpdate(True, (written(clock.time()),)))
        assert not watch.leader_gone()


def test_an_old_last_record_means_take_over_at_once() -> None:
    watch = LeaderWatch(10, FakeClock())
    watch.observe(FeedUpdate(True, (written(T0 - 60),)))
    assert watch.leader_gone()


# --- two pollers in threads, on the real clock with short timeouts ---------------------------


class Instance:
    def __init__(
        self,
        name: str,
        kafka: FakeKafka,
        api: FakeApi,
        configure: Callable[[FakeProducer], None] | None = None,
        leader_timeout_seconds: float = 0.6,
        progress_timeout_seconds: float = 60.0,
    ) -> None:
        clock = SystemClock()
        self.heartbeat = Heartbeat("poller", clock)
        self.loop = PollerLoop(
            poller_settings(
                poll_interval_seconds=0.02,
                idle_poll_interval_seconds=0.05,
                leader_timeout_seconds=leader_timeout_seconds,
                late_scan_interval_seconds=0.2,
            ),
            "proj",
            source=api,
            producer_factory=producer_factory(kafka, [], configure),
            store=FakeStateStore(kafka),
            clock=clock,
            metrics=Metrics(),
            heartbeat=self.heartbeat,
            instance_id=name,
            response_limit_bytes=RESPONSE_LIMIT_BYTES,
        )
        self.poller = Poller(
            self.loop,
            self.heartbeat,
            api,
            startup_backoff=RetryPolicy(None, base_delay_seconds=0.01, max_delay_seconds=0.02),
            progress_timeout_seconds=progress_timeout_seconds,
        )
        self.stop = threading.Event()
        self.crashed = threading.Event()
        self.failure: BaseException | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        try:
            self.poller.run(self.stop)
        except Crash:
            self.crashed.set()
        except Exception as exc:
            self.failure = exc

    def detail(self) -> str:
        return self.poller.readiness().detail


def test_one_leader_one_standby_and_take_over_after_the_leader_dies() -> None:
    kafka = FakeKafka()
    api = FakeApi(FakeClock())  # every item visible (at time 0)
    for n in range(5):
        api.add(finished_item(f"i{n}", T0 + n))
    alive = threading.Event()
    alive.set()

    def dies_on_demand(producer: FakeProducer) -> None:
        original = producer.begin_transaction

        def begin() -> None:
            if not alive.is_set():
                raise Crash  # kill -9: nothing more is written
            original()

        producer.begin_transaction = begin  # type: ignore[method-assign]

    a = Instance("A", kafka, api, configure=dies_on_demand)
    wait_for(lambda: a.detail() == "leader")
    b = Instance("B", kafka, api)
    wait_for(lambda: b.detail() == "standby")
    assert b.poller.readiness().ready

    def keepalives_of_a() -> int:
        return sum(
            1 for r in kafka.visible("state") if r.key == b"proj" and b'"A"' in (r.value or b"")
        )

    first = keepalives_of_a()
    wait_for(lambda: keepalives_of_a() >= first + 8)  # over a second: several leader timeouts
    assert b.detail() == "standby", "B stays standby while A writes keepalives"

    alive.clear()
    wait_for(a.crashed.is_set)
    wait_for(lambda: b.detail() == "leader", timeout=3.0)  # the leader timeout is 0.6 s
    api.add(finished_item("after", T0 + 10))
    wait_for(lambda: "after" in kafka.published_ids())
    b.stop.set()
    b.thread.join(5)
    assert kafka.published_ids() == [f"i{n}" for n in range(5)] + ["after"]
    assert b.detail() == "standby", "a stopped poller no longer leads"


def test_a_cleanly_stopped_leader_hands_over_at_once() -> None:
    kafka = FakeKafka()
    api = FakeApi(FakeClock())
    api.add(finished_item("i0", T0))
    hour = 3600.0  # a standby that had to wait out the leader timeout would never lead here
    a = Instance("A", kafka, api, leader_timeout_seconds=hour)
    wait_for(lambda: a.detail() == "leader")
    b = Instance("B", kafka, api, leader_timeout_seconds=hour)
    wait_for(lambda: b.detail() == "standby")
    a.stop.set()
    a.thread.join(5)
    wait_for(lambda: b.detail() == "leader", timeout=10.0)
    api.add(finished_item("after", T0 + 1))
    wait_for(lambda: "after" in kafka.published_ids())
    b.stop.set()
    b.thread.join(5)
    assert kafka.published_ids() == ["i0", "after"]


# --- start-up and readiness ---------------------------------------------------------------------


def test_a_project_the_api_does_not_know_is_a_startup_error_and_nothing_is_written() -> None:
    kafka = FakeKafka()
    api = FakeApi(FakeClock())
    api.project_failures = [NotFoundError("App project nope does not exist", status=404)]
    a = Instance("A", kafka, api)
    a.thread.join(5)
    assert isinstance(a.failure, StartupError)
    assert "TOLOKA_APP_PROJECT_ID" in str(a.failure)
    assert kafka.records == [], "no state written for a project that does not exist"
    assert api.calls == 0


def test_an_api_outage_at_startup_is_waited_for_in_a_call_liveness_does_not_count() -> None:
    kafka = FakeKafka()
    api = FakeApi(FakeClock())
    api.project_failures = [ServerError("down", status=503)] * 10**6
    a = Instance("A", kafka, api)
    wait_for(lambda: len(api.project_failures) < 10**6 - 3, "a few start-up attempts", 10)
    assert a.poller.readiness() == Readiness(
        False, "reading the app project from the Toloka API; waiting: HTTP 503: down"
    )
    assert a.heartbeat.waiting_for == "the Toloka API (the app project)"
    api.project_failures.clear()
    wait_for(lambda: a.detail() == "leader", "leadership once the API answers", 10)
    assert a.heartbeat.waiting_for is None
    a.stop.set()
    a.thread.join(5)


def test_a_leader_whose_listings_keep_failing_says_so_after_the_progress_timeout() -> None:
    kafka = FakeKafka()
    api = FakeApi(FakeClock())
    a = Instance("A", kafka, api, progress_timeout_seconds=0.3)
    wait_for(lambda: a.detail() == "leader")
    api.failures = [ServerError("HTML 502 from the gateway", status=502)] * 10**6
    wait_for(lambda: "no listing answered" in a.detail(), "the listing stall reported", 10)
    readiness = a.poller.readiness()
    assert not readiness.ready
    assert readiness.detail.startswith("leader; no listing answered for ")
    assert "HTML 502 from the gateway" in readiness.detail
    api.failures.clear()
    wait_for(lambda: a.poller.readiness().ready, "ready again once a listing is answered", 10)
    a.stop.set()
    a.thread.join(5)


def test_a_leader_whose_transactions_keep_failing_says_so_after_the_progress_timeout() -> None:
    kafka = FakeKafka()
    api = FakeApi(FakeClock())
    failing = threading.Event()

    def commits_fail_on_demand(producer: FakeProducer) -> None:
        original = producer.commit_transaction

        def commit(timeout: float) -> None:
            if failing.is_set():
                raise KafkaException(KafkaError(KafkaError._TIMED_OUT, "coordinator unavailable"))
            original(timeout)

        producer.commit_transaction = commit  # type: ignore[method-assign]

    a = Instance("A", kafka, api, configure=commits_fail_on_demand, progress_timeout_seconds=0.3)
    wait_for(lambda: a.detail() == "leader")
    failing.set()
    # A commit that keeps failing is a fatal producer error: the producer is replaced and the
    # take-over retried; either way the leader says its transactions fail.
    wait_for(
        lambda: (
            not a.poller.readiness().ready
            and ("no transaction committed" in a.detail() or "commit_transaction" in a.detail())
        ),
        "the commit stall reported",
        10,
    )
    failing.clear()
    wait_for(lambda: a.poller.readiness().ready, "ready again once a transaction commits", 10)
    a.stop.set()
    a.thread.join(5)


class RetriedListing(FakeApi):
    """A listing the client retries until it is told to stop retrying (an API that hangs)."""

    def __init__(self, clock: FakeClock) -> None:
        super().__init__(clock)
        self.listing = threading.Event()

    def list_items(self, **kwargs: Any) -> ItemPage:
        if self.calls >= 1:
            self.listing.set()
            if not self.stopped.wait(30):
                raise AssertionError("nobody told the client to stop retrying")
            raise TransportError("list_items: timed out", operation="list_items")
        return super().list_items(**kwargs)


def test_a_stop_during_a_retried_listing_ends_the_retries_and_the_leader_releases() -> None:
    kafka = FakeKafka()
    api = RetriedListing(FakeClock())
    leader = Instance("A", kafka, api)
    assert api.listing.wait(10), "the leader lists"
    leader.stop.set()
    leader.thread.join(10)
    assert not leader.thread.is_alive(), "the poller ended within the shutdown budget"
    assert leader.failure is None
    last = [r for r in kafka.visible("state") if r.key == b"proj"][-1]
    assert b'"holder":null' in (last.value or b"").replace(b" ", b""), "leadership released"
