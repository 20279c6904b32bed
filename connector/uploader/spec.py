"""The app's `input_spec`, read at start (project → app) and refreshed in the background.

At start an unreachable API is waited for (an outage must not kill the connector), and so is a
redirect (a proxy's maintenance page as often as a wrong TOLOKA_BASE_URL: each try logs where it
points and the setting to check); a wrong key or a missing project is fatal at once, with a
message that names the setting to check.
A failed refresh keeps the validator in use: the API still validates every item itself.
"""

from __future__ import annotations

import logging
import random
import threading
from typing import Protocol

from connector.clock import Clock
from connector.errors import (
    AuthenticationError,
    ConnectorError,
    FatalApiError,
    NotFoundError,
    RedirectError,
    RetryableApiError,
)
from connector.toloka.models import App, AppProject
from connector.toloka.retry import RetryPolicy
from connector.validation import ItemValidator

log = logging.getLogger(__name__)


class SpecReader(Protocol):
    def get_project(self) -> AppProject: ...
    def get_app(self, app_id: str) -> App: ...


class StartupError(ConnectorError):
    """The uploader cannot start: the message says which setting to check."""


def read_validator(client: SpecReader) -> ItemValidator:
    project = client.get_project()
    app = client.get_app(project.app_id)
    return ItemValidator(app.input_spec)


def wait_for_validator(
    client: SpecReader,
    stop: threading.Event,
    clock: Clock,
    backoff: RetryPolicy,
    rng: random.Random,
) -> ItemValidator | None:
    """The validator of the project's app; None when `stop` was set while the API was down.
    Raises StartupError when the key or the project is wrong."""
    failures = 0
    while True:
        try:
            return read_validator(client)
        except AuthenticationError as error:
            raise StartupError(
                f"the Toloka API refused the key (check TOLOKA_API_KEY): {error}"
            ) from error
        except NotFoundError as error:
            raise StartupError(
                "the app project or its app does not exist "
                f"(check TOLOKA_APP_PROJECT_ID and TOLOKA_BASE_URL): {error}"
            ) from error
        except (RetryableApiError, RedirectError) as error:
            failures += 1
            retry_after = error.retry_after if isinstance(error, RetryableApiError) else None
            delay = backoff.delay_before_retry(failures, retry_after, rng)
            log.error("cannot read the app's input_spec yet, next try in %.1fs: %s", delay, error)
            if clock.wait(stop, delay):
                return None
        except FatalApiError as error:
            raise StartupError(f"cannot read the app's input_spec: {error}") from error


class SpecRefresher:
    """Reads the spec again every `interval` seconds in a thread of its own, so a slow or
    failing API never holds up the consumer loop; `take` hands over a new validator once."""

    def __init__(self, client: SpecReader, clock: Clock, interval: float) -> None:
        self._client = client
        self._clock = clock
        self._interval = interval
        self._due = clock.monotonic() + interval
        self._fresh: ItemValidator | None = None
        self._running: threading.Thread | None = None

    def take(self) -> ItemValidator | None:
        """A validator read since the last call, starting a new read when one is due."""
        if self._running is not None and not self._running.is_alive():
            self._running = None
        fresh, self._fresh = self._fresh, None
        now = self._clock.monotonic()
        if self._running is None and now >= self._due:
            self._due = now + self._interval
            self._running = threading.Thread(
                target=self._refresh, name="uploader-spec-refresh", daemon=True
            )
            self._running.start()
        return fresh

    def _refresh(self) -> None:
        try:
            self._fresh = read_validator(self._client)
        except ConnectorError as error:
            log.warning("cannot refresh the app's input_spec, keeping the current one: %s", error)
