"""What a role reads from the Toloka API before it starts work (the uploader the app's
`input_spec`, the poller its app project): waited for through an API outage, which must not kill
the connector, and through a redirect (a proxy's maintenance page as often as a wrong
TOLOKA_BASE_URL: each try logs where it points and the setting to check); fatal at once when the
key or the project is wrong, with a message that names the setting to check.
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
    FatalApiError,
    NotFoundError,
    RedirectError,
    RetryableApiError,
    StartupError,
)
from connector.lifecycle import InterruptibleClient, retries_end_on_stop
from connector.toloka.retry import RetryPolicy

log = logging.getLogger(__name__)

T = TypeVar("T")


def read_at_startup(
    read: Callable[[], T],
    what: str,
    *,
    client: InterruptibleClient,
    stop: threading.Event,
    clock: Clock,
    backoff: RetryPolicy,
    rng: random.Random,
) -> T | None:
    """`read()`, tried again after each API outage until it answers; None when `stop` was set
    first (the client is then told to stop retrying, so a shutdown during an outage is prompt).
    Raises StartupError when the key or the project is wrong."""
    with retries_end_on_stop(stop, client):
        return _read_until_answered(read, what, stop=stop, clock=clock, backoff=backoff, rng=rng)


def _read_until_answered(
    read: Callable[[], T],
    what: str,
    *,
    stop: threading.Event,
    clock: Clock,
    backoff: RetryPolicy,
    rng: random.Random,
) -> T | None:
    failures = 0
    while True:
        try:
            return read()
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
            if stop.is_set():
                return None
            failures += 1
            retry_after = error.retry_after if isinstance(error, RetryableApiError) else None
            delay = backoff.delay_before_retry(failures, retry_after, rng)
            log.error("cannot read %s yet, next try in %.1fs: %s", what, delay, error)
            if clock.wait(stop, delay):
                return None
        except FatalApiError as error:
            raise StartupError(f"cannot read {what}: {error}") from error
