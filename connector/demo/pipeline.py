"""The demo itself: a broker, the simulator, topics, sample items, both roles, a summary.

Everything runs on this machine: the development broker (the mock cluster by default, real
Apache Kafka with `--broker kafka`), the simulator in a process of its own, and the connector's
uploader and poller in this process, exactly as `toloka-connector run` runs them. With
`projects` above 1, the simulator serves that many app projects and the connector one pipeline
for each (`[[pipelines]]` in a settings file of the demo's), each with topics of its own; the
sample items are dealt out to them in turn.
"""

from __future__ import annotations

import logging
import socket
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson

from connector.app.process import run_connector
from connector.app.topics import connector_topics
from connector.config import Settings, load_settings
from connector.demo.feed import Feed
from connector.demo.next_steps import DemoCommands
from connector.demo.observer import Observed, TopicObserver, merged
from connector.demo.progress import Counts, ProgressView
from connector.demo.samples import sample_records
from connector.demo.summary import Summary
from connector.devtools.brokers.base import Broker
from connector.devtools.brokers.start import start_broker
from connector.errors import RoleFailedError
from connector.metrics import Metrics
from connector.simulator.process import SimulatorProcess, start_simulator_process

if TYPE_CHECKING:
    from connector.devtools.registry.server import RegistrySimulator

log = logging.getLogger(__name__)

DEMO_API_KEY = "demo-key"
DEMO_PROJECT_ID = "demo-project"
TICK_SECONDS = 0.25


@dataclass(frozen=True)
class DemoOptions:
    items: int = 1000
    rate: float = 500.0
    """Items produced per second; 0 for as fast as possible."""
    broker: str = "mock"
    metrics_port: int = 9400
    timeout_seconds: float = 120.0
    keep_running: bool = False
    seed: int = 7
    value_format: str = "json"
    """json, or avro / protobuf / json_schema through the registry simulator."""
    projects: int = 1
    """App projects, one pipeline each, in the one connector process."""


def demo_projects(count: int) -> list[str]:
    """The app project ids of a demo of `count` projects: `demo-project`, `demo-project-2` …"""
    return [DEMO_PROJECT_ID, *(f"{DEMO_PROJECT_ID}-{n}" for n in range(2, count + 1))]


def pipelines_file(directory: Path, projects: Sequence[str]) -> Path:
    """A settings file with one `[[pipelines]]` table per project, each with its own topics."""
    tables = [
        f'[[pipelines]]\napp_project_id = "{project}"\n'
        f'input_topic = "demo.{project}.items"\noutput_topic = "demo.{project}.results"\n'
        f'dlq_topic = "demo.{project}.items.dlq"\n'
        for project in projects
    ]
    path = directory / "pipelines.toml"
    path.write_text("\n".join(tables))
    return path


def free_or_given_port(port: int) -> int:
    """The port asked for when it is free, else any free one (a second demo must not fail)."""
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def demo_settings(
    broker: Broker,
    simulator: SimulatorProcess,
    metrics_port: int,
    registry: RegistrySimulator | None = None,
    value_format: str = "json",
    *,
    pipelines: Path | None = None,
) -> Settings:
    """The demo's settings: one project, or the `[[pipelines]]` of the file `pipelines`."""
    formats = {
        "CONNECTOR_INPUT_FORMAT": value_format,
        "CONNECTOR_OUTPUT_FORMAT": value_format,
        "SCHEMA_REGISTRY_URL": registry.url if registry is not None else "",
    }
    project = {} if pipelines else {"TOLOKA_APP_PROJECT_ID": simulator.project_id}
    if pipelines:
        # One uploader per pipeline joins the one consumer group: librdkafka's mock cluster
        # holds a rebalance of a group with members for up to the session timeout (45 s).
        project["KAFKA_SESSION_TIMEOUT_MS"] = "6000"
    return load_settings(
        pipelines,
        environ={
            **formats,
            **project,
            "TOLOKA_API_KEY": simulator.api_key,
            "TOLOKA_BASE_URL": simulator.base_url,
            "KAFKA_BOOTSTRAP_SERVERS": broker.bootstrap_servers,
            "CONNECTOR_METRICS_PORT": str(metrics_port),
            # Results should show up while the user watches, not after the idle interval.
            "CONNECTOR_POLL_INTERVAL_SECONDS": "0.2",
            "CONNECTOR_IDLE_POLL_INTERVAL_SECONDS": "0.5",
            "CONNECTOR_SHUTDOWN_TIMEOUT_SECONDS": "15",
            "CONNECTOR_DRAIN_TIMEOUT_SECONDS": "10",  # within the shutdown timeout
        },
    )


