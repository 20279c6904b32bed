"""The poller as a `connector.lifecycle.Standing`, and `build_poller` that wires it to Kafka."""

from __future__ import annotations

import os
import random
import socket
import threading
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from connector.clock import Clock, SystemClock
from connector.config import SchemaRegistrySettings, Settings
from connector.contract.leadership import leadership_topic
from connector.kafka.availability import KafkaAvailability
from connector.kafka.transactions import ProducerFactory, kafka_producer_factory
from connector.lifecycle import Heartbeat, Readiness, retries_end_on_stop
from connector.metrics import Metrics
from connector.outstanding import OutstandingItems
from connector.poller.encoded_output import OutputEncoding, registry_encoder_factory
from connector.poller.group import LeadershipGroup, Lease
from connector.poller.leadership import Standing
from connector.poller.limits import RecordLimits, read_max_message_bytes
from connector.poller.listing import ItemSource
from connector.poller.loop import PollerLoop
from connector.poller.publisher import TAKEOVER_STEP_FLOOR_SECONDS
from connector.poller.state import KafkaStateStore
from connector.startup import StartupRead, read_at_startup
from connector.toloka.availability import KEY_REFUSED
from connector.toloka.models import App, AppProject
from connector.toloka.retry import RetryPolicy

TOPIC_LIMITS_READ_SECONDS = 2.0
"""How long a take-over waits for the topics' max.message.bytes (once; real Kafka answers in
milliseconds, a broker without DescribeConfigs never: the broker's refusals then teach it)."""

LEADERSHIP_TOPICS_SECONDS = 5.0
"""How long the poller waits for CreateTopics of its leadership topics before asking for them by a
metadata request (real Kafka answers in milliseconds; the mock cluster, which creates them that
way, never answers CreateTopics: the demo's poller waits this long at its first start)."""


def instance_id() -> str:
    """Names this process in the cursor records it writes (host, pid, and a random tail)."""
    return f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:8]}"


class ProjectReader(Protocol):
    """What the poller reads at start-up (TolokaClient implements it)."""

    def get_project(self) -> AppProject: ...
    def stop_retrying(self) -> None: ...


class AppReader(Protocol):
    """What the poller reads of the app when its output has a schema (the specs)."""

    def get_app(self, app_id: str) -> App: ...


class PollerClient(ItemSource, ProjectReader, AppReader, Protocol):
    """What the poller needs of `TolokaClient`."""


