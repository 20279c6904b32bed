"""The demo itself: a broker, the simulator, topics, sample items, both roles, a summary.

Everything runs on this machine: the development broker (the mock cluster by default, real
Apache Kafka with `--broker kafka`), the simulator in a process of its own, and the connector's
uploader and poller in this process, exactly as `toloka-connector run` runs them.
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import orjson

from connector.app.process import run_connector
from connector.app.topics import connector_topics
from connector.config import Settings, load_settings
from connector.demo.feed import Feed
from connector.demo.next_steps import DemoCommands
from connector.demo.observer import TopicObserver
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
) -> Settings:
    formats = {
        "CONNECTOR_INPUT_FORMAT": value_format,
        "CONNECTOR_OUTPUT_FORMAT": value_format,
        "SCHEMA_REGISTRY_URL": registry.url if registry is not None else "",
    }
    return load_settings(
        environ={
            **formats,
            "TOLOKA_API_KEY": simulator.api_key,
            "TOLOKA_BASE_URL": simulator.base_url,
            "TOLOKA_APP_PROJECT_ID": simulator.project_id,
            "KAFKA_BOOTSTRAP_SERVERS": broker.bootstrap_servers,
            "CONNECTOR_METRICS_PORT": str(metrics_port),
            # Results should show up while the user watches, not after the idle interval.
            "CONNECTOR_POLL_INTERVAL_SECONDS": "0.2",
            "CONNECTOR_IDLE_POLL_INTERVAL_SECONDS": "0.5",
            "CONNECTOR_SHUTDOWN_TIMEOUT_SECONDS": "15",
            "CONNECTOR_DRAIN_TIMEOUT_SECONDS": "10",  # within the shutdown timeout
        }
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


def uploaded_items(metrics: Metrics) -> int:
    return int(metrics.sample("toloka_connector_items_uploaded_total") or 0)


@dataclass
class Watch:
    """What the progress display reads each tick."""

    observer: TopicObserver
    metrics: Metrics
    simulator: SimulatorProcess
    produced_at: dict[str, float]

    def counts(self) -> Counts:
        observed = self.observer.snapshot()
        return Counts(
            produced=len(self.produced_at),
            uploaded=uploaded_items(self.metrics),
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
    with demo_environment(options) as (broker, simulator, registry):
        settings = demo_settings(
            broker, simulator, free_or_given_port(options.metrics_port), registry,
            options.value_format,
        )  # fmt: skip
        decode: Callable[[bytes], Any] = orjson.loads
        if registry is not None:
            # Imported only then: every command pays for what `cli` imports.
            from connector.demo.formats import encoded_samples, result_decoder  # noqa: PLC0415

            decode = result_decoder(options.value_format, registry.url)
            records = encoded_samples(
                records, options.value_format, registry.url, settings.uploader.input_topic
            )
        broker.create_topics(connector_topics(settings))
        metrics_url = f"http://127.0.0.1:{settings.runtime.metrics_port}/metrics"
        print(
            f"broker {broker.bootstrap_servers}, simulator {simulator.base_url}, "
            f"metrics {metrics_url}",
            flush=True,
        )
        commands = DemoCommands(settings, broker)
        metrics = Metrics()
        produced_at: dict[str, float] = {}
        observer = TopicObserver(
            broker.bootstrap_servers,
            settings.poller.output_topic,
            settings.uploader.dlq_topic,
            produced_at,
            decode,
        )
        roles = RolesInBackground(settings, metrics)
        feed = Feed(
            records,
            {"bootstrap.servers": broker.bootstrap_servers},
            settings.uploader.input_topic,
            options.rate,
            produced_at,
        )
        stop_feeding = threading.Event()
        feeder = threading.Thread(target=feed.run, args=(stop_feeding,), name="demo-feed")
        started = time.time()
        feeder.start()
        view = ProgressView(options.items)
        watch = Watch(observer, metrics, simulator, produced_at)
        try:
            counts = watch.until_done(
                view,
                options.items,
                time.monotonic() + options.timeout_seconds,
                roles,
                interrupted,
            )
            stop_feeding.set()
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
            observer.close()
            roles.stop()
        if roles.failure is not None:
            log.error("%s", roles.failure)
        observed = observer.snapshot()
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
            uploaded=uploaded_items(metrics),
            published=len(observed.published_ids),
            repeated_results=observed.repeated_results,
            statuses=observed.statuses,
            dead_letters=observed.dead_letters,
            seconds=seconds,
            latencies_seconds=observed.latencies_seconds,
            metrics_url=metrics_url if options.keep_running else None,
            read_output_command=_read_output_command(settings, broker, options.keep_running),
            interrupted=interrupted_early,
        )


def _read_output_command(settings: Settings, broker: Broker, kept: bool) -> str:
    topic = settings.poller.output_topic
    if kept:
        return DemoCommands(settings, broker).lines()[0][1]
    return f"toloka-connector tail {topic}  (your own Kafka; --keep-running keeps this one up)"
