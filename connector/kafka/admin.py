"""Topic administration: make sure the connector's topics exist (the state topic compacted).

`ensure_topics` lists the cluster first and sends CreateTopics only for missing topics, so a broker
without CreateTopics (the librdkafka mock cluster) works as long as the topics were created some
other way; when they were not, it fails with a message naming the missing topics.

`existing_topics` is the first contact of `check` and of the running roles' topic watch with
Kafka: a broker that refuses the connection (credentials, certificates, security protocol) ends
it at once with `KafkaRefusedError` naming the settings to check, not at the end of its timeout.
"""

from __future__ import annotations

import concurrent.futures
import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from confluent_kafka import KafkaError, KafkaException, Producer
from confluent_kafka.admin import AdminClient, ConfigEntry, ConfigResource, ResourceType
from confluent_kafka.cimpl import NewTopic

from connector.errors import KafkaOperationError
from connector.kafka.refusals import RefusalWatch
from connector.kafka.steps import within
from connector.kafka.transactions import MOCK_CLUSTER_ID_PREFIX
from connector.logs import kafka_logger

logger = logging.getLogger(__name__)

_DEFAULT_TIMEOUT_SECONDS = 15.0


@dataclass(frozen=True)
class TopicSpec:
    """A topic to create: `compacted` sets cleanup.policy=compact (the connector's state topic)."""

    name: str
    partitions: int = 1
    compacted: bool = False
    replication_factor: int = -1  # -1: the broker's default.replication.factor
    config: Mapping[str, str] = field(default_factory=dict)

    def topic_config(self) -> dict[str, str]:
        merged = dict(self.config)
        if self.compacted:
            merged["cleanup.policy"] = "compact"
        return merged


@dataclass(frozen=True)
class TopicsReport:
    existing: tuple[str, ...]  # were there before
    created: tuple[str, ...]  # created now


def _admin(config: str | Mapping[str, str], refusals: RefusalWatch | None = None) -> AdminClient:
    settings: dict[str, Any] = (
        {"bootstrap.servers": config} if isinstance(config, str) else dict(config)
    )
    # Looking at a topic must never create it: an admin client is a producer to librdkafka, and
    # a producer's metadata request for a missing topic creates it where the broker allows
    # (with the broker's defaults: a state topic made so would not be compacted).
    settings["allow.auto.create.topics"] = "false"
    # librdkafka's log lines go through logging, not straight to stderr.
    settings["logger"] = kafka_logger()
    return AdminClient(settings if refusals is None else refusals.config(settings))


def _mock_lacks(admin: AdminClient, request: str, timeout: float) -> str | None:
    """Why `request` would go unanswered, when `admin` talks to librdkafka's mock cluster (known
    by its cluster id): it implements neither CreateTopics nor DescribeConfigs, and asking would
    only wait out the timeout. None on other clusters, and when the metadata is not known within
    `timeout` (the request then says what holds)."""
    try:
        cluster_id = admin.list_topics(timeout=timeout).cluster_id
    except KafkaException:
        return None
    return _lacks(cluster_id, request)


def _lacks(cluster_id: str | None, request: str) -> str | None:
    if cluster_id and cluster_id.startswith(MOCK_CLUSTER_ID_PREFIX):
        return f"the librdkafka mock cluster does not implement {request}"
    return None


def existing_topics(
    config: str | Mapping[str, str], timeout: float = _DEFAULT_TIMEOUT_SECONDS
) -> set[str]:
    """Names of the topics the cluster knows; KafkaOperationError when it cannot be reached
    (KafkaRefusedError, at once, when it refuses the connection)."""
    settings = {"bootstrap.servers": config} if isinstance(config, str) else config
    refusals = RefusalWatch(settings["bootstrap.servers"])
    admin = _admin(settings, refusals)
    try:
        metadata = within(
            lambda step: admin.list_topics(timeout=step),
            timeout,
            lambda: refusals.raise_if_refused(admin),
        )
    except KafkaException as error:
        raise KafkaOperationError(f"cannot list topics: {error.args[0]}") from error
    return set(metadata.topics)


def request_auto_creation(config: Mapping[str, Any], topics: Sequence[str], timeout: float) -> None:
    """Ask for `topics` in a producer's metadata request, which a broker that creates topics on
    first use creates with its defaults: the librdkafka mock cluster, which has no CreateTopics.
    Only for topics whose configuration does not matter (the poller's leadership topics: one
    partition, nothing written); raises nothing, the caller checks what exists."""
    producer = Producer({**config, "allow.auto.create.topics": "true", "logger": kafka_logger()})
    for topic in topics:
        try:
            producer.list_topics(topic=topic, timeout=timeout)
        except KafkaException as error:
            logger.debug("metadata request for %s: %s", topic, error)


def cleanup_policies(
    config: str | Mapping[str, str],
    topics: Sequence[str],
    timeout: float = _DEFAULT_TIMEOUT_SECONDS,
) -> dict[str, str]:
    """The `cleanup.policy` of each of `topics` (e.g. "delete", "compact", "compact,delete").

    KafkaOperationError when the broker does not say (no such topic, not authorised,
    DescribeConfigs unanswered: the librdkafka mock cluster does not implement it).
    """
    policies: dict[str, str] = {}
    for topic, answer in _described(config, topics, timeout).items():
        if isinstance(answer, str):
            raise KafkaOperationError(f"cannot read the configuration of topic {topic}: {answer}")
        entry = answer.get("cleanup.policy")
        policies[topic] = "delete" if entry is None else str(entry.value)
    return policies


