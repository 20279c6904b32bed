"""Whether the Apps API is answering, as the clients of one process see it.

An outage begins with an attempt that gets no answer or a 5xx, and ends with the next attempt
answered below 500 (a 429 is the API answering, slowly). The tracker is the shared
`connector.availability.Availability`: each change is one log line (the `state_change` event)
and the `toloka_connector_api_up` gauge.
"""

from __future__ import annotations

from connector.availability import Availability
from connector.clock import Clock
from connector.metrics import Metrics


class ApiAvailability(Availability):
    def __init__(self, metrics: Metrics | None = None, clock: Clock | None = None) -> None:
        super().__init__(
            "toloka-api", gauge=None if metrics is None else metrics.api_up, clock=clock
        )

    def observe(self, answered_below_500: bool, operation: str, outcome: str) -> None:
        if answered_below_500:
            self.reached()
        else:
            self.lost(f"{operation} {outcome}")


KEY_REFUSED = "the API refuses the key (401/403)"


class KeyAvailability(Availability):
    """Whether the API accepts the key, after start-up (where a refusal is fatal: the key is
    wrong). A key refused later (rotated, revoked, a WAF's glitch) is waited out with back-off
    by either role, with readiness 503 and one line when the refusal begins and one when it
    ends, since a restart would not bring the key back."""

    def __init__(self, clock: Clock | None = None) -> None:
        super().__init__("toloka-api-key", clock=clock)

    def refused(self, error: Exception) -> None:
        self.lost(f"{KEY_REFUSED}: {error}")
