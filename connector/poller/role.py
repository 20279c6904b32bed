"""The poller as a `connector.lifecycle.Role`, and `build_poller` that wires it to Kafka."""

from __future__ import annotations

import os
import socket
import threading
import uuid

from connector.clock import Clock, SystemClock
from connector.config import Settings
from connector.lifecycle import Heartbeat, Readiness
from connector.metrics import Metrics
from connector.outstanding import OutstandingItems
from connector.poller.leadership import Role
from connector.poller.limits import RecordLimits, read_max_message_bytes
from connector.poller.loop import ItemSource, PollerLoop
from connector.poller.publisher import kafka_producer_factory
from connector.poller.state import KafkaStateStore

TOPIC_LIMITS_READ_SECONDS = 2.0
"""How long a take-over waits for the topics' max.message.bytes (once; real Kafka answers in
milliseconds, a broker without DescribeConfigs never: the broker's refusals then teach it)."""


def instance_id() -> str:
    """Names this process in the cursor records it writes (host, pid, and a random tail)."""
    return f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:8]}"


class Poller:
    """Finished items → output topic, cursor → state topic; leader or standby."""

    name = "poller"

    def __init__(self, loop: PollerLoop, heartbeat: Heartbeat) -> None:
        self._loop = loop
        self.heartbeat = heartbeat

    def run(self, stop: threading.Event) -> None:
        self._loop.run(stop)

    def readiness(self) -> Readiness:
        role = self._loop.role
        problem = self._loop.kafka_problem
        if problem is not None:
            return Readiness(ready=False, detail=f"{role.value}; {problem}")
        return Readiness(ready=role is not Role.STARTING, detail=role.value)


def build_poller(
    settings: Settings,
    client: ItemSource,
    metrics: Metrics,
    outstanding: OutstandingItems | None = None,
    *,
    clock: Clock | None = None,
) -> Poller:
    clock = clock or SystemClock()
    poller = settings.poller
    project = settings.toloka.app_project_id
    kafka_config = settings.kafka.client_config()
    heartbeat = Heartbeat("poller", clock)
    dlq_topic = settings.uploader.dlq_topic
    limits = RecordLimits(
        kafka_config,
        (poller.output_topic, dlq_topic, poller.state_topic),
        read_max_message_bytes(kafka_config, TOPIC_LIMITS_READ_SECONDS),
    )
    loop = PollerLoop(
        poller,
        project,
        source=client,
        producer_factory=kafka_producer_factory(
            kafka_config, project, poller.transaction_timeout_seconds, limits.producer_config
        ),
        store=KafkaStateStore(
            kafka_config,
            topic=poller.state_topic,
            app_project_id=project,
            group_id=settings.uploader.group_id,
            timeout_seconds=poller.transaction_timeout_seconds,
            clock=clock,
        ),
        clock=clock,
        metrics=metrics,
        heartbeat=heartbeat,
        instance_id=instance_id(),
        outstanding=outstanding,
        dlq_topic=dlq_topic,
        limits=limits,
        response_limit_bytes=settings.api.max_response_bytes,
    )
    return Poller(loop, heartbeat)
