"""The app's `input_spec`, read at start (project → app) and refreshed in the background.

At start it is read with `connector.startup.read_at_startup` (an outage is waited for, a wrong key
or project is fatal). A failed refresh keeps the validator in use: the API still validates every
item itself.
"""

from __future__ import annotations

import logging
import threading
from typing import Protocol

from connector.clock import Clock
from connector.errors import ConnectorError
from connector.toloka.models import App, AppProject
from connector.validation import ItemValidator

log = logging.getLogger(__name__)


class SpecReader(Protocol):
    def get_project(self) -> AppProject: ...
    def get_app(self, app_id: str) -> App: ...


def read_validator(client: SpecReader) -> ItemValidator:
    project = client.get_project()
    app = client.get_app(project.app_id)
    return ItemValidator(app.input_spec)


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
