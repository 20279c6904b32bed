"""Several pipelines in one poller process: `python -m benchmarks.pipelines [--items N]`.

One `toloka-connector poll` process publishes N finished items of one app project, then another
publishes the same N items spread over 4 app projects (`[[pipelines]]`, each its own output
topic, all led by the one process). Both on a broker of their own (real Kafka where `java` and
`mvn` are there) and one simulator serving the 4 projects, items created through its Apps API
before the poller starts. The rate runs from the first result a read_committed reader sees to
the last; the ratio (4 pipelines / 1) is what several pipelines in one process cost or gain.
Prints one line per run and the ratio, and one JSON line.
"""

from __future__ import annotations

import argparse
import tempfile
import time
import uuid
from collections.abc import Sequence
from pathlib import Path

import orjson

from benchmarks.kafka_io import TopicReader
from connector.devtools.brokers.base import Broker
from connector.devtools.brokers.start import start_broker
from connector.kafka.admin import TopicSpec
from connector.simulator.process import SimulatorProcess, start_simulator_process
from testkit.processes import ConnectorProcess
from testkit.waiting import wait_for

API_KEY = "pipelines-bench-key"
PROJECTS = ("bench-p1", "bench-p2", "bench-p3", "bench-p4")
PAGE_SIZE = 1000  # CONNECTOR_PAGE_SIZE's default
OUTPUT_PARTITIONS = 6
BULK = 1000


def create_items(sim: SimulatorProcess, project: str, count: int) -> None:
    with sim.client() as http:
        for start in range(0, count, BULK):
            items = [
                {"id": f"{project}-{n}", "text": "Kate likes dogs and long walks in the park."}
                for n in range(start, min(count, start + BULK))
            ]
            url = f"{sim.base_url}/app-projects/{project}/items/bulk"
            http.post(url, json={"items": items}, timeout=60).raise_for_status()


def run_poller(
    broker: Broker, sim: SimulatorProcess, projects: Sequence[str], per_project: int,
    workdir: Path,
) -> float:  # fmt: skip
    """Publish `per_project` items of each of `projects` with one poll process; items/s from
    the first result to the last."""
    tag = uuid.uuid4().hex[:6]
    outputs = {project: f"bench-{tag}-{project}-results" for project in projects}
    config = workdir / f"{tag}.toml"
    config.write_text(
        "\n".join(
            f'[[pipelines]]\napp_project_id = "{project}"\ninput_topic = "{topic}.in"\n'
            f'output_topic = "{topic}"\ndlq_topic = "{topic}.dlq"\n'
            for project, topic in outputs.items()
        )
    )
    state = f"bench-{tag}-state"
    broker.create_topics(
        [TopicSpec(state, 1, compacted=True)]
        + [TopicSpec(topic, OUTPUT_PARTITIONS) for topic in outputs.values()]
        + [TopicSpec(f"{topic}.dlq", 1) for topic in outputs.values()]
    )
    for project in projects:
        create_items(sim, project, per_project)
    broker_servers = broker.bootstrap_servers
    readers = [
        TopicReader(broker_servers, topic, range(OUTPUT_PARTITIONS)).start()
        for topic in outputs.values()
    ]
    environ = {
        "TOLOKA_API_KEY": API_KEY,
        "TOLOKA_BASE_URL": sim.base_url,
        "KAFKA_BOOTSTRAP_SERVERS": broker_servers,
        "CONNECTOR_STATE_TOPIC": state,
        "CONNECTOR_GROUP_ID": f"bench-{tag}",
        "CONNECTOR_PAGE_SIZE": str(PAGE_SIZE),
        "CONNECTOR_METRICS_PORT": "0",
    }
    process = ConnectorProcess(["poll", "--config", str(config)], environ, workdir / f"{tag}.log")
    total = per_project * len(projects)
    first: list[float] = []

    def done() -> bool:
        count = sum(reader.count for reader in readers)
        if count and not first:
            first.append(time.perf_counter())
        return count >= total

    try:
        wait_for(done, timeout=600, interval=0.01, what=f"{total} results",
                 guard=process.check_alive)  # fmt: skip
        seconds = time.perf_counter() - first[0]
    finally:
        process.terminate()
        for reader in readers:
            reader.stop()
    return total / seconds


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.pipelines", description=__doc__)
    parser.add_argument("--items", type=int, default=40_000, help="items in all (default 40,000)")
    parser.add_argument("--broker", default=None, help="kafka, mock or noida (default: kafka)")
    args = parser.parse_args(argv)
    per_project = args.items // len(PROJECTS)
    with (
        tempfile.TemporaryDirectory(prefix="bench-pipelines-") as workdir,
        start_broker(args.broker) as broker,
        start_simulator_process(
            api_key=API_KEY, project_id=PROJECTS[0], also_serve=PROJECTS[1:], seed=1
        ) as sim,
    ):
        one = run_poller(broker, sim, PROJECTS[:1], per_project * len(PROJECTS), Path(workdir))
        four = run_poller(broker, sim, PROJECTS, per_project, Path(workdir))
    print(f"1 pipeline:  {one:,.0f} items/s ({per_project * len(PROJECTS):,} items)")
    print(f"4 pipelines: {four:,.0f} items/s ({per_project:,} items each, one process)")
    print(f"ratio 4/1:   {four / one:.2f}")
    print(orjson.dumps({"items": per_project * len(PROJECTS), "one_pipeline": round(one),
                        "four_pipelines": round(four), "ratio": round(four / one, 3),
                        "broker": broker.kind}).decode())  # fmt: skip


if __name__ == "__main__":
    main()
