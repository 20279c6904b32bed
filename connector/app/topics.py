"""The connector's topics: what `check --create-topics` (and the demo, and `embedded-kafka`)
creates, and what each role needs of them at run time (the topic watch checks it)."""

from __future__ import annotations

from dataclasses import replace

from connector.config import PollerSettings, Settings, UploaderSettings
from connector.contract.leadership import leadership_topic
from connector.kafka.admin import TopicSpec
from connector.kafka.topic_watch import TopicNeed
from connector.uploader.dead_letters import HEADERS_ALLOWANCE_BYTES

MAX_MESSAGE_BYTES = "max.message.bytes"


def connector_topics(settings: Settings) -> list[TopicSpec]:
    """The topics the connector uses for the pipeline of `settings`; only the state topic needs
    compaction, and the state and leadership topics one partition."""
    return [*topic_specs(settings.uploader, settings.poller), leadership_topic_spec(settings)]


def leadership_topic_spec(settings: Settings) -> TopicSpec:
    """The pipeline's leadership topic (`connector.poller.group`): the poller creates it when
    the account may, so a missing one is only a warning for `check`."""
    topic = leadership_topic(settings.poller.state_topic, settings.toloka.app_project_id)
    return TopicSpec(topic, partitions=1)


def topic_specs(uploader: UploaderSettings, poller: PollerSettings) -> list[TopicSpec]:
    return [
        TopicSpec(uploader.input_topic, partitions=6),
        TopicSpec(uploader.dlq_topic, partitions=1),
        TopicSpec(poller.output_topic, partitions=6),
        TopicSpec(poller.state_topic, partitions=1, compacted=True),
    ]


def topic_needs(settings: Settings, role: str) -> list[TopicNeed]:
    """The topics of `role` (uploader or poller), with the settings that name them."""
    if role == "uploader":
        uploader = settings.uploader
        return [
            TopicNeed(uploader.input_topic, "CONNECTOR_INPUT_TOPIC"),
            TopicNeed(uploader.dlq_topic, "CONNECTOR_DLQ_TOPIC"),
        ]
    poller = settings.poller
    return [
        TopicNeed(poller.output_topic, "CONNECTOR_OUTPUT_TOPIC"),
        TopicNeed(poller.dlq_topic, "CONNECTOR_DLQ_TOPIC"),
        TopicNeed(poller.state_topic, "CONNECTOR_STATE_TOPIC", compacted=True),
    ]


def dead_letter_limit(input_limit: int) -> int:
    """The `max.message.bytes` the dead-letter topic needs for the input topic's `input_limit`:
    any input record, whole, with the headers a dead letter adds. Below it, a record near the
    input limit can never be dead-lettered: the uploader stops on it and restarts into it."""
    return input_limit + HEADERS_ALLOWANCE_BYTES


def sized_dead_letter_topic(spec: TopicSpec, input_limit: int) -> TopicSpec:
    """`spec` (the dead-letter topic's) with the limit `dead_letter_limit` asks for."""
    return replace(
        spec, config={**spec.config, MAX_MESSAGE_BYTES: str(dead_letter_limit(input_limit))}
    )
