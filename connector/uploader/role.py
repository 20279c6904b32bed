"""The uploader role: wiring of the Kafka clients, the API client and the loop.

`build_uploader` only builds objects; the network is first touched in `run`, in the role's
thread: the app's `input_spec` is read (a wrong key or project is fatal, an unreachable API is
waited for), then the consumer and the dead-letter producer are created and the loop runs.
"""

from __future__ import annotations

import random
import threading
from collections.abc import Callable
from typing import Any, Protocol

from confluent_kafka import Consumer as KafkaConsumer
from confluent_kafka import Producer as KafkaProducer

from connector.clock import Clock, SystemClock
from connector.config import SchemaRegistrySettings, Settings
from connector.kafka.availability import KafkaAvailability
from connector.kafka.clients import Consumer, Producer
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
from connector.uploader.loop import UploadLoop
from connector.uploader.reconcile import ItemLister, Reconciler
from connector.uploader.routing import HeaderRouter, input_group_id
from connector.uploader.spec import SpecReader, SpecRefresher, read_validator
from connector.uploader.upload import BatchUploader, BulkCreator
from connector.validation import ItemValidator

ConsumerFactory = Callable[[Callable[[str], None]], Consumer]
"""Creates the input consumer, given the `stats_cb` that reports consumer lag."""
ProducerFactory = Callable[[], Producer]

