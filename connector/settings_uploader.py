"""The uploader's settings: how it batches, uploads, reconciles and routes, and how many processes
run it."""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field

from connector.settings_group import SettingsGroup, ValueFormat
from connector.settings_topics import GroupSettings, InputTopicSettings, KeyFieldSettings

_MAX_BULK_ITEMS = 10_000  # the API rejects larger bulk requests with 413


class ReconcileSettings(KeyFieldSettings):
    """Exactly-once uploads: what the uploader checks with the API before sending again."""

    upload_reconcile: bool = Field(
        True,
        description=(
            "after a lost answer, a crash or a hand-over, ask the API which items exist and send "
            "only the missing ones (false: at-least-once, send again)"
        ),
    )
    reconcile_clock_skew_seconds: float = Field(
        10.0,
        ge=0,
        description=(
            "how far the API's clock may be off the connector's: the listing window of a "
            "reconciliation is widened by this much on each side"
        ),
    )
    reconcile_recheck_seconds: float = Field(
        2.0,
        ge=0,
        description=(
            "how late the API may list a new item: a reconciliation lists again after this "
            "long before it calls an item missing (a hand-over waits this long first)"
        ),
    )
    reconcile_timeout_seconds: float = Field(
        60.0,
        ge=0,
        description=(
            "how long a reconciliation keeps asking for the listing while the API fails; then "
            "its records are sent again, at least once"
        ),
    )


class RoutingSettings(SettingsGroup):
    """Whether a pipeline routes its input topic's records by header."""

    prefix: ClassVar[str] = "CONNECTOR_"
    route_by_header: bool = Field(
        False,
        description=(
            "the uploader takes only the records whose toloka-app-project-id header names its "
            "app project (without a known one: dead-lettered, unrouted), so pipelines may share "
            "an input topic (read once, in the one group_id)"
        ),
    )


class UploaderSettings(GroupSettings, InputTopicSettings, ReconcileSettings, RoutingSettings):
    """The uploader role: input topic → Apps API, bad records → dead-letter topic."""

    batch_max_items: int = Field(
        1000, ge=1, le=_MAX_BULK_ITEMS, description="items per bulk request at most"
    )
    batch_max_bytes: int = Field(
        8_000_000, ge=1024, description="request body bytes per bulk request at most"
    )
    linger_ms: int = Field(
        50, ge=0, description="how long a partly filled batch waits for more items"
    )
    max_in_flight: int = Field(4, ge=1, le=64, description="bulk requests in flight at once")
    adaptive_in_flight: bool = Field(
        True,
        description=(
            "on a 429, halve the bulk requests in flight (growing back by one per two rounds "
            "of successes, up to CONNECTOR_MAX_IN_FLIGHT) and hold every request for its "
            "Retry-After; false: always CONNECTOR_MAX_IN_FLIGHT, each request waits out its own"
        ),
    )
    max_record_bytes: int = Field(
        1_000_000, ge=16, description="larger input records are dead-lettered as too_large"
    )
    spec_refresh_seconds: float = Field(
        300.0, gt=0, description="how often the app's input_spec is read again"
    )
    drain_timeout_seconds: float = Field(
        30.0, ge=0, description="on shutdown or revocation, how long in-flight uploads may finish"
    )
    commit_interval_ms: int = Field(
        100,
        ge=0,
        description=(
            "how often done input offsets are committed (a crash repeats at most the uploads "
            "finished since the last commit)"
        ),
    )
    dlq_max_pending_bytes: int = Field(
        32 * 1024 * 1024,
        ge=1024,
        description=(
            "dead-letter bytes awaiting the broker's acknowledgement above which the input "
            "partitions holding them are paused"
        ),
    )
    input_format: ValueFormat = Field(
        "json",
        description=(
            "input value format: json, or avro / protobuf / json_schema in Confluent's wire "
            "format, decoded with the writer's schema from SCHEMA_REGISTRY_URL"
        ),
    )
    dlq_timeout_seconds: float = Field(
        300.0,
        ge=1,
        description=(
            "a dead letter the broker has not acknowledged this long after it was written "
            "stops the uploader (exit 1); its record is read again after a restart"
        ),
    )


MAX_WORKERS = 64
"""A process each, and a pipe each to the parent's every scrape: beyond what one host's cores
can use."""


class WorkerSettings(SettingsGroup):
    """How many uploader processes one `run` or `upload` runs (`connector.app.workers`)."""

    prefix: ClassVar[str] = "CONNECTOR_"
    workers: int = Field(
        1,
        ge=1,
        le=MAX_WORKERS,
        description=(
            "uploader processes this command runs in one consumer group: itself and N-1 worker "
            f"processes, behind its one /metrics endpoint; at most {MAX_WORKERS} (README: "
            "Several cores)"
        ),
    )
