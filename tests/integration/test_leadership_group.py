"""The poller's leadership group member (`connector.poller.group.LeadershipGroup`) on a broker
without CreateTopics: librdkafka's mock cluster, over TCP. The group still gets its leadership
topics (a metadata request creates them there) and grants the leases (before, nothing was ever
led on the mock: the demo published nothing)."""

from __future__ import annotations

import threading
import uuid

import pytest
from confluent_kafka.admin import AdminClient

from connector.contract.leadership import leadership_topic
from connector.devtools.brokers.base import BrokerKind
from connector.devtools.brokers.start import start_broker
from connector.kafka.admin import TopicSpec, existing_topics
from connector.poller.group import LeadershipGroup, Lease
from testkit.brokers import ControllableBroker
from testkit.kafka import unique_name
from testkit.waiting import wait_for
from tests.fixtures.brokers import require

pytestmark = pytest.mark.integration


def test_a_broker_without_create_topics_still_gets_the_leadership_topics_and_grants() -> None:
    leases = {leadership_topic("state", f"p{n}"): Lease() for n in range(2)}
    with start_broker("mock") as broker:
        config = {"bootstrap.servers": broker.bootstrap_servers}
        assert not set(leases) & existing_topics(config), "the topics do not exist yet"
        group = LeadershipGroup(
            config,
            group_id=f"g-{uuid.uuid4().hex[:8]}",
            leases=leases,
            session_timeout_seconds=3.0,
            revoke_timeout_seconds=1.0,
            topic_timeout_seconds=1.0,  # CreateTopics goes unanswered on the mock
        )
        for lease in leases.values():
            group.enlist(lease)
        stop = threading.Event()
        member = threading.Thread(target=group.run, args=(stop,))
        member.start()
        try:
            wait_for(lambda: all(lease.granted for lease in leases.values()), timeout=30,
                     what="both leases granted")  # fmt: skip
            assert all(group.problem(lease) is None for lease in leases.values())
        finally:
            stop.set()
            member.join(30)
        assert not member.is_alive()
        assert not any(lease.granted for lease in leases.values()), "a stop ends every term"


# --- on the test broker: what the member asks for, and whose readiness a missing topic spoils ---


def member(bootstrap: str, leases: dict[str, Lease]) -> LeadershipGroup:
    return LeadershipGroup(
        {"bootstrap.servers": bootstrap},
        group_id=unique_name("leaders"),
        leases=leases,
        session_timeout_seconds=6.0,
        revoke_timeout_seconds=2.0,
        topic_timeout_seconds=5.0,
    )


def test_the_member_asks_only_for_the_pipelines_whose_loops_run(
    kafka_broker: ControllableBroker,
) -> None:
    """A pipeline still reading its app project at start-up (or whose loop ended) must not be
    held by this instance while another could lead it: the member is alone in its group here, so
    before, it was granted both pipelines as soon as the first loop ran."""
    require(kafka_broker, "cooperative_rebalancing")
    state = unique_name("state")
    first, second = Lease(), Lease()
    group = member(
        kafka_broker.bootstrap_servers,
        {leadership_topic(state, "p1"): first, leadership_topic(state, "p2"): second},
    )
    stop, second_leaves = threading.Event(), threading.Event()

    def loop(lease: Lease, leave: threading.Event) -> None:
        with group.joined(stop, lease):
            leave.wait(60)

    first_loop = threading.Thread(target=loop, args=(first, stop))
    first_loop.start()
    second_loop = threading.Thread(target=loop, args=(second, second_leaves))
    try:
        wait_for(lambda: first.granted, timeout=30, what="the running loop's pipeline granted")
        assert not second.granted, "granted a pipeline whose loop does not run yet"
        second_loop.start()
        wait_for(lambda: second.granted, timeout=30, what="the pipeline granted once it runs")
        second_leaves.set()
        second_loop.join(30)
        wait_for(lambda: not second.granted, timeout=30, what="the ended loop's pipeline given up")
        assert first.granted, "the other pipeline stays where it is"
    finally:
        second_leaves.set()
        stop.set()
        for thread in (first_loop, second_loop):
            if thread.is_alive():
                thread.join(30)
    assert not first.granted


def test_a_missing_leadership_topic_spoils_only_its_own_pipelines_readiness(
    kafka_broker: ControllableBroker,
) -> None:
    """A leadership topic that cannot be created (here: Kafka refuses a name that collides with
    an existing one by '.' against '_') makes its pipeline unready, not every pipeline; once the
    obstacle is gone the member creates it within TOPIC_RETRY_SECONDS and grants it."""
    if kafka_broker.kind is not BrokerKind.KAFKA:
        pytest.skip(f"only Apache Kafka refuses colliding topic names, not {kafka_broker.kind}")
    state = unique_name("state")
    blocked = leadership_topic(state, "p2")
    kafka_broker.create_topics([TopicSpec(blocked.replace(".", "_"))])
    fine, missing = Lease(), Lease()
    group = member(
        kafka_broker.bootstrap_servers, {leadership_topic(state, "p1"): fine, blocked: missing}
    )
    stop = threading.Event()
    loops = [
        threading.Thread(target=_joined_until, args=(group, stop, lease))
        for lease in (fine, missing)
    ]
    for thread in loops:
        thread.start()
    try:
        wait_for(lambda: group.problem(missing) is not None, timeout=30,
                 what="the missing topic named in its pipeline's readiness")  # fmt: skip
        wait_for(lambda: fine.granted, timeout=30, what="the other pipeline granted")
        assert group.problem(fine) is None
        assert blocked in (group.problem(missing) or "")
        assert not missing.granted
        admin = AdminClient({"bootstrap.servers": kafka_broker.bootstrap_servers})
        admin.delete_topics([blocked.replace(".", "_")])[blocked.replace(".", "_")].result(30)
        wait_for(lambda: missing.granted, timeout=60, what="the topic created and granted")
        assert group.problem(missing) is None
    finally:
        stop.set()
        for thread in loops:
            thread.join(30)


def _joined_until(group: LeadershipGroup, stop: threading.Event, lease: Lease) -> None:
    with group.joined(stop, lease):
        stop.wait(120)
