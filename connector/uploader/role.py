"""The uploader role of each pipeline: wiring of the Kafka clients, the API client and the loop.

`build_uploaders` only builds objects; the network is first touched in `run`, in each role's
thread: the app's `input_spec` is read (a wrong key or project is fatal, an unreachable API is
waited for); once every pipeline's is, the first pipeline's role creates the consumer and the
dead-letter producer and runs the process's one loop (`connector.uploader.shared`).
"""

from __future__ import annotations

import random
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from confluent_kafka import Consumer as KafkaConsumer
from confluent_kafka import Producer as KafkaProducer

from connector.clock import Clock, SystemClock
from connector.config import SchemaRegistrySettings, Settings
from connector.kafka.availability import KafkaAvailability
from connector.kafka.limits import copying_producer_max_bytes
from connector.lifecycle import Heartbeat, Readiness
from connector.logs import kafka_logger
from connector.metrics import Metrics
from connector.outstanding import OutstandingItems
from connector.startup import StartupRead, read_at_startup
from connector.toloka.availability import KEY_REFUSED
from connector.toloka.pacing import InFlightLimit
from connector.toloka.retry import RetryPolicy
from connector.uploader.dead_letters import HEADERS_ALLOWANCE_BYTES
from connector.uploader.decode import ItemDecoder, RegistryItemDecoder, decode_item
from connector.uploader.lag import LagReporter
from connector.uploader.lane import Lane, LaneParts
from connector.uploader.migration import previous_groups
from connector.uploader.reconcile import ItemLister, Reconciler
from connector.uploader.shared import ConsumerFactory, ProducerFactory, SharedLoop
from connector.uploader.spec import SpecReader, SpecRefresher, read_validator
from connector.uploader.upload import BatchUploader, BulkCreator
from connector.validation import ItemValidator

CONSUMER_DEFAULTS: dict[str, Any] = {
    # A new group uploads what is already in the topic, not only what arrives later.
    "auto.offset.reset": "earliest",
    # librdkafka's prefetch queue is the largest buffer of a paused uploader (64 MiB by default).
    "queued.max.messages.kbytes": 16384,
    # Once that queue is full, librdkafka (>= 2.3) fetches a partition again only after this
    # long (1 s by default): a backlog drained faster than that left the loop waiting for
    # records (scenario 1: 137-148k items/s at 1 s, 200-204k at 20 ms, the same CPU per item).
    "fetch.queue.backoff.ms": 20,
    "statistics.interval.ms": 5000,
    # Rebalances move only the partitions that change owner; the loop handles an eager strategy
    # (`range`, which some brokers need) as well: it finishes whatever partitions are revoked.
    "partition.assignment.strategy": "cooperative-sticky",
}
"""Defaults that a `KAFKA_<PROPERTY>` setting may change."""


def consumer_config(
    settings: Settings,
    on_statistics: Callable[[str], None],
    kafka: KafkaAvailability | None = None,
) -> dict[str, Any]:
    """The input consumer's configuration. Offsets are committed explicitly (auto commit off,
    offset store off): the committed position is computed by the offset tracker and must be
    written at precise moments (revocation, shutdown), which a background auto commit of stored
    offsets cannot promise; a plain commit also works on every development broker. The consumer
    is polled all the time, so it reports to the process's Kafka availability tracker. It reads
    every pipeline's input topic in the one group CONNECTOR_GROUP_ID."""
    config = {
        **CONSUMER_DEFAULTS,
        **settings.kafka.client_config(),
        "group.id": settings.uploader.group_id,
        "enable.auto.commit": False,
        "enable.auto.offset.store": False,
        "stats_cb": on_statistics,
        "logger": kafka_logger(),
    }
    return config if kafka is None else kafka.watch(config)


def producer_config(settings: Settings) -> dict[str, Any]:
    """The dead-letter producer: idempotent, so its retries never write a dead letter twice, and
    able to carry any record the input consumer can receive, whole, with the headers it adds."""
    kafka = settings.kafka.client_config()
    return {
        "linger.ms": 5,
        **kafka,
        "message.max.bytes": copying_producer_max_bytes(kafka, HEADERS_ALLOWANCE_BYTES),
        "enable.idempotence": True,
        # A dead letter is done when its delivery report comes: a user's
        # KAFKA_DELIVERY_REPORT_ONLY_ERROR (the poller's default) must not silence them.
        "delivery.report.only.error": False,
        "logger": kafka_logger(),
    }


class UploaderClient(BulkCreator, SpecReader, ItemLister, Protocol):
    """What the uploader needs of `TolokaClient`."""


