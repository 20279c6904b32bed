"""Leadership by the group's word (`connector.poller.group`): a
pipeline leads only within a granted term, a revocation waits for its release, the successor
takes over at once, a grant never makes two instances fence each other in turn, and a failed
group fails the loops. The group
itself on real Kafka: tests/integration/test_poller_pipelines.py."""

from __future__ import annotations

import threading
from functools import partial

import pytest
from confluent_kafka import KafkaError

from connector.clock import SystemClock
from connector.contract.leadership import MAX_TOPIC_NAME, leadership_group_id, leadership_topic
from connector.lifecycle import Heartbeat
from connector.metrics import Metrics
from connector.poller.group import LeadershipGroup, Lease, leadership_consumer_config
from connector.poller.leadership import Standing
from connector.poller.loop import PollerLoop
from testkit.clocks import FakeClock
from testkit.waiting import wait_for
from tests.unit.poller_fakes import (
    RESPONSE_LIMIT_BYTES,
    T0,
    FakeApi,
    FakeKafka,
    FakeStateStore,
    finished_item,
    poller_settings,
    producer_factory,
)

HOUR = 3600.0
"""A leader timeout no test waits out: a take-over here happens by a release, or never."""


def test_leadership_topics_are_one_per_project_and_valid_topic_names() -> None:
    assert leadership_topic("toloka.connector.state", "p-1") == "toloka.connector.state.leader.p-1"
    odd = [
        leadership_topic("state", name) for name in ("a/b", "a:b", "a b", "a.b", "a_b", "x" * 300)
    ]
    # Kafka refuses a topic whose name differs from another's only by "." against "_".
    assert len({name.replace(".", "_") for name in odd}) == len(odd)
    assert len(set(odd)) == len(odd), "ids that differ only in characters replaced stay apart"
    for name in odd:
        assert len(name) <= MAX_TOPIC_NAME
        assert all(c.isalnum() or c in "._-" for c in name)
    assert leadership_group_id("toloka-connector") == "toloka-connector-poller-leaders"


def test_the_group_session_is_the_leader_timeout_and_its_heartbeats_fit_in_it() -> None:
    config = leadership_consumer_config({"bootstrap.servers": "b:9092"}, "g", 3.0)
    assert config["group.id"] == "g-poller-leaders"
    assert config["partition.assignment.strategy"] == "cooperative-sticky"
    assert config["session.timeout.ms"] == 3000
    assert config["heartbeat.interval.ms"] < config["session.timeout.ms"]
    long = leadership_consumer_config({}, "g", 2400.0)
    assert long["session.timeout.ms"] <= 1_800_000, "within Kafka's default maximum"
    assert long["max.poll.interval.ms"] >= long["session.timeout.ms"], "librdkafka requires it"


def test_a_lease_opens_a_term_on_grant_and_ends_it_on_revoke() -> None:
    lease = Lease()
    stop = threading.Event()
    stop.set()
    assert lease.wait_granted(stop) is None, "no grant: a stop ends the wait"
    lease.grant()
    term = lease.wait_granted(threading.Event())
    assert term is not None
    assert not term.is_set()
    lease.revoke()
    assert term.is_set()
    assert not lease.granted


def test_a_revocation_waits_until_the_loop_stopped_leading() -> None:
    lease = Lease()
    lease.grant()
    entered, leave = threading.Event(), threading.Event()

    def lead() -> None:
        with lease.leading():
            entered.set()
            leave.wait(10)

    thread = threading.Thread(target=lead)
    thread.start()
    entered.wait(5)
    lease.revoke()
    assert not lease.wait_released(0.1), "still leading: the revocation is not done"
    leave.set()
    assert lease.wait_released(5)
    thread.join(5)


def test_a_failed_group_fails_every_loop_that_waits_for_a_grant() -> None:
    lease = Lease()
    lease.fail(RuntimeError("no consumer"))
    with pytest.raises(RuntimeError, match="no consumer"):
        lease.wait_granted(threading.Event())


# --- two instances' loops of one pipeline, on the fake Kafka ---------------------------------


class Instance:
    """One instance's loop of the pipeline "proj", run with a lease the test grants."""

    def __init__(self, name: str, kafka: FakeKafka, api: FakeApi) -> None:
        self.lease = Lease()
        self.standings: list[Standing] = []
        self.loop = PollerLoop(
            poller_settings(
                poll_interval_seconds=0.02,
                idle_poll_interval_seconds=0.05,
                leader_timeout_seconds=HOUR,
                transaction_timeout_seconds=1.0,
            ),
            "proj",
            source=api,
            producer_factory=producer_factory(kafka, []),
            store=FakeStateStore(kafka),
            clock=SystemClock(),
            metrics=Metrics(),
            heartbeat=Heartbeat("poller"),
            instance_id=name,
            response_limit_bytes=RESPONSE_LIMIT_BYTES,
        )
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.loop.run, args=(self.stop, self.lease))
        self.thread.start()

    def standing(self) -> Standing:
        return self.loop.status.standing

    def end(self) -> None:
        self.stop.set()
        self.lease.revoke()
        self.thread.join(10)
        assert not self.thread.is_alive()


