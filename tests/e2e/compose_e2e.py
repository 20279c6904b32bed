"""`make compose-e2e`: the compose stack, run for real, end to end.

    python -m tests.e2e.compose_e2e [--keep] [--memory [SECONDS]] [--compose docker-compose]

Steps (each prints what it saw and how long it took):
 1. build the images from local bases (`tests/e2e/images.py`: no registry needed);
 2. bring the stack up: docker-compose.yml + docker-compose.override.yml (the development stack
    of a plain `docker compose up`) + tests/e2e/compose.local-images.yml, which swaps image names
    only; Grafana is left out (no image can be made here; its provisioning is checked offline).
    The host ports are free ones, given through the files' own HOST_PORT_* variables, so a
    program holding 9092 or 9400 on this machine does not get in the way;
 3. wait until every service is healthy (kafka-init: exited 0; the sample producer: running);
 4. send sample items, and three broken records, to `toloka.items` from the host;
 5. see every item published once on `toloka.results` (read_committed) and the broken records
    dead-lettered with their reasons;
 6. read the connector's metrics through Prometheus's HTTP API;
 7. with uploads in flight (the simulator answers slowly), `compose stop connector`: it must exit
    0 and say it stopped cleanly; then start it again and see every item published exactly once
    and uploaded exactly once (nothing lost, nothing repeated by the stop);
 8. tear the stack down (also after a failure, unless --keep).

With --memory, step 7 is followed by the figure the Kubernetes resources rest on: the load of
benchmark scenario 4 (a 1,000,000-record backlog, the API answering in 200 ms and 10 % with 429)
on `toloka-connector run` in its container, whose resident memory (VmRSS; VmHWM, the kernel's
peak) is read from /proc every second for 75 s, or SECONDS.

Where no container engine runs, it says so and exits 0: the run is opt-in, not part of
`make test`. A failure prints the services' states and log tails, and exits 1.
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, closing, contextmanager
from dataclasses import dataclass
from functools import partial
from typing import Any

import httpx
import orjson
from confluent_kafka import Consumer, Producer
from ruamel.yaml import YAML

from connector.kafka.produce import produce_when_room
from testkit.waiting import wait_for
from tests.e2e import images

ROOT = images.ROOT
COMPOSE_FILES = (
    ROOT / "docker-compose.yml",
    ROOT / "docker-compose.override.yml",
    ROOT / "tests" / "e2e" / "compose.local-images.yml",
)
PROJECT = "toloka-e2e"
ALERT_RULES = ROOT / "deploy" / "prometheus" / "alerts.yml"
NOT_STARTED = {"grafana": "no Grafana image can be made here (no package, no registry)"}
INPUT_TOPIC, OUTPUT_TOPIC, DLQ_TOPIC = "toloka.items", "toloka.results", "toloka.items.dlq"

SAMPLE_ITEMS = 500
DRAIN_ITEMS = 3000
DRAIN_API_LATENCY_SECONDS = 2.0  # each bulk request takes this long: uploads are in flight
HEALTH_TIMEOUT_SECONDS = 300.0
FLOW_TIMEOUT_SECONDS = 120.0
SCRAPE_TIMEOUT_SECONDS = 60.0  # a few of Prometheus's 10 s scrape intervals
MEMORY_BACKLOG = 1_000_000  # benchmark scenario 4's load (benchmarks/context.py)
MEMORY_SECONDS = 75.0
MEMORY_API_LATENCY_SECONDS = 0.2
MEMORY_429_RATIO = 0.1
BROKEN_RECORDS = {  # key suffix: (value, the error-reason the connector must give)
    "bad-json": (b"{not json", "invalid_json"),
    "bad-array": (b"[1, 2, 3]", "not_an_object"),
    "bad-item": (b'{"id": "no text field"}', "invalid_item"),
}


class StepFailedError(RuntimeError):
    pass


def say(message: str) -> None:
    print(message, flush=True)


@dataclass(frozen=True)
class HostPorts:
    """Where the stack's published ports land on this machine (HOST_PORT_* of the files)."""

    kafka: int
    simulator: int
    connector: int
    prometheus: int
    grafana: int

    @classmethod
    def free(cls) -> HostPorts:
        """Ports nothing listens on now: the kernel's pick for a bind to port 0."""
        with ExitStack() as held:  # all held at once, so no two picks are the same
            sockets = [held.enter_context(socket.socket()) for _ in range(5)]
            for probe in sockets:
                probe.bind(("0.0.0.0", 0))  # where docker publishes them
            return cls(*(probe.getsockname()[1] for probe in sockets))

    def environment(self) -> dict[str, str]:
        return {f"HOST_PORT_{name.upper()}": str(port) for name, port in vars(self).items()}


