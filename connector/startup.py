"""What a role reads from the Toloka API before it starts work (the uploader the app's
`input_spec`, the poller its app project), and what it asks the Schema Registry (the poller's
output schema). Fatal at once only when the answer says the key, the registry's credentials or
the project is wrong (401, 403, 404), with a message that names the setting to check. Every
other failure is waited out with back-off (a registry that does not answer, or answers 5xx,
too): an outage, and any answer a proxy may give in the
API's place (a redirect, an HTML page with any other status, 200 included, a body over
CONNECTOR_API_MAX_RESPONSE_BYTES), which must not turn a proxy incident into a crash loop. The
wait is logged once when it begins and once when it ends (each try at DEBUG), and its reason is
the role's readiness detail (`StartupRead.detail`).
"""

from __future__ import annotations

import logging
import random
import threading
from collections.abc import Callable
from typing import TypeVar

from connector.clock import Clock
from connector.errors import (
    AuthenticationError,
    NotFoundError,
    RegistryCredentialsError,
    RegistryUnavailableError,
    RetryableApiError,
    StartupError,
    TolokaApiError,
)
from connector.lifecycle import InterruptibleClient, retries_end_on_stop
from connector.toloka.retry import RetryPolicy

log = logging.getLogger(__name__)

T = TypeVar("T")


class StartupRead:
    """What one role's start-up read is waiting for, as its readiness shows it."""

    def __init__(self, what: str, source: str = "the Toloka API") -> None:
        self.what = what
        self.source = source
        self.failure: str | None = None
        """The last failure while the read is retried; None before the first and once read."""

    def detail(self) -> str:
        waiting = "" if self.failure is None else f"; waiting: {self.failure}"
        return f"reading {self.what} from {self.source}{waiting}"


def read_at_startup(
    read: Callable[[], T],
    progress: StartupRead,
    *,
    client: InterruptibleClient,
    stop: threading.Event,
    clock: Clock,
    backoff: RetryPolicy,
    rng: random.Random,
) -> T | None:
    """`read()`, tried again after each API (or registry) outage until it answers; None when
    `stop` was set first (the client is then told to stop retrying, so a shutdown during an
    outage is prompt).
    Raises StartupError when the key, the registry's credentials or the project is wrong."""
    with retries_end_on_stop(stop, client):
        return _read_until_answered(
            read, progress, stop=stop, clock=clock, backoff=backoff, rng=rng
        )


def _read_until_answered(
    read: Callable[[], T],
    progress: StartupRead,
    *,
    stop: threading.Event,
    clock: Clock,
    backoff: RetryPolicy,
    rng: random.Random,
) -> T | None:
    what = progress.what
    failures = 0
    began = clock.monotonic()
    while True:
        try:
            result = read()
        except AuthenticationError as error:
            raise StartupError(
                f"the Toloka API refused the key (check TOLOKA_API_KEY): {error}"
            ) from error
        except NotFoundError as error:
            raise StartupError(
                "the app project or its app does not exist "
                f"(check TOLOKA_APP_PROJECT_ID and TOLOKA_BASE_URL): {error}"
            ) from error
        except RegistryCredentialsError as error:
            raise StartupError(
                f"the Schema Registry refused the credentials (check "
                f"SCHEMA_REGISTRY_BASIC_AUTH_USER_INFO): {error}"
            ) from error
        except (TolokaApiError, RegistryUnavailableError) as error:
            if stop.is_set():
                return None
            failures += 1
            progress.failure = str(error)
            retry_after = error.retry_after if isinstance(error, RetryableApiError) else None
            delay = backoff.delay_before_retry(failures, retry_after, rng)
            if failures == 1:
                log.error("cannot read %s yet, trying again until it answers: %s", what, error)
            log.debug(
                "cannot read %s (try %d), next try in %.1fs: %s", what, failures, delay, error
            )
            if clock.wait(stop, delay):
                return None
            continue
        if failures:
            log.info(
                "read %s after %d failed tries over %.0fs",
                what, failures, clock.monotonic() - began,
            )  # fmt: skip
        progress.failure = None
        return result