def test_only_the_granted_instance_leads_and_a_revocation_hands_over_at_once() -> None:
    kafka, api = FakeKafka(), FakeApi(FakeClock())
    api.add(finished_item("i0", T0))
    a, b = Instance("A", kafka, api), Instance("B", kafka, api)
    try:
        wait_for(lambda: a.loop.status.standing is Standing.STANDBY)
        assert kafka.records == [], "no grant, no take-over: the cursor is vacant but not ours"
        a.lease.grant()
        wait_for(lambda: a.standing() is Standing.LEADER)
        wait_for(lambda: kafka.published_ids() == ["i0"])
        assert b.standing() is Standing.STANDBY
        a.lease.revoke()
        assert a.lease.wait_released(10), "the revoked leader committed and released"
        assert a.standing() is Standing.STANDBY
        b.lease.grant()  # the leader timeout is an hour: only the release lets B lead now
        wait_for(lambda: b.standing() is Standing.LEADER, timeout=10)
        api.add(finished_item("i1", T0 + 1))
        wait_for(lambda: kafka.published_ids() == ["i0", "i1"])
    finally:
        a.end()
        b.end()
    assert kafka.published_ids() == ["i0", "i1"]


def test_a_grant_while_another_instance_leads_waits_instead_of_fencing_it() -> None:
    """Two instances whose configurations disagree can both be granted one pipeline: the second
    waits while the first's cursor says it is alive, rather than fencing it back and forth."""
    kafka, api = FakeKafka(), FakeApi(FakeClock())
    a, b = Instance("A", kafka, api), Instance("B", kafka, api)
    try:
        a.lease.grant()
        wait_for(lambda: a.standing() is Standing.LEADER)
        b.lease.grant()
        for n in range(5):  # pages committed by A while B holds a grant
            api.add(finished_item(f"i{n}", T0 + n))
            wait_for(partial(_published, kafka, n + 1))
        assert b.standing() is Standing.STANDBY
        assert a.standing() is Standing.LEADER, "never fenced"
        a.end()  # releases: now B takes over
        wait_for(lambda: b.standing() is Standing.LEADER, timeout=10)
    finally:
        a.end()
        b.end()
    assert kafka.published_ids() == [f"i{n}" for n in range(5)]


def _published(kafka: FakeKafka, count: int) -> bool:
    return len(kafka.published_ids()) == count


# --- the member's life and the loops' liveness --------------------------------------------------


def test_a_loop_waiting_for_a_grant_keeps_its_heartbeat() -> None:
    """A standby that the group has not granted the pipeline is not stuck: /healthz must not
    restart every instance that leads fewer pipelines than it serves."""
    lease, stop = Lease(), threading.Event()
    beats = 0

    def beat() -> None:
        nonlocal beats
        beats += 1
        if beats == 3:
            stop.set()

    assert lease.wait_granted(stop, beat) is None
    assert beats == 3


def test_a_standby_loop_without_a_grant_beats() -> None:
    instance = Instance("a", FakeKafka(), FakeApi(FakeClock()))
    heartbeat = instance.loop._heartbeat
    started = heartbeat.last
    try:
        wait_for(lambda: heartbeat.last > started, what="a beat while waiting for a grant")
        assert not instance.lease.granted
    finally:
        instance.end()


def test_a_loop_that_fails_alone_ends_the_member_instead_of_waiting_for_stop() -> None:
    """With one pipeline (the default deployment) its loop's failure must end its role: the
    member it leaves must not wait for a `stop` that only that ending would bring."""
    lease = Lease()
    group = LeadershipGroup(
        {"bootstrap.servers": "127.0.0.1:1"},
        group_id="g",
        leases={"state.leader.p": lease},
        session_timeout_seconds=6.0,
        revoke_timeout_seconds=1.0,
        topic_timeout_seconds=0.5,
    )
    stop = threading.Event()
    failures: list[BaseException] = []

    def failing_loop() -> None:
        try:
            with group.joined(stop, lease):
                raise RuntimeError("an unreadable state record")
        except RuntimeError as exc:
            failures.append(exc)

    thread = threading.Thread(target=failing_loop, daemon=True)
    thread.start()
    thread.join(30)
    assert not thread.is_alive(), "the failing loop waited for the member forever"
    assert [str(f) for f in failures] == ["an unreadable state record"]
    assert not stop.is_set()


def test_a_topic_this_account_may_not_read_is_named_but_not_created_again() -> None:
    """A missing leadership topic is created again every few seconds (and subscribed to again);
    a topic the account may not read exists already: retrying would only rebalance the whole
    group every few seconds. Both make only their own pipeline unready."""
    refused, missing, fine = Lease(), Lease(), Lease()
    group = LeadershipGroup(
        {"bootstrap.servers": "127.0.0.1:1"},
        group_id="g",
        leases={"s.leader.a": refused, "s.leader.b": missing, "s.leader.c": fine},
        session_timeout_seconds=6.0,
        revoke_timeout_seconds=1.0,
        topic_timeout_seconds=0.5,
    )
    group._error(KafkaError(KafkaError.TOPIC_AUTHORIZATION_FAILED), "s.leader.a")
    group._error(KafkaError(KafkaError.UNKNOWN_TOPIC_OR_PART), "s.leader.b")
    assert "let this account read it" in (group.problem(refused) or "")
    assert "create it" in (group.problem(missing) or "")
    assert group.problem(fine) is None
    assert group._missing == {"s.leader.b"}, "only the missing topic is created again"
