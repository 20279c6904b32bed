"""The connector's topics: what `check --create-topics` (and the demo, and `embedded-kafka`)
creates, and what each role needs of them at run time (the topic watch checks it)."""

from __future__ import annotations

from connector.config import PollerSettings, Settings, UploaderSettings
from connector.kafka.admin import TopicSpec
from connector.kafka.topic_watch import TopicNeed


def connector_topics(settings: Settings) -> list[TopicSpec]:
    """The topics the connector uses; only the state topic needs one partition and compaction."""
    return topic_specs(settings.uploader, settings.poller)


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
