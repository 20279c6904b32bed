"""What a role reads before it starts work (`connector.startup.read_at_startup`): an outage of
the API or of the Schema Registry is waited out with back-off; a wrong key, project or registry
credentials end the start with a StartupError naming the setting."""

from __future__ import annotations

import random
import threading
from collections.abc import Callable

import pytest

from connector.errors import (
    RegistryCredentialsError,
    RegistryUnavailableError,
    RetryableApiError,
    StartupError,
)
from connector.startup import StartupRead, read_at_startup
from connector.toloka.retry import RetryPolicy
from testkit.clocks import FakeClock


class Client:
    def stop_retrying(self) -> None:
        pass


def read(call: Callable[[], str], progress: StartupRead) -> str | None:
    return read_at_startup(
        call, progress, client=Client(), stop=threading.Event(), clock=FakeClock(),
        backoff=RetryPolicy(max_attempts=None), rng=random.Random(1),
    )  # fmt: skip


def failing_then(failures: list[Exception], answer: str) -> Callable[[], str]:
    def call() -> str:
        if failures:
            raise failures.pop(0)
        return answer

    return call


@pytest.mark.parametrize(
    "outage",
    [
        RetryableApiError("HTTP 503"),
        RegistryUnavailableError("registering the schema: the registry failed (HTTP 503)"),
    ],
)
def test_an_outage_is_waited_out_and_named_while_it_lasts(outage: Exception) -> None:
    progress = StartupRead("the output schema", source="the Schema Registry")
    seen: list[str] = []

    def call() -> str:
        seen.append(progress.detail())
        if len(seen) < 3:
            raise outage
        return "schema"

    assert read(call, progress) == "schema"
    assert seen[1] == f"reading the output schema from the Schema Registry; waiting: {outage}"
    assert progress.failure is None, "answered: nothing is waited for any more"


def test_refused_registry_credentials_end_the_start_naming_the_setting() -> None:
    refused = RegistryCredentialsError("registering the schema: the registry failed (HTTP 401)")
    with pytest.raises(StartupError, match="SCHEMA_REGISTRY_BASIC_AUTH_USER_INFO"):
        read(failing_then([refused], "never"), StartupRead("the output schema"))