CONSUMER_DEFAULTS: dict[str, Any] = {
    # A new group uploads what is already in the topic, not only what arrives later.
    "auto.offset.reset": "earliest",
    # librdkafka's prefetch queue is the largest buffer of a paused uploader (64 MiB by default).
    "queued.max.messages.kbytes": 16384,
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
    is polled all the time, so it reports to the process's Kafka availability tracker. The group
    follows the pipeline's `route_by_header` alone (`input_group_id`)."""
    uploader = settings.uploader
    config = {
        **CONSUMER_DEFAULTS,
        **settings.kafka.client_config(),
        "group.id": input_group_id(
            uploader.group_id,
            settings.project.app_project_id,
            route_by_header=uploader.route_by_header,
        ),
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
        "logger": kafka_logger(),
    }


class UploaderClient(BulkCreator, SpecReader, ItemLister, Protocol):
    """What the uploader needs of `TolokaClient`."""


class Uploader:
    """The `connector.lifecycle.Role` that uploads the input topic to the app project."""

    name = "uploader"

    def __init__(
        self,
        settings: Settings,
        client: UploaderClient,
        metrics: Metrics,
        *,
        consumer_factory: ConsumerFactory,
        producer_factory: ProducerFactory,
        outstanding: OutstandingItems | None = None,
        clock: Clock | None = None,
        rng: random.Random | None = None,
        decode: ItemDecoder = decode_item,
        router: HeaderRouter | None = None,
        in_flight_limit: InFlightLimit | None = None,
    ) -> None:
        self._settings = settings
        self._decode = decode
        self._router = router
        self._in_flight_limit = in_flight_limit
        self._client = client
        self._metrics = metrics
        self._consumer_factory = consumer_factory
        self._producer_factory = producer_factory
        self._outstanding = outstanding
        self._clock: Clock = clock or SystemClock()
        self._rng = rng or random.Random()  # noqa: S311 - jitter, not cryptography
        self.heartbeat = Heartbeat(self.name, self._clock)
        self._loop: UploadLoop | None = None
        self._nothing_waiting_at = self._clock.monotonic()
        self._startup = StartupRead("the app's input_spec")
        api = settings.api
        self._backoff = RetryPolicy(
            max_attempts=None,
            base_delay_seconds=api.backoff_base_seconds,
            max_delay_seconds=api.backoff_cap_seconds,
        )

    def run(self, stop: threading.Event) -> None:
        validator = self._read_spec(stop)
        if validator is None:
            return
        settings = self._settings
        lag = LagReporter(self._metrics, settings.uploader.input_topic)
        consumer = self._consumer_factory(lag.on_statistics)
        producer = self._producer_factory()
        api = settings.api
        reconciler = (
            Reconciler(self._client, self._metrics, self._clock, settings.uploader)
            if settings.uploader.upload_reconcile
            else None
        )
        self._batch_uploader = BatchUploader(
            self._client, self._metrics, self._clock, outage_backoff=self._backoff,
            outstanding=self._outstanding, rng=self._rng, reconciler=reconciler,
        )  # fmt: skip
        self._loop = UploadLoop(
            settings.uploader,
            consumer=consumer,
            producer=producer,
            uploader=self._batch_uploader,
            validator=validator,
            metrics=self._metrics,
            clock=self._clock,
            heartbeat=self.heartbeat,
            lag=lag,
            # One attempt takes at most connect + write + read: a request older than that is
            # being retried by the client.
            stalled_after_seconds=api.connect_timeout_seconds + 2 * api.timeout_seconds,
            refresher=SpecRefresher(
                self._client, self._clock, settings.uploader.spec_refresh_seconds
            ),
            decode=self._decode,
            reconciler=reconciler,
            router=self._router,
            in_flight_limit=self._in_flight_limit,
        )  # fmt: skip
        self._loop.run(stop)

    def _read_spec(self, stop: threading.Event) -> ItemValidator | None:
        """The validator, or None when stopped first."""
        with self.heartbeat.waiting_on("the Toloka API (the app's input_spec)"):
            return read_at_startup(
                lambda: read_validator(self._client), self._startup,
                client=self._client, stop=stop, clock=self._clock, backoff=self._backoff,
                rng=self._rng,
            )  # fmt: skip

    def assignment(self) -> frozenset[int]:
        """The input partitions this uploader owns now."""
        return frozenset() if self._loop is None else self._loop.assignment()

    def readiness(self) -> Readiness:
        loop = self._loop
        if loop is None:
            return Readiness(False, self._startup.detail())
        if not self._batch_uploader.key.up:
            return Readiness(False, f"{KEY_REFUSED}; retrying with back-off (partitions paused)")
        if loop.api_failing:
            return Readiness(False, "bulk uploads are failing; retrying (partitions paused)")
        failing = loop.dead_letters_failing
        if failing is not None:
            return Readiness(
                False,
                f"dead letters to {self._settings.uploader.dlq_topic} are not acknowledged "
                f"({failing}); retrying (their partitions pause)",
            )
        stalled = self._stalled(loop)
        if stalled is not None:
            return Readiness(False, stalled)
        return Readiness(True, f"{len(loop.assignment())} input partitions assigned")

    def _stalled(self, loop: UploadLoop) -> str | None:
        """Work has been waiting (uploads in flight, records behind) and no record was uploaded
        or dead-lettered for too long. Whether work waits is sampled here, when readiness is
        asked (every probe and scrape): the quiet time counts from the later of the last
        progress and the last time nothing was waiting."""
        now = self._clock.monotonic()
        in_flight, behind = loop.uploads_in_flight, loop.lag.backlog()
        if not in_flight and not behind:
            self._nothing_waiting_at = now
            return None
        quiet = now - max(self._nothing_waiting_at, loop.last_progress_at)
        if quiet <= self._settings.runtime.progress_timeout_seconds:
            return None
        return (
            f"no record uploaded or dead-lettered for {quiet:.0f}s while work waits "
            f"({in_flight} uploads in flight, {behind} input records behind)"
        )


def item_decoder(settings: Settings) -> ItemDecoder:
    """How input records become items: JSON, or a registry format read with its writer's
    schema (the registry is not asked before the first record)."""
    value_format = settings.uploader.input_format
    if value_format == "json":
        return decode_item
    # Imported only then: the serializers' libraries are not needed for JSON.
    from connector.formats.decoding import DECODERS  # noqa: PLC0415
    from connector.schema_registry.client import registry_client  # noqa: PLC0415

    client = registry_client(settings.get(SchemaRegistrySettings))
    return RegistryItemDecoder(DECODERS[value_format](client))


def build_uploader(
    settings: Settings,
    client: UploaderClient,
    metrics: Metrics,
    outstanding: OutstandingItems | None = None,
    kafka: KafkaAvailability | None = None,
    *,
    router: HeaderRouter | None = None,
    in_flight_limit: InFlightLimit | None = None,
) -> Uploader:
    """The uploader role on real Kafka clients (nothing connects before `run`); its consumer
    reports to `kafka`. With a `router` (`route_by_header`), it takes the records its header names;
    `in_flight_limit` is the one its API client's 429s adapt."""
    return Uploader(
        settings,
        client,
        metrics,
        consumer_factory=lambda on_statistics: KafkaConsumer(
            consumer_config(settings, on_statistics, kafka)
        ),
        producer_factory=lambda: KafkaProducer(producer_config(settings)),
        outstanding=outstanding,
        decode=item_decoder(settings),
        router=router,
        in_flight_limit=in_flight_limit,
    )
