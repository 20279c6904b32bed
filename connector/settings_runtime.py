"""The long-running commands' process-wide settings: endpoints, logging, shutdown, liveness."""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field

from connector.settings_group import SettingsGroup
from connector.stop_budget import AFTER_DRAIN_SECONDS


class EndpointSettings(SettingsGroup):
    """Where the health and metrics endpoints listen (`healthcheck` reads only these)."""

    prefix: ClassVar[str] = "CONNECTOR_"
    metrics_port: int = Field(
        9400, ge=0, le=65535, description="port of /metrics, /healthz, /readyz (0 disables)"
    )
    metrics_host: str = Field("127.0.0.1", description="address the metrics server binds to")


class RuntimeSettings(EndpointSettings):
    """Process-wide settings of the long-running commands: endpoints, logging, shutdown."""

    log_format: Literal["text", "json"] = Field("text", description="log line format")
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field(
        "INFO", description="lowest level logged"
    )
    shutdown_timeout_seconds: float = Field(
        45.0,
        gt=0,
        description=(
            "how long a SIGTERM/SIGINT drain may take before exit (above the uploader's "
            "drain timeout, which it includes; the drain is shortened to leave "
            f"{AFTER_DRAIN_SECONDS:g} s of it to the final commit and leaving the group)"
        ),
    )
    liveness_timeout_seconds: float = Field(
        60.0,
        gt=0,
        description=(
            "/healthz fails when a role's loop has not gone round for this long, unless it "
            "waits in a call to Kafka or the API (each ends by its own timeout); keep it above "
            "CONNECTOR_DRAIN_TIMEOUT_SECONDS, which a rebalance may take"
        ),
    )
    progress_timeout_seconds: float = Field(
        60.0,
        gt=0,
        description=(
            "/readyz fails when a role with work waiting made no progress for this long "
            "(uploader: records waiting, none uploaded or dead-lettered; leading poller: no "
            "listing answered or no transaction committed)"
        ),
    )
    kafka_refusal_timeout_seconds: float = Field(
        30.0,
        gt=0,
        description=(
            "when the brokers refuse every connection (authentication, TLS, security protocol) "
            "from start-up on, the process exits 1 after this long, naming the settings to "
            "check; after a first connection a refusal is an outage (/readyz), never fatal"
        ),
    )