class Poller:
    """Finished items → output topic, cursor → state topic; leader or standby.

    Before anything else it reads its app project from the API: a project the API does not know
    (or a key it refuses) is a start-up error, as for the uploader, and nothing is written to the
    state topic for it.
    """

    name = "poller"

    def __init__(
        self,
        loop: PollerLoop,
        heartbeat: Heartbeat,
        client: ProjectReader,
        *,
        startup_backoff: RetryPolicy,
        progress_timeout_seconds: float,
        clock: Clock | None = None,
        rng: random.Random | None = None,
        output: OutputEncoding | None = None,
        app_reader: AppReader | None = None,
        leadership: tuple[LeadershipGroup, Lease] | None = None,
    ) -> None:
        self._leadership = leadership
        self._output = output
        self._app_reader = app_reader
        self._loop = loop
        self.heartbeat = heartbeat
        self._client = client
        self._backoff = startup_backoff
        self._progress_timeout = progress_timeout_seconds
        self._clock: Clock = clock or SystemClock()
        self._rng = rng or random.Random()  # noqa: S311 - jitter, not cryptography
        self._startup = StartupRead("the app project")
        self._project_read = False

    def run(self, stop: threading.Event) -> None:
        """Read the project, then poll it: where the leadership group says, when given one."""
        # The client retries a listing through an outage; a shutdown ends the retries, so the
        # leader releases its leadership within the shutdown budget.
        with retries_end_on_stop(stop, self._client):
            with self.heartbeat.waiting_on("the Toloka API (the app project)"):
                project = read_at_startup(
                    self._client.get_project, self._startup,
                    client=self._client, stop=stop, clock=self._clock, backoff=self._backoff,
                    rng=self._rng,
                )  # fmt: skip
            if project is None:
                return
            if self._output is not None and not self._prepare_output(project.app_id, stop):
                return
            self._project_read = True
            if self._leadership is None:
                self._loop.run(stop)
                return
            group, lease = self._leadership
            with group.joined(stop, lease):
                self._loop.run(stop, lease)

    def _prepare_output(self, app_id: str, stop: threading.Event) -> bool:
        """Read the app's specs and register the output schema (waiting out an API or registry
        outage); False when stopped first."""
        assert self._output is not None
        assert self._app_reader is not None
        reader = self._app_reader
        self._startup = StartupRead("the app's specs")
        with self.heartbeat.waiting_on("the Toloka API (the app's specs)"):
            app = read_at_startup(
                lambda: reader.get_app(app_id), self._startup,
                client=self._client, stop=stop, clock=self._clock, backoff=self._backoff,
                rng=self._rng,
            )  # fmt: skip
        if app is None:
            return False
        output = self._output
        self._startup = StartupRead("the output schema", source="the Schema Registry")

        def prepare() -> bool:
            output.prepare(app)
            return True

        with self.heartbeat.waiting_on("the Schema Registry (the output schema)"):
            prepared = read_at_startup(
                prepare, self._startup,
                client=self._client, stop=stop, clock=self._clock, backoff=self._backoff,
                rng=self._rng,
            )  # fmt: skip
        return prepared is not None

    def readiness(self) -> Readiness:
        if not self._project_read:
            return Readiness(False, self._startup.detail())
        status = self._loop.status
        standing = status.standing
        problems = [] if status.kafka_problem is None else [status.kafka_problem]
        group_problem = (
            None if self._leadership is None else self._leadership[0].problem(self._leadership[1])
        )
        if group_problem is not None:
            problems.append(group_problem)
        if not self._loop.key.up:
            problems.append(f"{KEY_REFUSED}; listing again until it is accepted")
        if standing is Standing.LEADER:
            problems += self._stalled()
        if problems:
            return Readiness(ready=False, detail="; ".join([standing.value, *problems]))
        return Readiness(ready=standing is not Standing.STARTING, detail=standing.value)

    def _stalled(self) -> list[str]:
        """The leader's progress problems: listings or transactions failing for too long."""
        status = self._loop.status
        now = self._clock.monotonic()
        problems = []
        since_listing = now - status.last_listing_at
        if since_listing > self._progress_timeout:
            failure = f" (last failure: {status.listing_failure})" if status.listing_failure else ""
            problems.append(f"no listing answered for {since_listing:.0f}s{failure}")
        since_commit = now - status.last_commit_at
        if since_commit > self._progress_timeout:
            problems.append(f"no transaction committed for {since_commit:.0f}s")
        return problems


@dataclass(frozen=True)
class PollerPipeline:
    """One app project the poller serves: its settings (`settings.toloka.app_project_id` names
    it), its API client and the metrics its work counts in."""

    settings: Settings
    client: PollerClient
    metrics: Metrics
    outstanding: OutstandingItems | None = None
    """The items this process's uploader created in the project, when both roles run here."""

    @property
    def app_project_id(self) -> str:
        return self.settings.toloka.app_project_id


def build_poller(
    settings: Settings,
    client: PollerClient,
    metrics: Metrics,
    outstanding: OutstandingItems | None = None,
    *,
    clock: Clock | None = None,
    kafka: KafkaAvailability | None = None,
) -> Poller:
    """The poller of the one app project of `settings` (`build_pollers` for several)."""
    pipeline = PollerPipeline(settings, client, metrics, outstanding)
    (poller,) = build_pollers([pipeline], clock=clock, kafka=kafka)
    return poller


