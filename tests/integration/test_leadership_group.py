"""The poller's leadership group member (`connector.poller.group.LeadershipGroup`) on a broker
without CreateTopics: librdkafka's mock cluster, over TCP. The group still gets its leadership
topics (a metadata request creates them there) and grants the leases (before, nothing was ever
led on the mock: the demo published nothing)."""

from __future__ import annotations

import threading
import uuid

import pytest

from connector.devtools.brokers.start import start_broker
from connector.kafka.admin import existing_topics
from connector.poller.group import LeadershipGroup, Lease, leadership_topic
from testkit.waiting import wait_for

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
        stop = threading.Event()
        member = threading.Thread(target=group.run, args=(stop,))
        member.start()
        try:
            wait_for(lambda: all(lease.granted for lease in leases.values()), timeout=30,
                     what="both leases granted")  # fmt: skip
            assert group.problem is None
        finally:
            stop.set()
            member.join(30)
        assert not member.is_alive()
        assert not any(lease.granted for lease in leases.values()), "a stop ends every term"