class Uploader:
    """The `connector.lifecycle.Role` that uploads one pipeline's input to its app project: it
    reads the app's `input_spec`, then hands its lane to the process's one `SharedLoop`, which
    the first pipeline's uploader runs; its readiness is its lane's."""

    name = "uploader"

    def __init__(
        self,
        settings: Settings,
        client: UploaderClient,
        metrics: Metrics,
        *,
        loop: SharedLoop | None = None,
        index: int = 0,
        consumer_factory: ConsumerFactory | None = None,
        producer_factory: ProducerFactory | None = None,
        outstanding: OutstandingItems | None = None,
        clock: Clock | None = None,
        rng: random.Random | None = None,
        decode: ItemDecoder = decode_item,
        in_flight_limit: InFlightLimit | None = None,
    ) -> None:
        """The pipeline `index` of `loop`; without one, the only pipeline of a loop of its own
        on the clients of `consumer_factory` and `producer_factory`."""
        self._settings = settings
        self._decode = decode
        self._in_flight_limit = in_flight_limit
        self._client = client
        self._metrics = metrics
        self._outstanding = outstanding
        self._clock: Clock = clock or SystemClock()
        self._rng = rng or random.Random()  # noqa: S311 - jitter, not cryptography
        if loop is None:
            assert consumer_factory is not None
            assert producer_factory is not None
            loop = SharedLoop([settings], consumer_factory, producer_factory, self._clock)
        self._loop = loop
        self._index = index
        self.heartbeat = Heartbeat(self.name, self._clock)
        self._nothing_waiting_at = self._clock.monotonic()
        self._startup = StartupRead("the app's input_spec")
        api = settings.api
        self._backoff = RetryPolicy(
            max_attempts=None,
            base_delay_seconds=api.backoff_base_seconds,
            max_delay_seconds=api.backoff_cap_seconds,
        )
        self._batch_uploader: BatchUploader | None = None

    def run(self, stop: threading.Event) -> None:
        validator = self._read_spec(stop)
        if validator is None:
            return
        self._loop.join(self._index, self._lane_parts(validator), self.heartbeat)
        if self._index == 0:
            self._loop.run(stop, self.heartbeat)
            return
        with self.heartbeat.waiting_on("the other pipelines' input_spec (the upload loop)"):
            self._loop.wait_started(stop)
        stop.wait()  # the loop, run by the first pipeline's uploader, beats this heartbeat

    def _lane_parts(self, validator: ItemValidator) -> LaneParts:
        settings = self._settings
        uploading = settings.uploader
        reconciler = (
            Reconciler(
                self._client,
                self._metrics,
                self._clock,
                uploading,
                response_limit_bytes=settings.api.max_response_bytes,
            )
            if uploading.upload_reconcile
            else None
        )
        self._batch_uploader = BatchUploader(
            self._client, self._metrics, self._clock, outage_backoff=self._backoff,
            outstanding=self._outstanding, rng=self._rng, reconciler=reconciler,
        )  # fmt: skip
        api = settings.api
        return LaneParts(
            app_project=settings.project.app_project_id,
            settings=uploading,
            uploader=self._batch_uploader,
            validator=validator,
            decode=self._decode,
            metrics=self._metrics,
            lag=LagReporter(self._metrics, uploading.input_topic),
            # One attempt takes at most connect + write + read: a request older than that is
            # being retried by the client.
            stalled_after_seconds=api.connect_timeout_seconds + 2 * api.timeout_seconds,
            refresher=SpecRefresher(self._client, self._clock, uploading.spec_refresh_seconds),
            reconciler=reconciler,
            in_flight_limit=self._in_flight_limit,
            outage_backoff=self._backoff,
        )

    def _read_spec(self, stop: threading.Event) -> ItemValidator | None:
        """The validator, or None when stopped first."""
        with self.heartbeat.waiting_on("the Toloka API (the app's input_spec)"):
            return read_at_startup(
                lambda: read_validator(self._client), self._startup,
                client=self._client, stop=stop, clock=self._clock, backoff=self._backoff,
                rng=self._rng,
            )  # fmt: skip

    def assignment(self) -> frozenset[int]:
        """The partitions of its input topic this process owns now."""
        lane = self._loop.lane(self._index)
        return frozenset() if lane is None else frozenset(lane.partitions)

    def readiness(self) -> Readiness:
        lane = self._loop.lane(self._index)
        if lane is None:
            if self._batch_uploader is None:
                return Readiness(False, self._startup.detail())
            return Readiness(False, "waiting for the other pipelines' input_spec")
        if not lane.uploader.key.up:
            return Readiness(False, f"{KEY_REFUSED}; retrying with back-off (partitions paused)")
        if lane.api_failing:
            return Readiness(False, "bulk uploads are failing; retrying (partitions paused)")
        registry_failure = lane.registry_wait.waiting()
        if registry_failure is not None:
            return Readiness(
                False,
                "input records wait for the Schema Registry to give their writer's schema "
                f"({registry_failure}); retrying with back-off (partitions paused)",
            )
        failing = lane.dead_letters.failing
        if failing is not None:
            return Readiness(
                False,
                f"dead letters to {self._settings.uploader.dlq_topic} are not acknowledged "
                f"({failing}); retrying (their partitions pause)",
            )
        stalled = self._stalled(lane)
        if stalled is not None:
            return Readiness(False, stalled)
        return Readiness(True, f"{len(lane.partitions)} input partitions assigned")

    def _stalled(self, lane: Lane) -> str | None:
        """Work has been waiting (uploads in flight, records behind) and no record was uploaded
        or dead-lettered for too long by any pipeline on its topic. Whether work waits is
        sampled here, when readiness is asked (every probe and scrape): the quiet time counts
        from the later of the last progress and the last time nothing was waiting."""
        now = self._clock.monotonic()
        in_flight, behind = len(lane.in_flight), lane.lag.backlog()
        if not in_flight and not behind:
            self._nothing_waiting_at = now
            return None
        progress = self._loop.last_progress_at(self._index) or lane.last_progress_at
        quiet = now - max(self._nothing_waiting_at, progress)
        if quiet <= self._settings.runtime.progress_timeout_seconds:
            return None
        return (
            f"no record uploaded or dead-lettered for {quiet:.0f}s while work waits "
            f"({in_flight} uploads in flight, {behind} input records behind)"
        )


