"""The Toloka API client of a role, from the settings."""

from __future__ import annotations

from connector.config import Settings
from connector.metrics import Metrics
from connector.toloka.availability import ApiAvailability
from connector.toloka.client import Timeouts, TolokaClient
from connector.toloka.pacing import Pacing
from connector.toloka.retry import RetryPolicy


def build_client(
    settings: Settings,
    metrics: Metrics,
    availability: ApiAvailability | None = None,
    *,
    in_flight: int = 1,
    pacing: Pacing | None = None,
) -> TolokaClient:
    """One API client per role, so that one role's shutdown cannot cut the other's retries.

    `in_flight` is how many requests its user may have in flight at once (the uploader's bulk
    uploads); the pool has two connections more. `pacing` holds every request for a 429's
    Retry-After and adapts the in-flight limit to the 429s (the uploader's).

    Retries are bounded here; each role retries a failed operation again on its own terms (the
    uploader never gives up a batch, the poller retries the page), and reports itself not ready
    meanwhile, which an unbounded client retry would hide.
    """
    api = settings.api
    return TolokaClient(
        settings.toloka.base_url,
        settings.toloka.api_key,
        settings.toloka.app_project_id,
        timeouts=Timeouts(
            connect=api.connect_timeout_seconds,
            read=api.timeout_seconds,
            write=api.timeout_seconds,
            pool=api.timeout_seconds,
        ),
        retry=RetryPolicy(
            max_attempts=api.max_attempts,
            base_delay_seconds=api.backoff_base_seconds,
            max_delay_seconds=api.backoff_cap_seconds,
        ),
        max_connections=in_flight + 2,
        max_response_bytes=api.max_response_bytes,
        verify_tls=api.tls_verify,
        metrics=metrics,
        availability=availability,
        pacing=pacing,
    )
