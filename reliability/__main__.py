"""`python -m reliability` (`make chaos`): the chaos scenarios, 100,000 hostile records, failover
timing, SIGTERM at random moments and the poller's faults (slow listings with two pollers, a
broker frozen across transactions, bulky outputs); figures go to docs/reliability.md
(`--no-doc` to skip).

    python -m reliability                 # everything (~15 minutes on 2 cores)
    python -m reliability --only chaos-kills --seed 3
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

from connector.devtools.brokers.start import default_kind
from reliability.hostile import run_hostile
from reliability.poller_faults import TABLE_HEAD, run_poller_faults
from reliability.report import chaos_table, merged_rows, read_section, write_section
from reliability.sigterm import run_sigterm
from testkit.brokers import ControllableBroker, start_test_broker
from testkit.scenarios.chaos import Outcome, Scenario, run_scenario
from testkit.scenarios.failover import run_failover

DOC = Path(__file__).resolve().parent.parent / "docs" / "reliability.md"


def scenarios(seed: int) -> dict[str, tuple[str, Scenario]]:
    """name -> (broker kind, scenario)."""
    return {
        "chaos-kills": (
            "kafka",
            Scenario("real Kafka + kills + API faults", seed, duration=150, rate=100, kills=10,
                     api_faults=True),
        ),
        "chaos-broker": (
            "kafka",
            Scenario("real Kafka + broker stop/freeze/kill + API faults", seed + 1, duration=120,
                     rate=100, kills=1, api_faults=True,
                     broker_faults=("pause", "stop", "pause", "sigkill"), fault_seconds=6),
        ),
        "chaos-mock": (
            "mock",
            Scenario("mock + request-level faults + kills + API faults", seed + 2, duration=100,
                     rate=100, kills=3, api_faults=True,
                     broker_faults=("request_errors", "down_up", "request_errors", "rtt",
                                    "down_up", "request_errors"), fault_seconds=4),
        ),
    }  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m reliability", description=__doc__)
    parts = [*scenarios(0), "hostile", "failover", "sigterm", "poller-faults"]
    parser.add_argument("--only", action="append", choices=parts, help="run only these parts")
    parser.add_argument("--seed", type=int, default=1, help="seed of every random schedule")
    parser.add_argument(
        "--workdir", type=Path, default=Path(tempfile.gettempdir()) / "toloka-reliability"
    )
    parser.add_argument("--no-doc", action="store_true", help="do not write docs/reliability.md")
    args = parser.parse_args(argv)
    chosen = args.only or parts
    if default_kind().value != "kafka":
        print("java or mvn missing: the real-Kafka parts run on the mock", file=sys.stderr)
    brokers: dict[str, ControllableBroker] = {}

    def broker(kind: str) -> ControllableBroker:
        kind = kind if default_kind().value == "kafka" else "mock"
        if kind not in brokers:
            brokers[kind] = start_test_broker(kind)
        return brokers[kind]

    failed: list[str] = []
    outcomes: list[Outcome] = []
    sections: dict[str, str] = {}
    started = time.monotonic()
    run_dir = args.workdir / time.strftime("%Y%m%d-%H%M%S")
    try:
        for name, (kind, scenario) in scenarios(args.seed).items():
            if name not in chosen:
                continue
            outcome = run_scenario(scenario, broker(kind), run_dir / name)
            outcomes.append(outcome)
            problems = outcome.failures(transactions=outcome.broker_kind != "mock")
            print(f"{scenario.name}: {problems if problems else 'ok'}; {outcome.notes}")
            failed += [f"{scenario.name}: {p}" for p in problems]
        if outcomes:
            table = merged_rows(read_section(DOC, "chaos-table"), chaos_table(outcomes))
            sections["chaos-table"] = table + (
                f"\n\nSeed {args.seed}; run {time.strftime('%Y-%m-%d')}; logs under {run_dir}."
            )
        if "hostile" in chosen:
            hostile = run_hostile(broker("kafka"), run_dir / "hostile")
            print(f"hostile: {hostile}")
            failed += [f"hostile: {p}" for p in hostile.failures()]
            sections["hostile-table"] = (
                "| records | expected uploads | items created | dead letters by reason "
                "| wrong reasons | unaccounted | crashes |\n|---|---|---|---|---|---|---|\n"
                f"| {hostile.records} | {hostile.expected['upload']} | {hostile.uploaded} "
                f"| {dict(hostile.dead_letters)} | {len(hostile.wrong_reasons)} "
                f"| {hostile.missing} | {len(hostile.crashes)} |"
                + (f"\n\nCrash: `{hostile.crashes[0]}`" if hostile.crashes else "")
            )
        if "failover" in chosen:
            failover = run_failover(broker("kafka"), run_dir / "failover", takeovers=7,
                                    seed=args.seed)  # fmt: skip
            print(failover.summary())
            failed += [f"failover: {p}" for p in failover.failures()]
            sections["failover-table"] = failover.summary() + (
                f"; {failover.verdict.repeated_results} repeated and {failover.verdict.lost} "
                "lost results for read_committed readers."
            )
        if "sigterm" in chosen:
            sigterm = run_sigterm(broker("kafka"), run_dir / "sigterm", tries=20, seed=args.seed)
            print(sigterm.summary())
            failed += [f"sigterm: {p}" for p in sigterm.failures()]
            sections["sigterm-table"] = sigterm.summary()
        if "poller-faults" in chosen:
            faults = run_poller_faults(broker("kafka"), run_dir / "poller-faults", seed=args.seed)
            print(f"poller faults: {faults.summary()}")
            failed += [f"poller faults: {p}" for p in faults.failures()]
            sections["poller-faults-table"] = (
                f"{TABLE_HEAD}\n{faults.summary()}\n\nSeed {args.seed}; run "
                f"{time.strftime('%Y-%m-%d')}; logs under {run_dir / 'poller-faults'}."
            )
    finally:
        for opened in brokers.values():
            opened.close()
    if not args.no_doc:
        for marker, body in sections.items():
            write_section(DOC, marker, body)
    print(f"reliability run took {time.monotonic() - started:.0f} s")
    for problem in failed:
        print(f"FAILED {problem}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