def item_decoder(settings: Settings) -> ItemDecoder:
    """How input records become items: JSON, or a registry format read with its writer's
    schema (the registry is not asked before the first record). The registry's client tries
    each request once: the lane waits out its failures with the API's back-off
    (`connector.uploader.registry_wait`), so a decoding never holds the loop for a retry budget."""
    value_format = settings.uploader.input_format
    if value_format == "json":
        return decode_item
    # Imported only then: the serializers' libraries are not needed for JSON.
    from connector.formats.decoding import DECODERS  # noqa: PLC0415
    from connector.schema_registry.client import registry_client  # noqa: PLC0415

    client = registry_client(settings.get(SchemaRegistrySettings), retried=False)
    return RegistryItemDecoder(DECODERS[value_format](client))


@dataclass(frozen=True)
class UploaderPipeline:
    """One pipeline's uploader: its settings, API client and metrics (`Metrics.for_project`),
    the in-flight limit its client's 429s adapt, and the items it created that this process's
    poller has not published yet (when both roles run here)."""

    settings: Settings
    client: UploaderClient
    metrics: Metrics
    in_flight_limit: InFlightLimit | None = None
    outstanding: OutstandingItems | None = None


def build_uploaders(
    pipelines: Sequence[UploaderPipeline], kafka: KafkaAvailability | None = None
) -> list[Uploader]:
    """The uploader roles of `pipelines` on real Kafka clients (nothing connects before `run`),
    all in one loop whose consumer reads every input topic in the one group and reports to
    `kafka`. The Kafka connection and the group are the deployment's: the first pipeline's
    settings say them."""
    shared = pipelines[0].settings
    loop = SharedLoop(
        [pipeline.settings for pipeline in pipelines],
        lambda on_statistics: KafkaConsumer(consumer_config(shared, on_statistics, kafka)),
        lambda: KafkaProducer(producer_config(shared)),
        SystemClock(),
        previous_groups=previous_groups(
            {**shared.kafka.client_config(), "logger": kafka_logger()},
            {**CONSUMER_DEFAULTS, **shared.kafka.client_config()}["auto.offset.reset"],
        ),
    )
    return [
        Uploader(
            pipeline.settings,
            pipeline.client,
            pipeline.metrics,
            loop=loop,
            index=index,
            outstanding=pipeline.outstanding,
            decode=item_decoder(pipeline.settings),
            in_flight_limit=pipeline.in_flight_limit,
        )
        for index, pipeline in enumerate(pipelines)
    ]


def build_uploader(
    settings: Settings,
    client: UploaderClient,
    metrics: Metrics,
    outstanding: OutstandingItems | None = None,
    kafka: KafkaAvailability | None = None,
    *,
    in_flight_limit: InFlightLimit | None = None,
) -> Uploader:
    """The uploader role of one pipeline alone (see `build_uploaders`)."""
    [uploader] = build_uploaders(
        [UploaderPipeline(settings, client, metrics, in_flight_limit, outstanding)], kafka
    )
    return uploader
