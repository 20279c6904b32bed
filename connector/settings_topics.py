"""The settings both roles use: the dead-letter topic, the uploader's topics and group (the
poller's ids derive from it), and the key field."""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field

from connector.settings_group import SettingsGroup


class DeadLetterTopicSettings(SettingsGroup):
    """Where what cannot be uploaded or published goes, with the reason (both roles write it)."""

    prefix: ClassVar[str] = "CONNECTOR_"
    dlq_topic: str = Field(
        "toloka.items.dlq",
        min_length=1,
        description="items that cannot be uploaded, and results that cannot be published, "
        "with the reason",
    )


class InputTopicSettings(DeadLetterTopicSettings):
    """The uploader's topics: where items come from and where the bad ones go."""

    input_topic: str = Field("toloka.items", min_length=1, description="items to upload")


class GroupSettings(SettingsGroup):
    """The uploader's consumer group, from which the poller's and the tools' ids derive."""

    prefix: ClassVar[str] = "CONNECTOR_"
    group_id: str = Field(
        "toloka-connector",
        min_length=1,
        description="consumer group of the uploader (the poller derives its own from it)",
    )


class KeyFieldSettings(SettingsGroup):
    """The input field that names an item: it keys the output records, and the uploader matches
    records with the items the API lists by it."""

    prefix: ClassVar[str] = "CONNECTOR_"
    key_field: str = Field(
        "id", min_length=1, description="field of input_data whose value keys the output record"
    )
