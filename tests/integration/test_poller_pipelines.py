"""Several pipelines over several instances (issue 16, "done when"): on real Kafka and the
simulator over TCP, 3 `poll` processes x 4 app projects. The leadership group spreads the
pipelines 2/1/1; a kill -9 moves the killed instance's pipelines within the group's session
timeout + 10 s; the restarted instance takes pipelines back with no pipeline leaderless for
longer than that; every pipeline's results are published exactly once throughout."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest

from connector.devtools.brokers.base import Capability
from testkit.brokers import ControllableBroker
from testkit.leaderships import (
    ItemFeed,
    VacancyWatch,
    balanced,
    leaders,
    pipelines_environ,
    spread,
)
from testkit.processes import ConnectorProcess
from testkit.waiting import wait_for
from tests.fixtures.brokers import NewTopic, ReadTopic, require
from tests.fixtures.simulator import SimulatorHandle, fresh_project_ids

pytestmark = [pytest.mark.integration, pytest.mark.slow]

PROJECTS = ("moderation", "captions", "images", "reviews")
LEADER_TIMEOUT = 3.0
"""Also the leadership group's session timeout."""
FAILOVER_BOUND = LEADER_TIMEOUT + 10.0
"""The issue's bound: the group's session timeout + 10 s."""


def pipelines_file(path: Path, outputs: dict[str, str], dead_letters: dict[str, str]) -> Path:
    """Each pipeline with its own topics (the input topics are named, never read by `poll`)."""
    tables = [
        f'[[pipelines]]\napp_project_id = "{project}"\ninput_topic = "{topic}.in"\n'
        f'output_topic = "{topic}"\ndlq_topic = "{dead_letters[project]}"\n'
        for project, topic in outputs.items()
    ]
    path.write_text("\n".join(tables))
    return path


def published(read_topic: ReadTopic, topic: str) -> Counter[str]:
    """Results visible to read_committed readers, by key (the input's id)."""
    return Counter((m.key() or b"").decode() for m in read_topic(topic))


def all_published(read_topic: ReadTopic, outputs: dict[str, str], feed: ItemFeed) -> bool:
    return all(
        set(feed.created[project]) <= set(published(read_topic, topic))
        for project, topic in outputs.items()
    )


def check_all_alive(processes: list[ConnectorProcess]) -> None:
    for process in processes:
        process.check_alive()


def test_four_pipelines_over_three_instances_balance_fail_over_and_rebalance_exactly_once(
    kafka_broker: ControllableBroker,
    simulator_factory: Callable[..., SimulatorHandle],
    new_topic: NewTopic,
    read_topic: ReadTopic,
    tmp_path: Path,
) -> None:
    require(kafka_broker, Capability.TRANSACTIONS)
    require(kafka_broker, Capability.COOPERATIVE_REBALANCING)
    projects = fresh_project_ids(*PROJECTS)
    sim = simulator_factory(project_id=projects[0], also_serve=projects[1:], processing_delay=0.2)
    outputs = {project: new_topic(1) for project in projects}
    environ = pipelines_environ(
        sim,
        kafka_broker.bootstrap_servers,
        new_topic(compacted=True),
        "pipelines",
        leader_timeout_seconds=LEADER_TIMEOUT,
        CONNECTOR_PAGE_SIZE="10",
    )
    dead_letters = {project: new_topic(1) for project in projects}
    config = pipelines_file(tmp_path / "connector.toml", outputs, dead_letters)

    def instance(name: str) -> ConnectorProcess:
        argv = ["poll", "--config", str(config)]
        return ConnectorProcess(argv, environ, tmp_path / f"{name}.log")

    processes = [instance(f"poller-{n}") for n in range(3)]
    watch = VacancyWatch(processes, projects)
    feed = ItemFeed(sim, projects, per_second=10)
    try:
        wait_for(
            lambda: balanced(processes, projects),
            timeout=60,
            what="every pipeline led, spread over the three instances",
            guard=lambda: check_all_alive(processes),
        )
        at_start = spread(processes, projects)
        flowing = feed.total()
        wait_for(lambda: feed.total() > flowing + 40, what="items flowing")

        # kill -9 the instance leading the most pipelines
        victim = max(processes, key=lambda p: sum(leaders([p], q) != [] for q in projects))
        moved = [q for q in projects if leaders([victim], q)]
        victim.kill()
        killed = time.monotonic()
        took_over: dict[str, float] = {}

        def moved_pipelines_led() -> bool:
            for project in moved:
                if project not in took_over and leaders(processes, project):
                    took_over[project] = time.monotonic() - killed
            return len(took_over) == len(moved)

        wait_for(moved_pipelines_led, timeout=FAILOVER_BOUND + 20, what="take-overs")
        wait_for(lambda: balanced(processes, projects), what="balanced over the two left")
        after_kill = spread(processes, projects)

        # start it again: the group rebalances, pipelines move to it
        watch.reset()
        restarted = instance("poller-restarted")
        processes.append(restarted)
        rejoined = time.monotonic()
        wait_for(
            lambda: (
                balanced(processes, projects) and any(leaders([restarted], q) for q in projects)
            ),
            timeout=60,
            what="leadership rebalanced onto the restarted instance",
            guard=restarted.check_alive,
        )
        rebalanced = time.monotonic() - rejoined
        at_end = spread(processes, projects)
        longest_pause = max(watch.longest.values(), default=0.0)
        flowing = feed.total()
        wait_for(lambda: feed.total() > flowing + 40, what="items flowing after the rebalance")
    finally:
        feed.close()
        watch.close()
    try:
        wait_for(
            lambda: all_published(read_topic, outputs, feed),
            timeout=60,
            what="every item of every project published",
        )
    finally:
        codes = [p.terminate() for p in processes if p is not victim]
    print(
        f"\n3 instances x {len(projects)} pipelines on {kafka_broker.kind}: leaderships "
        f"{at_start} at start, {after_kill} after kill -9, {at_end} after the restart; "
        f"take-overs after the kill "
        + ", ".join(f"{took_over[p]:.2f} s" for p in moved)
        + f"; rebalanced onto the restarted instance in {rebalanced:.2f} s, longest leaderless "
        f"stretch of a pipeline meanwhile {longest_pause:.2f} s (bound {FAILOVER_BOUND:g} s)"
    )
    assert at_start == [1, 1, 2]
    assert after_kill == [2, 2]
    assert at_end == [1, 1, 2]
    assert codes == [0, 0, 0]
    assert max(took_over.values()) <= FAILOVER_BOUND
    assert longest_pause <= FAILOVER_BOUND
    for project in projects:
        keys = published(read_topic, outputs[project])
        assert set(keys) == set(feed.created[project]), f"{project}: lost or foreign results"
        assert max(keys.values()) == 1, f"{project}: repeated results"
