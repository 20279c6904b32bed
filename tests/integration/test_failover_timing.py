"""Failover timing: two `run` instances, the leading poller's process SIGKILLed three times at
moments drawn from a seeded RNG; the standby takes over each time (min/median/max printed and
bounded by the leader timeout plus a margin) and read_committed readers see every result once."""

from __future__ import annotations

from pathlib import Path

import pytest

from connector.devtools.brokers.base import Capability
from testkit.brokers import ControllableBroker
from testkit.scenarios.failover import run_failover
from tests.fixtures.brokers import require

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_the_standby_takes_over_a_killed_leader_in_time_and_exactly_once_holds(
    kafka_broker: ControllableBroker, tmp_path: Path
) -> None:
    require(kafka_broker, Capability.EVICTS_KILLED_MEMBERS)
    outcome = run_failover(kafka_broker, tmp_path, takeovers=3, seed=11)
    print(f"\n{outcome.summary()}")
    assert not outcome.failures(), f"{outcome.failures()} (logs in {tmp_path})"
    assert len(outcome.takeovers) == 3
    # The standby needs the leader timeout to notice; the rest is taking the id and state.
    assert max(outcome.takeovers) < outcome.leader_timeout_seconds + 10
