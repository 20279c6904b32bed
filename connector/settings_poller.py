"""The poller's settings: its cursor, leadership and transactions, and how it lists and
publishes."""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from pydantic import Field, model_validator

from connector.settings_group import SettingsGroup, ValueFormat
from connector.settings_topics import DeadLetterTopicSettings, GroupSettings, KeyFieldSettings

_MAX_PAGE_SIZE = 1_000  # the listing endpoint's documented maximum
LEADER_TIMEOUT_SECONDS = 15.0


class CursorSettings(SettingsGroup):
    """Where the poller's cursor lives, and how long its writer counts as alive (`status`)."""

    prefix: ClassVar[str] = "CONNECTOR_"
    state_topic: str = Field(
        "toloka.connector.state",
        min_length=1,
        description="compacted topic holding the poller cursor",
    )
    leader_timeout_seconds: float = Field(
        LEADER_TIMEOUT_SECONDS,
        gt=0,
        description=(
            "a poller process that stops answering loses its app projects to the others after "
            "this long (the session timeout of the pollers' leadership group), and a leader "
            "whose cursor records stop this long counts as gone (it writes one at least every "
            "quarter of it)"
        ),
    )


class CursorWriteSettings(CursorSettings):
    """What writing a cursor also takes: the poller's and `reset-cursor`'s."""

    late_window_seconds: float = Field(
        60.0,
        ge=0,
        description=(
            "an item that becomes visible up to this many seconds after its finished_at is "
            "still published, exactly once"
        ),
    )
    transaction_timeout_seconds: float = Field(
        7.5,
        ge=1,
        description=(
            "Kafka transaction timeout of the poller; also bounds its flush and commit. At most "
            "half of CONNECTOR_LEADER_TIMEOUT_SECONDS, and half of it when not set (at least 1)"
        ),
    )

    @model_validator(mode="before")
    @classmethod
    def _transaction_timeout_follows_the_leader_timeout(cls, data: Any) -> Any:
        """Unset, the transaction timeout is half the leader timeout (the relation the settings
        check holds: `connector.settings_checks.related_setting_problems`)."""
        if isinstance(data, dict) and "transaction_timeout_seconds" not in data:
            try:
                leader = float(data.get("leader_timeout_seconds", LEADER_TIMEOUT_SECONDS))
            except (TypeError, ValueError):
                return data  # the leader timeout's own error is reported
            return {**data, "transaction_timeout_seconds": max(1.0, leader / 2)}
        return data


class PollerSettings(GroupSettings, CursorWriteSettings, DeadLetterTopicSettings, KeyFieldSettings):
    """The poller role: finished items → output topic, cursor → state topic, in one transaction."""

    output_topic: str = Field("toloka.results", min_length=1, description="finished items")
    page_size: int = Field(
        1000, ge=1, le=_MAX_PAGE_SIZE, description="items asked for per listing request"
    )
    poll_interval_seconds: float = Field(
        1.0, gt=0, description="wait between listings while results are flowing"
    )
    idle_poll_interval_seconds: float = Field(
        5.0, gt=0, description="wait between listings when nothing new arrived"
    )
    start_from: Literal["earliest", "latest"] = Field(
        "earliest",
        description="without a cursor: every finished item (earliest) or only new ones (latest)",
    )
    output_format: ValueFormat = Field(
        "json",
        description=(
            "output value format: json, or avro / protobuf / json_schema with a schema derived "
            "from the app's specs, registered at SCHEMA_REGISTRY_URL"
        ),
    )
    output_subject: str = Field(
        "",
        description=(
            "registry subject of the output schema; empty: <output topic>-value (topic name "
            "strategy)"
        ),
    )
    late_scan_interval_seconds: float = Field(
        10.0,
        gt=0,
        description=(
            "how often the poller lists the late window again for items that became visible "
            "late; such an item is published at most this long (plus a poll) after it appears"
        ),
    )
    transaction_span_seconds: float = Field(
        0.0,
        ge=0,
        description=(
            "while a backlog drains, how long the pages listed meanwhile may join one "
            "transaction (its flush and commit paid once; at most a quarter of the transaction "
            "timeout); a backlog's results become visible up to this much later. 0 (the "
            "default until measured on a quiet machine): a transaction per page"
        ),
    )
