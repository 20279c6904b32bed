"""Two `python -m connector poll` processes against an API whose every listing takes longer than
CONNECTOR_LEADER_TIMEOUT_SECONDS: the live leader must not look dead (issue 11, item 5)."""

from __future__ import annotations

from pathlib import Path

import pytest

from testkit.brokers import ControllableBroker
from testkit.processes import ConnectorProcess
from testkit.waiting import wait_for
from tests.fixtures.brokers import NewTopic
from tests.fixtures.simulator import SimulatorHandle
from tests.integration.poller_harness import PollerSetup

pytestmark = [pytest.mark.integration, pytest.mark.slow]

LEADER_TIMEOUT = 2.0
LISTING_SECONDS = 3.0  # every listing takes longer than the leader timeout


@pytest.fixture
def setup(
    kafka_broker: ControllableBroker, simulator: SimulatorHandle, new_topic: NewTopic
) -> PollerSetup:
    return PollerSetup(
        simulator,
        kafka_broker.bootstrap_servers,
        output_topic=new_topic(partitions=3),
        state_topic=new_topic(compacted=True),
        overrides={
            "CONNECTOR_PAGE_SIZE": "10",
            "CONNECTOR_LEADER_TIMEOUT_SECONDS": str(LEADER_TIMEOUT),
            "CONNECTOR_LATE_SCAN_INTERVAL_SECONDS": "5",
        },
    )


def test_a_listing_slower_than_the_leader_timeout_keeps_one_leader(
    setup: PollerSetup, tmp_path: Path
) -> None:
    items = 30
    setup.simulator.seed(items)
    first = ConnectorProcess(["poll"], setup.environ(), tmp_path / "first.log")
    second: ConnectorProcess | None = None
    try:
        wait_for(first.is_leader, what="the first poller leads")
        setup.simulator.set_knobs(read_latency=LISTING_SECONDS)
        second = ConnectorProcess(["poll"], setup.environ(), tmp_path / "second.log")
        wait_for(second.is_standby, what="the second poller stands by")
        wait_for(
            lambda: sum(setup.published_ids().values()) >= items,
            timeout=120,
            what="every item published",
        )
        alive = [first.process.poll() is None, second.process.poll() is None]
        takeovers = sum(1 for _ in second.lines(": leader"))
        step_downs = sum(1 for _ in first.lines("stepping down"))
    finally:
        codes = [first.terminate()] + ([second.terminate()] if second else [])
    assert alive == [True, True], first.output()[-3000:]
    assert codes == [0, 0], "a poller never exits on its own"
    assert takeovers == 0, "the standby never took over from the live leader"
    assert step_downs == 0
    counts = setup.published_ids()
    assert len(counts) == items
    assert max(counts.values()) == 1