class Stack:
    """The compose project: one place that knows the command line, the files and the ports."""

    def __init__(self, compose: list[str], ports: HostPorts) -> None:
        self.argv = [*compose, "-p", PROJECT]
        for path in COMPOSE_FILES:
            self.argv += ["-f", str(path)]
        self.environment = {**os.environ, **ports.environment()}

    def run(self, *args: str, timeout: float = 600, check: bool = True) -> str:
        result = subprocess.run(
            [*self.argv, *args],
            cwd=ROOT,
            env=self.environment,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if check and result.returncode != 0:
            raise StepFailedError(
                f"`compose {' '.join(args)}` failed (exit {result.returncode}):\n"
                + (result.stdout + result.stderr)[-3000:]
            )
        return result.stdout

    def config(self) -> dict[str, Any]:
        loaded: dict[str, Any] = YAML(typ="safe").load(self.run("config"))
        return loaded

    def container(self, service: str) -> str:
        ids = self.run("ps", "--all", "-q", service).split()
        if len(ids) != 1:
            raise StepFailedError(f"{service}: expected one container, found {len(ids)}")
        return ids[0]

    def docker(self, *args: str) -> str:
        return subprocess.run(
            ["docker", *args], capture_output=True, text=True, timeout=60, check=True
        ).stdout

    def state(self, service: str) -> dict[str, Any]:
        state: dict[str, Any] = orjson.loads(
            self.docker("inspect", "--format", "{{json .State}}", self.container(service))
        )
        return state

    def resident_mib(self, service: str) -> tuple[float, float]:
        """(VmRSS, VmHWM) of the container's main process (PID 1: the exec-form entrypoint)."""
        status = self.docker("exec", self.container(service), "cat", "/proc/1/status")
        fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)

        def mib(name: str) -> float:
            return int(fields[name].split()[0]) / 1024  # the kernel writes "123456 kB"

        return mib("VmRSS"), mib("VmHWM")

    def report(self, services: Sequence[str]) -> None:
        """States and log tails: what a failed run leaves to read."""
        say(self.run("ps", "--all", check=False))
        for service in services:
            say(f"--- {service}: last log lines")
            say(self.run("logs", "--no-color", "--tail", "25", service, check=False))


def health(state: dict[str, Any]) -> str:
    """`healthy`, `running` (no health check), `exited 0`, or what is wrong."""
    if state["Status"] == "exited":
        return f"exited {state['ExitCode']}"
    if "Health" in state:
        return str(state["Health"]["Status"])
    return str(state["Status"])


@contextmanager
def step(number: int, title: str) -> Iterator[None]:
    say(f"[{number}/8] {title}")
    started = time.monotonic()
    try:
        yield
    except AssertionError as exc:  # wait_for's timeout
        raise StepFailedError(f"step {number} ({title}): {exc}") from None
    say(f"      ok in {time.monotonic() - started:.1f} s")


# --- Kafka from the host ---------------------------------------------------------------------