class RolesInBackground:
    """Both roles in a thread, as `run` runs them, stopped by `stop()`; failures surface on
    `stop()`."""

    def __init__(self, settings: Settings, metrics: Metrics) -> None:
        self._stop = threading.Event()
        self.failure: Exception | None = None

        def run() -> None:
            try:
                run_connector(("uploader", "poller"), settings, metrics=metrics, stop=self._stop)
            except RoleFailedError as exc:
                self.failure = exc

        # A daemon: a second Ctrl-C must end the demo even while the roles still drain.
        self._thread = threading.Thread(target=run, name="demo-roles", daemon=True)
        self._thread.start()

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


@contextmanager
def demo_environment(
    options: DemoOptions,
) -> Iterator[tuple[Broker, SimulatorProcess, RegistrySimulator | None]]:
    with ExitStack() as stack:
        print(f"starting the development broker ({options.broker}) …", flush=True)
        broker = stack.enter_context(start_broker(options.broker))
        print("starting the Toloka API simulator …", flush=True)
        simulator = stack.enter_context(
            start_simulator_process(
                api_key=DEMO_API_KEY,
                project_id=DEMO_PROJECT_ID,
                also_serve=demo_projects(options.projects)[1:],
                seed=options.seed,
                processing_delay=0.5,
                processing_jitter=1.5,
                item_error_ratio=0.02,
            )
        )
        registry = None
        if options.value_format != "json":
            print("starting the Schema Registry simulator …", flush=True)
            from connector.devtools.registry.server import RegistrySimulator  # noqa: PLC0415

            registry = stack.enter_context(RegistrySimulator())
        yield broker, simulator, registry


def uploaded_items(metrics: Metrics, projects: Sequence[str]) -> int:
    name = "toloka_connector_items_uploaded_total"
    return int(sum(metrics.for_project(p).sample(name) or 0 for p in projects))


@dataclass
class Watch:
    """What the progress display reads each tick."""

    observers: dict[str, TopicObserver]
    """One per app project (its output and dead-letter topics)."""
    metrics: Metrics
    simulator: SimulatorProcess
    produced_at: dict[str, float]

    def snapshot(self) -> Observed:
        return merged([observer.snapshot() for observer in self.observers.values()])

    def counts(self) -> Counts:
        observed = self.snapshot()
        return Counts(
            produced=len(self.produced_at),
            uploaded=uploaded_items(self.metrics, list(self.observers)),
            finished=int(self.simulator.stats().get("items_finished", 0)),
            published=len(observed.published_ids),
            dead_lettered=sum(observed.dead_letters.values()),
        )

    def until_done(
        self,
        view: ProgressView,
        total: int,
        deadline: float,
        roles: RolesInBackground,
        interrupted: threading.Event,
    ) -> Counts:
        while True:
            counts = self.counts()
            view.update(counts)
            done = counts.published + counts.dead_lettered >= total
            if done or time.monotonic() > deadline or not roles.alive:
                return counts
            if interrupted.wait(TICK_SECONDS):  # the display's refresh rate, or Ctrl-C
                return self.counts()


