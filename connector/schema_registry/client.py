"""confluent-kafka's `SchemaRegistryClient` from the settings, and its failures sorted.

The client caches what it reads (schemas by id, registrations by subject), so a registry is
asked once per schema id a consumer meets and once per subject the poller registers.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.schema_registry.error import SchemaRegistryError as ClientError

from connector.errors import (
    RegistryCredentialsError,
    RegistryUnavailableError,
    SchemaRegistryError,
)

try:  # the HTTP library the registry client uses: httpx2 where installed, else httpx
    from httpx2 import HTTPError as TransportFailure
except ImportError:  # pragma: no cover - depends on what the resolver installed
    from httpx import HTTPError as TransportFailure  # type: ignore[assignment]
from connector.settings_groups import SchemaRegistrySettings

T = TypeVar("T")

URL_VARIABLE = SchemaRegistrySettings.variable("url")
REQUEST_TIMEOUT_SECONDS = 10
NOT_FOUND = 404


def registry_config(settings: SchemaRegistrySettings) -> dict[str, Any]:
    """The client's configuration: URL, basic auth (`user:password`), the CA of an https
    registry."""
    config: dict[str, Any] = {"url": settings.url, "timeout": REQUEST_TIMEOUT_SECONDS}
    user_info = settings.basic_auth_user_info.get_secret_value()
    if user_info:
        config["basic.auth.user.info"] = user_info
    if settings.ssl_ca_location:
        config["ssl.ca.location"] = settings.ssl_ca_location
    return config


def registry_client(
    settings: SchemaRegistrySettings, *, retried: bool = True
) -> SchemaRegistryClient:
    """A client of the configured registry (nothing is sent before the first request);
    `retried=False`: each request is tried once (its caller waits out failures itself)."""
    config = registry_config(settings)
    return SchemaRegistryClient(config if retried else {**config, "max.retries": 0})


def not_found(error: BaseException) -> bool:
    """The registry answered that the schema, subject or version does not exist."""
    return isinstance(error, ClientError) and error.http_status_code == NOT_FOUND


NOT_ANSWERED = {401, 403, 408, 429}
"""4xx that say nothing about the request: the credentials (401, 403), or the registry is too
busy to answer it now (408 Request Timeout, 429 Too Many Requests: wait, as for a 5xx)."""


def answered(error: BaseException) -> bool:
    """The registry answered with a 4xx about the request itself (not about the credentials,
    nor that it is too busy)."""
    status = getattr(error, "http_status_code", None) if isinstance(error, ClientError) else None
    return isinstance(status, int) and 400 <= status < 500 and status not in NOT_ANSWERED


def registry_call(call: Callable[[], T], what: str) -> T:
    """`call()`, with a failure turned into a SchemaRegistryError saying `what` failed: one the
    registry answered (an incompatible schema, an unknown subject) or RegistryUnavailableError
    (no answer, a 5xx; RegistryCredentialsError: credentials refused), naming
    SCHEMA_REGISTRY_URL."""
    try:
        return call()
    except ClientError as error:
        if answered(error):
            raise SchemaRegistryError(f"{what}: {error.error_message}") from error
        refused = error.http_status_code in {401, 403}
        raise (RegistryCredentialsError if refused else RegistryUnavailableError)(
            f"{what}: the registry at {URL_VARIABLE} failed: {error.error_message} "
            f"(HTTP {error.http_status_code}); check {URL_VARIABLE} and "
            f"{SchemaRegistrySettings.variable('basic_auth_user_info')}"
        ) from error
    except (TransportFailure, OSError) as error:
        raise RegistryUnavailableError(
            f"{what}: the registry at {URL_VARIABLE} cannot be reached: {error}"
        ) from error