class TopicReader:
    """Reads a topic from its start as a read_committed consumer, counting records per key."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        self.consumer = Consumer(
            {
                "bootstrap.servers": bootstrap,
                "group.id": f"compose-e2e-{uuid.uuid4().hex[:8]}",
                "isolation.level": "read_committed",
                "auto.offset.reset": "earliest",
                "enable.auto.commit": False,
            }
        )
        self.consumer.subscribe([topic])
        self.keys: Counter[str] = Counter()
        self.records = 0
        self.headers: dict[str, dict[str, str]] = {}

    def read(self) -> None:
        for message in self.consumer.consume(1000, timeout=0.2):
            if message.error() is not None:
                continue
            key = (message.key() or b"").decode()
            self.records += 1
            self.keys[key] += 1
            headers = dict(message.headers() or [])
            self.headers[key] = {
                name: value.decode() if isinstance(value, bytes) else str(value)
                for name, value in headers.items()
            }

    def seen(self, keys: Sequence[str]) -> Callable[[], bool]:
        def all_seen() -> bool:
            self.read()
            return all(self.keys[key] for key in keys)

        return all_seen

    def close(self) -> None:
        self.consumer.close()


def produce(bootstrap: str, records: Iterator[tuple[str, bytes]]) -> None:
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 20})
    for key, value in records:
        produce_when_room(
            partial(producer.produce, INPUT_TOPIC, value, key=key.encode()),
            producer.poll,
            wait_seconds=0.1,
        )
        producer.poll(0)
    if producer.flush(120) != 0:
        raise StepFailedError("the host's producer could not deliver every record to Kafka")


def items(keys: Sequence[str]) -> Iterator[tuple[str, bytes]]:
    for n, key in enumerate(keys):
        yield key, orjson.dumps({"id": key, "text": f"compose e2e sample {n}"})


# --- the HTTP sides --------------------------------------------------------------------------


def prometheus_value(prometheus: httpx.Client, query: str) -> float | None:
    result = prometheus.get("/api/v1/query", params={"query": query}).json()["data"]["result"]
    return float(result[0]["value"][1]) if result else None


def gauge(connector: httpx.Client, name: str) -> float:
    """A gauge's sum over its labels, read from the connector's own /metrics."""
    text = connector.get("/metrics").text
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith(name) and line[len(name)] in " {"
    )


def set_knobs(simulator: httpx.Client, **knobs: float) -> None:
    simulator.patch("/_simulator/knobs", json=knobs).raise_for_status()


def uploaded_twice(simulator: httpx.Client, prefix: str) -> dict[str, int]:
    """Keys starting with `prefix` that the simulator created more than once, with counts."""
    answer = simulator.get("/_simulator/duplicates", params={"limit": 1_000_000})
    duplicates: dict[str, int] = answer.json()["duplicates"]
    return {key: count for key, count in duplicates.items() if key.startswith(prefix)}


def tenths(values: Sequence[float]) -> str:
    picked = [values[min(len(values) - 1, len(values) * k // 10)] for k in range(1, 11)]
    return ", ".join(f"{value:.0f}" for value in picked)


# --- the run ---------------------------------------------------------------------------------


@dataclass
class Run:
    stack: Stack
    ports: HostPorts
    services: list[str]
    config: dict[str, Any]
    prefix: str
    simulator: httpx.Client
    connector: httpx.Client
    prometheus: httpx.Client

    @property
    def kafka(self) -> str:
        return f"localhost:{self.ports.kafka}"

    def wait_healthy(self) -> None:
        seen: dict[str, str] = {}

        def all_healthy() -> bool:
            for service in self.services:
                status = health(self.stack.state(service))
                if seen.get(service) != status:
                    seen[service] = status
                    say(f"      {service}: {status}")
                if status == "unhealthy" or (status.startswith("exited") and status != "exited 0"):
                    raise StepFailedError(f"{service}: {status}")
            return all(s in {"healthy", "running", "exited 0"} for s in seen.values())

        wait_for(all_healthy, "every service healthy", HEALTH_TIMEOUT_SECONDS)
        for service, status in seen.items():
            check = self.config["services"][service].get("healthcheck", {})
            disabled = check.get("disable") or check.get("test") == ["NONE"]
            if status == "running" and check and not disabled:
                raise StepFailedError(f"{service} has a health check and no health")

    def flow(self, results: TopicReader, dead_letters: TopicReader) -> None:
        sample = [f"{self.prefix}{n}" for n in range(SAMPLE_ITEMS)]
        broken = {f"{self.prefix}{suffix}": spec for suffix, spec in BROKEN_RECORDS.items()}
        with step(4, f"send {len(sample)} items and {len(broken)} broken records from the host"):
            produce(self.kafka, items(sample))
            produce(self.kafka, ((key, value) for key, (value, _) in broken.items()))
        with step(5, "see them published once, and the broken ones dead-lettered"):
            wait_for(results.seen(sample), "every sample item published", FLOW_TIMEOUT_SECONDS)
            wait_for(dead_letters.seen(list(broken)), "the dead letters", FLOW_TIMEOUT_SECONDS)
            repeated = [key for key in sample if results.keys[key] != 1]
            if repeated:
                raise StepFailedError(f"published more than once: {repeated[:5]}")
            for key, (_, reason) in broken.items():
                got = dead_letters.headers[key].get("error-reason")
                if got != reason:
                    raise StepFailedError(f"{key}: error-reason {got}, expected {reason}")
            reasons = sorted(reason for _, reason in broken.values())
            say(f"      {len(sample)} results; dead letters: {reasons}")

    def metrics(self, published: int) -> None:
        up = 'up{job="toloka-connector"}'
        total = "sum(toloka_connector_results_published_total)"
        invalid = 'sum(toloka_connector_dead_letters_total{reason="invalid_json"})'

        def value(query: str) -> float:
            return prometheus_value(self.prometheus, query) or 0.0

        wait_for(lambda: value(up) == 1, up, SCRAPE_TIMEOUT_SECONDS)
        wait_for(
            lambda: value(total) >= published,
            f"{total} >= {published} (the records on {OUTPUT_TOPIC})",
            SCRAPE_TIMEOUT_SECONDS,
        )
        wait_for(lambda: value(invalid) >= 1, f"{invalid} >= 1", SCRAPE_TIMEOUT_SECONDS)
        groups = self.prometheus.get("/api/v1/rules").json()["data"]["groups"]
        rules = sum(len(group["rules"]) for group in groups)
        ours = YAML(typ="safe").load(ALERT_RULES)["groups"]
        if rules != sum(len(group["rules"]) for group in ours):
            raise StepFailedError(f"Prometheus loaded {rules} rules, {ALERT_RULES.name} has more")
        say(
            f"      {up} = 1; {total} = {value(total):.0f}; {invalid} = {value(invalid):.0f}; "
            f"the {rules} alert rules of {ALERT_RULES.name} loaded"
        )

    def drain(self, results: TopicReader) -> None:
        keys = [f"{self.prefix}drain-{n}" for n in range(DRAIN_ITEMS)]
        set_knobs(self.simulator, latency=DRAIN_API_LATENCY_SECONDS)
        produce(self.kafka, items(keys))
        in_flight = "toloka_connector_upload_requests_in_flight"
        wait_for(lambda: gauge(self.connector, in_flight) > 0, "uploads in flight", 60)
        requests = gauge(self.connector, in_flight)
        started = time.monotonic()
        self.stack.run("stop", "connector")
        took = time.monotonic() - started
        state = self.stack.state("connector")
        say(
            f"      stopped with {requests:.0f} bulk requests in flight: "
            f"exit {state['ExitCode']} after {took:.1f} s"
        )
        if state["ExitCode"] != 0:
            raise StepFailedError(f"the connector exited {state['ExitCode']}, not 0")
        last_lines = self.stack.run("logs", "--no-color", "--tail", "5", "connector")
        if "stopped cleanly" not in last_lines:
            raise StepFailedError(f"no clean stop in the log:\n{last_lines}")
        set_knobs(self.simulator, latency=0.0)
        self.stack.run("start", "connector")
        wait_for(
            lambda: health(self.stack.state("connector")) == "healthy",
            "the restarted connector healthy",
            HEALTH_TIMEOUT_SECONDS,
        )
        wait_for(results.seen(keys), "every drain item published", FLOW_TIMEOUT_SECONDS)
        results.read()
        repeated = [key for key in keys if results.keys[key] != 1]
        twice = uploaded_twice(self.simulator, self.prefix)
        say(
            f"      after the restart: {len(keys)} of {len(keys)} published, "
            f"{len(repeated)} more than once; {len(twice)} uploaded twice"
        )
        if repeated or twice:
            raise StepFailedError(f"repeated results {repeated[:5]}, repeated uploads {twice}")

    def memory(self, seconds: float) -> None:
        """Resident memory of `run` under a large backlog and a slow, rate-limiting API."""
        set_knobs(
            self.simulator, latency=MEMORY_API_LATENCY_SECONDS, http_429_ratio=MEMORY_429_RATIO
        )
        produce(self.kafka, items([f"{self.prefix}memory-{n}" for n in range(MEMORY_BACKLOG)]))
        rss: list[float] = []
        outstanding: list[float] = []
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            rss.append(self.stack.resident_mib("connector")[0])
            outstanding.append(gauge(self.connector, "toloka_connector_items_outstanding"))
            time.sleep(1.0)  # the sampling period, not a wait for a condition
        now, peak = self.stack.resident_mib("connector")
        tracked = gauge(self.connector, "toloka_connector_late_window_tracked_items")
        created = self.simulator.get("/_simulator/stats").json()["items_created"]
        set_knobs(self.simulator, latency=0.0, http_429_ratio=0.0)
        say(
            f"      backlog {MEMORY_BACKLOG:,}; {created:,} items created in {seconds:.0f} s; "
            f"at each tenth: RSS (MiB) {tenths(rss)}; items outstanding (uploaded, not yet "
            f"published) {tenths(outstanding)}"
        )
        say(
            f"      connector RSS at the end {now:.0f} MiB, peak (VmHWM) {peak:.0f} MiB; "
            f"{tracked:,.0f} ids tracked for the late window"
        )


def run(stack: Stack, ports: HostPorts, keep: bool, memory_seconds: float | None) -> None:
    with step(1, "build the images from local bases"):
        images.build_all()
    config = stack.config()
    services = [name for name in config["services"] if name not in NOT_STARTED]
    for name, why in NOT_STARTED.items():
        say(f"      not started: {name}: {why}")
    say(f"      host ports: {', '.join(f'{k}={v}' for k, v in ports.environment().items())}")
    with (
        httpx.Client(base_url=f"http://localhost:{ports.simulator}", timeout=10) as simulator,
        httpx.Client(base_url=f"http://localhost:{ports.connector}", timeout=10) as connector,
        httpx.Client(base_url=f"http://localhost:{ports.prometheus}", timeout=10) as prometheus,
    ):
        e2e = Run(
            stack,
            ports,
            services,
            config,
            f"e2e-{uuid.uuid4().hex[:8]}-",
            simulator,
            connector,
            prometheus,
        )
        try:
            with step(2, f"compose up: {', '.join(services)}"):
                stack.run("up", "-d", "--no-build", *services)
            with step(3, "wait until every service is healthy"):
                e2e.wait_healthy()
            with (
                closing(TopicReader(e2e.kafka, OUTPUT_TOPIC)) as results,
                closing(TopicReader(e2e.kafka, DLQ_TOPIC)) as dead_letters,
            ):
                e2e.flow(results, dead_letters)
                with step(6, "read the connector's metrics through Prometheus"):
                    e2e.metrics(results.records)
                with step(7, "stop the connector with uploads in flight; nothing lost"):
                    e2e.drain(results)
            if memory_seconds:
                with step(7, "memory of `run` under back-pressure (--memory)"):
                    e2e.memory(memory_seconds)
        except BaseException:
            stack.report(services)
            raise
        finally:
            if keep:
                say(f"[8/8] --keep: the stack stays up (compose -p {PROJECT} down -v removes it)")
            else:
                with step(8, "tear down"):
                    stack.run("down", "-v", "--remove-orphans")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tests.e2e.compose_e2e", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--keep", action="store_true", help="leave the stack up at the end")
    parser.add_argument(
        "--memory",
        type=float,
        nargs="?",
        const=MEMORY_SECONDS,
        metavar="SECONDS",
        help=f"measure the connector's memory under load too (default {MEMORY_SECONDS:g} s)",
    )
    parser.add_argument(
        "--compose",
        metavar="COMMAND",
        help="the compose command, e.g. docker-compose (default: `docker compose` where the v2 "
        "plugin exists, else docker-compose)",
    )
    args = parser.parse_args(argv)
    problem = images.engine_problem()
    if problem is not None:
        say(f"compose-e2e: skipped: {problem}")
        return 0
    compose = args.compose.split() if args.compose else images.compose_command()
    assert compose is not None  # engine_problem() checked that one exists
    say(f"compose-e2e: {' '.join(compose)}, files {', '.join(p.name for p in COMPOSE_FILES)}")
    started = time.monotonic()
    ports = HostPorts.free()
    try:
        run(Stack(compose, ports), ports, args.keep, args.memory)
    except (StepFailedError, images.ImageBuildError) as exc:
        say(f"compose-e2e: FAILED after {time.monotonic() - started:.0f} s: {exc}")
        return 1
    say(f"compose-e2e: passed in {time.monotonic() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