def build_pollers(
    pipelines: Sequence[PollerPipeline],
    *,
    clock: Clock | None = None,
    kafka: KafkaAvailability | None = None,
) -> list[Poller]:
    """One poller per pipeline on real Kafka clients, all led where one leadership group member
    of this process is assigned them; the clients report to `kafka` (the producers and the
    state topic's consumers are polled all the time they exist). The Kafka connection, the
    group id and the leader timeout are the deployment's: the first pipeline's settings say
    them."""
    clock = clock or SystemClock()
    shared = pipelines[0].settings
    kafka_config = shared.kafka.client_config()
    kafka_config = kafka_config if kafka is None else kafka.watch(kafka_config)
    leases = {pipeline.app_project_id: Lease() for pipeline in pipelines}
    poller = shared.poller
    group = LeadershipGroup(
        kafka_config,
        group_id=poller.group_id,
        leases={
            leadership_topic(p.settings.poller.state_topic, p.app_project_id): leases[
                p.app_project_id
            ]
            for p in pipelines
        },
        session_timeout_seconds=poller.leader_timeout_seconds,
        revoke_timeout_seconds=max(poller.transaction_timeout_seconds, TAKEOVER_STEP_FLOOR_SECONDS),
        topic_timeout_seconds=LEADERSHIP_TOPICS_SECONDS,
    )
    instance = instance_id()
    return [
        build_pipeline_poller(
            pipeline,
            kafka_config=kafka_config,
            clock=clock,
            instance=instance,
            leadership=(group, leases[pipeline.app_project_id]),
        )
        for pipeline in pipelines
    ]


def build_pipeline_poller(
    pipeline: PollerPipeline,
    *,
    kafka_config: Mapping[str, Any],
    clock: Clock,
    instance: str,
    leadership: tuple[LeadershipGroup, Lease],
) -> Poller:
    """One pipeline's poller: its loop, transactional producer and state store."""
    settings, metrics = pipeline.settings, pipeline.metrics
    poller = settings.poller
    project = pipeline.app_project_id
    client = pipeline.client
    heartbeat = Heartbeat("poller", clock)
    limits = RecordLimits(
        kafka_config,
        (poller.output_topic, poller.dlq_topic, poller.state_topic),
        read_max_message_bytes(kafka_config, TOPIC_LIMITS_READ_SECONDS),
    )
    producer_factory = kafka_producer_factory(
        kafka_config, project, poller.transaction_timeout_seconds, limits.producer_config
    )
    output = output_encoding(settings, metrics, dlq_limit=lambda: limits.limit(poller.dlq_topic))
    if output is not None:
        producer_factory = _encoding(producer_factory, output)
    loop = PollerLoop(
        poller,
        project,
        source=client,
        producer_factory=producer_factory,
        store=KafkaStateStore(
            kafka_config,
            topic=poller.state_topic,
            app_project_id=project,
            group_id=poller.group_id,
            timeout_seconds=max(poller.transaction_timeout_seconds, TAKEOVER_STEP_FLOOR_SECONDS),
            clock=clock,
        ),
        clock=clock,
        metrics=metrics,
        heartbeat=heartbeat,
        instance_id=instance,
        outstanding=pipeline.outstanding,
        limits=limits,
        response_limit_bytes=settings.api.max_response_bytes,
    )
    return Poller(
        loop,
        heartbeat,
        client,
        startup_backoff=RetryPolicy(
            max_attempts=None,
            base_delay_seconds=settings.api.backoff_base_seconds,
            max_delay_seconds=settings.api.backoff_cap_seconds,
        ),
        progress_timeout_seconds=settings.runtime.progress_timeout_seconds,
        clock=clock,
        output=output,
        app_reader=client,
        leadership=leadership,
    )


def output_encoding(
    settings: Settings, metrics: Metrics, *, dlq_limit: Callable[[], int]
) -> OutputEncoding | None:
    """With a registry output format, what encodes the results (None for json)."""
    poller = settings.poller
    if poller.output_format == "json":
        return None
    # Imported only then: the serializers' libraries are not needed for JSON.
    from connector.formats.encoding import output_subject  # noqa: PLC0415
    from connector.schema_registry.client import registry_client  # noqa: PLC0415

    registry = registry_client(settings.get(SchemaRegistrySettings))
    subject = output_subject(poller.output_topic, poller.output_subject)
    return OutputEncoding(
        registry_encoder_factory(
            poller.output_format, registry, topic=poller.output_topic, subject=subject
        ),
        output_topic=poller.output_topic,
        dlq_topic=poller.dlq_topic,
        dlq_limit=dlq_limit,
        metrics=metrics,
    )


def _encoding(factory: ProducerFactory, output: OutputEncoding) -> ProducerFactory:
    return lambda: output.wrap(factory())