def ensure_topics(
    config: str | Mapping[str, str],
    specs: Sequence[TopicSpec],
    timeout: float = _DEFAULT_TIMEOUT_SECONDS,
) -> TopicsReport:
    """Create the topics of `specs` that are missing; report which existed and which are new.

    `config` is a bootstrap string or librdkafka settings (security settings included).
    Raises KafkaOperationError naming the topics when the broker refuses or never answers.
    """
    present = existing_topics(config, timeout)
    missing = [spec for spec in specs if spec.name not in present]
    created = create_topics_tolerating_existing(config, missing, timeout) if missing else []
    return TopicsReport(
        existing=tuple(spec.name for spec in specs if spec.name in present),
        created=tuple(created),
    )


def create_topics_tolerating_existing(
    config: str | Mapping[str, str],
    specs: Sequence[TopicSpec],
    timeout: float = _DEFAULT_TIMEOUT_SECONDS,
) -> list[str]:
    """CreateTopics for `specs`; a topic that already exists is fine. Returns the names created."""
    if not specs:
        return []
    new_topics = [
        NewTopic(
            spec.name,
            num_partitions=spec.partitions,
            replication_factor=spec.replication_factor,
            config=spec.topic_config(),
        )
        for spec in specs
    ]
    admin = _admin(config)  # must outlive the futures: destroying it fails them
    started = time.monotonic()
    lacking = _mock_lacks(admin, "CreateTopics", timeout)
    if lacking is not None:
        names = ", ".join(spec.name for spec in specs)
        raise KafkaOperationError(
            f"cannot create topics {names}: {lacking} (create them through its mock API)"
        )
    left = max(timeout - (time.monotonic() - started), 0.001)
    futures = admin.create_topics(new_topics, operation_timeout=left, request_timeout=left)
    created: list[str] = []
    failures: list[str] = []
    for name, future in futures.items():
        try:
            future.result()
            created.append(name)
        except KafkaException as exc:
            error: KafkaError = exc.args[0]
            if error.code() == KafkaError.TOPIC_ALREADY_EXISTS:
                continue
            failures.append(f"{name}: {error.str()}")
    if failures:
        hint = (
            " (the broker did not answer CreateTopics; the librdkafka mock cluster does not "
            "implement it: create these topics through its mock API)"
            if any("timed out" in failure.lower() for failure in failures)
            else ""
        )
        raise KafkaOperationError("cannot create topics: " + "; ".join(failures) + hint)
    return created


def topic_config_values(
    config: str | Mapping[str, str],
    topics: Sequence[str],
    name: str,
    timeout: float = _DEFAULT_TIMEOUT_SECONDS,
) -> dict[str, str]:
    """The value of the topic config `name` per topic, for the topics whose configs can be read
    within `timeout` (DescribeConfigs; a missing topic, a missing permission or a broker without
    the request is left out, with a DEBUG line)."""
    values: dict[str, str] = {}
    for topic, answer in _described(config, topics, timeout).items():
        entry = None if isinstance(answer, str) else answer.get(name)
        if isinstance(answer, str):
            logger.debug("cannot read %s of topic %s: %s", name, topic, answer)
        elif entry is not None and entry.value is not None:
            values[topic] = str(entry.value)
    return values


def broker_config_value(
    config: str | Mapping[str, str], name: str, timeout: float = _DEFAULT_TIMEOUT_SECONDS
) -> str | None:
    """The value of the broker config `name` on one of the cluster's brokers, or None where it
    cannot be read (no permission, a broker without DescribeConfigs: a DEBUG line)."""
    admin = _admin(config)  # must outlive the futures: destroying it fails them
    try:
        metadata = admin.list_topics(timeout=timeout)
    except KafkaException as exc:
        logger.debug("cannot list the brokers: %s", exc)
        return None
    brokers = metadata.brokers
    if not brokers:
        return None
    lacking = _lacks(metadata.cluster_id, "DescribeConfigs")
    if lacking is not None:
        logger.debug("cannot read broker config %s: %s", name, lacking)
        return None
    resource = ConfigResource(ResourceType.BROKER, str(min(brokers)))
    future = admin.describe_configs([resource], request_timeout=timeout)[resource]
    try:
        entry = future.result(timeout).get(name)
    except (KafkaException, concurrent.futures.TimeoutError) as exc:
        logger.debug("cannot read broker config %s: %s", name, exc)
        return None
    return None if entry is None or entry.value is None else str(entry.value)


def _described(
    config: str | Mapping[str, str], topics: Sequence[str], timeout: float
) -> dict[str, Mapping[str, ConfigEntry] | str]:
    """DescribeConfigs of `topics`, waiting at most `timeout`: per topic its config entries,
    or why there are none (the broker's error, or no answer in time)."""
    admin = _admin(config)  # must outlive the futures: destroying it fails them
    started = time.monotonic()
    lacking = _mock_lacks(admin, "DescribeConfigs", timeout)
    if lacking is not None:
        return dict.fromkeys(topics, lacking)
    left = max(timeout - (time.monotonic() - started), 0.001)
    futures = admin.describe_configs(
        [ConfigResource(ResourceType.TOPIC, topic) for topic in topics], request_timeout=left
    )
    concurrent.futures.wait(futures.values(), left)
    answers: dict[str, Mapping[str, ConfigEntry] | str] = {}
    for resource, future in futures.items():
        if not future.done():
            answers[resource.name] = f"no answer within {timeout:g}s"
            continue
        try:
            answers[resource.name] = future.result(0)
        except KafkaException as exc:
            error: KafkaError = exc.args[0]
            answers[resource.name] = error.str()
    return answers
