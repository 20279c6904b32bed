"""A small chaos run inside `make test` (the full one is `make chaos`, see docs/reliability.md).

Items are produced at a steady rate (2 % malformed, of ten kinds) while `toloka-connector run`
is SIGKILLed twice at moments drawn from a seeded RNG and restarted, the broker misbehaves once
(real Kafka: frozen with SIGSTOP; mock: request errors on Produce, Fetch, OffsetCommit,
FindCoordinator and EndTxn) and the simulator cycles through its API faults. A read_committed
reader then checks that every valid input has a result, every invalid one a dead letter with the
right reason, nothing unknown was published, and that each repeated upload or result is explained
by a kill or a lost response.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from connector.devtools.brokers.base import Capability
from testkit.brokers import ControllableBroker
from testkit.scenarios.chaos import Scenario, run_scenario

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_kills_broker_and_api_faults_lose_nothing_and_repeat_only_what_a_kill_explains(
    kafka_broker: ControllableBroker, tmp_path: Path
) -> None:
    require(kafka_broker)
    if kafka_broker.supports(Capability.PROCESS_CONTROL):
        broker_faults: tuple[str, ...] = ("pause",)
    else:
        broker_faults = ("request_errors",)
    scenario = Scenario(
        name="small chaos",
        seed=20240611,
        duration=30.0,
        rate=60.0,
        kills=2,
        api_faults=True,
        broker_faults=broker_faults,
        fault_seconds=3.0,
        completion_timeout=60.0,
    )
    outcome = run_scenario(scenario, kafka_broker, tmp_path)
    verdict = outcome.verdict
    print(
        f"\nsmall chaos on {outcome.broker_kind}: {outcome.items} records, {outcome.kills} kills, "
        f"faults {outcome.faults}; repeated uploads {verdict.repeated_uploads_by_cause}, "
        f"reconciliations {outcome.reconciliations}, "
        f"repeated results {verdict.repeated_results_by_cause}, "
        f"recovery {outcome.recovery_text()}, {outcome.elapsed:.0f} s"
    )
    problems = outcome.failures(transactions=kafka_broker.supports(Capability.TRANSACTIONS))
    assert not problems, f"{problems} (logs in {tmp_path})"
    assert outcome.kills == 2
    assert verdict.valid > 1000
    assert verdict.invalid > 0


def require(broker: ControllableBroker) -> None:
    if not (
        broker.supports(Capability.PROCESS_CONTROL) or broker.supports(Capability.FAULT_INJECTION)
    ):
        pytest.skip(f"{broker.kind} broker can neither be frozen nor inject request errors")
    if not broker.supports(Capability.EVICTS_KILLED_MEMBERS):
        pytest.skip(f"{broker.kind} broker never evicts a killed group member")
