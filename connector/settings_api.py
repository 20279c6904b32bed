"""The settings of the Apps API: which app project, its key and URL, and the client's behaviour on
the wire."""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field, SecretStr

from connector.settings_group import SettingsGroup


class ProjectSettings(SettingsGroup):
    """Which app project: every command about one project's items or cursor."""

    prefix: ClassVar[str] = "TOLOKA_"
    app_project_id: str = Field(
        description="the app project that receives and labels the items", min_length=1
    )


class TolokaSettings(ProjectSettings):
    """The app project and how to reach it: every command that calls the Apps API."""

    api_key: SecretStr = Field(
        description="API key, sent as `Authorization: ApiKey …`", min_length=1
    )
    base_url: str = Field(
        "https://toloka.dev/api/app/v0",
        description="Apps API base URL; the simulator serves http://HOST:PORT/api/app/v0",
        pattern=r"^https?://[^\s/]+",
    )


DEFAULT_MAX_RESPONSE_BYTES = 64 * 1024 * 1024
"""The API response size limit when none is set (also `TolokaClient`'s own default)."""


class ApiSettings(SettingsGroup):
    """How the Apps API client behaves on the wire."""

    prefix: ClassVar[str] = "CONNECTOR_API_"
    connect_timeout_seconds: float = Field(5.0, gt=0, description="TCP/TLS connect timeout")
    timeout_seconds: float = Field(30.0, gt=0, description="read/write timeout of one API request")
    max_attempts: int = Field(
        6, ge=1, description="attempts of one request before its error is surfaced"
    )
    backoff_base_seconds: float = Field(
        0.5, gt=0, description="first retry delay bound (exponential, full jitter)"
    )
    backoff_cap_seconds: float = Field(30.0, gt=0, description="largest delay between retries")
    tls_verify: bool = Field(True, description="verify the API's TLS certificate")
    max_response_bytes: int = Field(
        DEFAULT_MAX_RESPONSE_BYTES,
        ge=1024,
        description=(
            "an API response body is never read past this: an error page still counts as its "
            "status, a larger 2xx is unusable (retried)"
        ),
    )