def run_demo(options: DemoOptions, interrupted: threading.Event | None = None) -> Summary:
    """Run the demo to its end, its timeout, or `interrupted` (Ctrl-C): then the feed, the
    roles, the simulator and the broker are stopped in that order, and the summary says what
    was done. With `keep_running`, the pipeline stays up after the progress until `interrupted`
    (the summary then counts that as the end, not an interruption)."""
    interrupted = interrupted if interrupted is not None else threading.Event()
    records = sample_records(options.items, options.seed)
    projects = demo_projects(options.projects)
    with demo_environment(options) as (broker, simulator, registry), ExitStack() as files:
        directory = Path(files.enter_context(tempfile.TemporaryDirectory(prefix="demo-")))
        settings = demo_settings(
            broker, simulator, free_or_given_port(options.metrics_port), registry,
            options.value_format,
            pipelines=pipelines_file(directory, projects) if len(projects) > 1 else None,
        )  # fmt: skip
        pipelines = {pipeline.toloka.app_project_id: pipeline for pipeline in settings.pipelines}
        # The samples dealt out to the projects in turn.
        dealt = {project: records[n :: len(projects)] for n, project in enumerate(projects)}
        decode: Callable[[bytes], Any] = orjson.loads
        if registry is not None:
            # Imported only then: every command pays for what `cli` imports.
            from connector.demo.formats import encoded_samples, result_decoder  # noqa: PLC0415

            decode = result_decoder(options.value_format, registry.url)
            dealt = {
                project: encoded_samples(
                    dealt[project],
                    options.value_format,
                    registry.url,
                    pipelines[project].uploader.input_topic,
                )
                for project in projects
            }
            records = [record for project in projects for record in dealt[project]]
        specs = [spec for pipeline in settings.pipelines for spec in connector_topics(pipeline)]
        broker.create_topics(list({spec.name: spec for spec in specs}.values()))  # state: once
        metrics_url = f"http://127.0.0.1:{settings.runtime.metrics_port}/metrics"
        print(
            f"broker {broker.bootstrap_servers}, simulator {simulator.base_url}, "
            f"metrics {metrics_url}"
            + (f", app projects {', '.join(projects)}" if len(projects) > 1 else ""),
            flush=True,
        )
        commands = DemoCommands(settings, broker)
        metrics = Metrics(app_project=projects[0])
        produced_at: dict[str, float] = {}
        observers = {
            project: TopicObserver(
                broker.bootstrap_servers,
                pipeline.poller.output_topic,
                pipeline.uploader.dlq_topic,
                produced_at,
                decode,
            )
            for project, pipeline in pipelines.items()
        }
        roles = RolesInBackground(settings, metrics)
        feeds = [
            Feed(
                dealt[project],
                {"bootstrap.servers": broker.bootstrap_servers},
                pipeline.uploader.input_topic,
                options.rate / len(projects),
                produced_at,
            )
            for project, pipeline in pipelines.items()
        ]
        stop_feeding = threading.Event()
        feeders = [
            threading.Thread(target=feed.run, args=(stop_feeding,), name="demo-feed")
            for feed in feeds
        ]
        started = time.time()
        for feeder in feeders:
            feeder.start()
        view = ProgressView(options.items)
        watch = Watch(observers, metrics, simulator, produced_at)
        try:
            counts = watch.until_done(
                view,
                options.items,
                time.monotonic() + options.timeout_seconds,
                roles,
                interrupted,
            )
            stop_feeding.set()
            for feeder in feeders:
                feeder.join()
            view.close(counts)
            # With --keep-running, Ctrl-C after this point is the expected end, not an interrupt.
            interrupted_early = interrupted.is_set()
            if options.keep_running and roles.alive and not interrupted.is_set():
                print(
                    f"\nthe pipeline keeps running: metrics at {metrics_url}; Ctrl-C stops it\n"
                    f"{commands.as_text()}",
                    flush=True,
                )
                while roles.alive and not interrupted.wait(TICK_SECONDS):
                    pass
        finally:
            stop_feeding.set()
            for observer in observers.values():
                observer.close()
            roles.stop()
        if roles.failure is not None:
            log.error("%s", roles.failure)
        by_project = {project: observer.snapshot() for project, observer in observers.items()}
        observed = merged(list(by_project.values()))
        seconds = (observed.last_result_at or time.time()) - started
        sent = [r for r in records if r.key.decode() in produced_at]
        expected = Counter(r.expected for r in sent)
        expected_valid = expected.pop("valid", 0)
        return Summary(
            broker=f"{broker.kind} ({broker.bootstrap_servers})",
            items=options.items,
            produced=len(sent),
            expected_valid=expected_valid,
            expected_dead_letters=expected,
            uploaded=uploaded_items(metrics, projects),
            published=len(observed.published_ids),
            repeated_results=observed.repeated_results,
            statuses=observed.statuses,
            dead_letters=observed.dead_letters,
            seconds=seconds,
            latencies_seconds=observed.latencies_seconds,
            metrics_url=metrics_url if options.keep_running else None,
            read_output_command=_read_output_command(settings, broker, options.keep_running),
            interrupted=interrupted_early,
            by_project=(
                {
                    project: {
                        "published": len(seen.published_ids),
                        "dead_letters": sum(seen.dead_letters.values()),
                    }
                    for project, seen in by_project.items()
                }
                if len(projects) > 1
                else {}
            ),
        )


def _read_output_command(settings: Settings, broker: Broker, kept: bool) -> str:
    topic = settings.poller.output_topic
    if kept:
        return DemoCommands(settings, broker).lines()[0][1]
    return f"toloka-connector tail {topic}  (your own Kafka; --keep-running keeps this one up)"
