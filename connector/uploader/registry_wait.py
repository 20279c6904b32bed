"""Input records a lane read while the Schema Registry did not answer: they wait, in the order
read, until it does.

A record in a registry format is decoded with its writer's schema, which the registry gives
(once per schema id: its client caches it). When the registry does not answer the lane's
decoding of a record (no answer, a refused connection, a 5xx, 408 or 429), that record is not
judged: it and every record its lane reads after it are kept here and decoded again once a
back-off is over (the API's: CONNECTOR_API_BACKOFF_BASE_SECONDS / _CAP_SECONDS, so one outage
policy serves both). Meanwhile the loop pauses the lane's topic (so at most one `consume()`
call's worth is kept) and the role is not ready, naming the registry and the reason. None of
these records is done, so no commit passes the first of them; a revocation or a shutdown drops
them and the partition's next reader reads them again. The outage is logged once when it begins
and once when it ends (`connector.availability`). The registry's own answers still decide: a
schema id it says does not exist (404) is an `invalid_schema` dead letter, refused credentials
(401, 403) end the role (waiting will not bring them back).
"""

from __future__ import annotations

import logging
import random
from collections import deque
from dataclasses import dataclass

from connector.availability import Availability
from connector.clock import Clock
from connector.errors import RegistryUnavailableError
from connector.kafka.clients import Message
from connector.toloka.retry import RetryPolicy

log = logging.getLogger(__name__)

REGISTRY = "schema-registry"
"""The dependency's name in the outage's log lines."""


@dataclass(frozen=True, slots=True)
class UndecodedRecord:
    message: Message
    partition: int
    offset: int
    generation: int


class RegistryWait:
    """One lane's records waiting for the registry, and when to try the first of them again.
    Used by the loop's thread only; readiness reads `waiting()` from other threads."""

    def __init__(self, backoff: RetryPolicy, clock: Clock) -> None:
        self.records: deque[UndecodedRecord] = deque()
        self.registry = Availability(REGISTRY, clock=clock)
        """Down from a decoding the registry did not answer until one it answered."""
        self._failure = ""
        """Why the registry's last try failed."""
        self._backoff = backoff
        self._clock = clock
        self._rng = random.Random()  # noqa: S311 - jitter, not cryptography
        self._failures = 0
        self._next_try_at = 0.0

    def failed(self, error: RegistryUnavailableError) -> None:
        """The registry did not answer: the first record waiting is tried again after the
        back-off."""
        self._failures += 1
        delay = self._backoff.delay_before_retry(self._failures, None, self._rng)
        self._next_try_at = self._clock.monotonic() + delay
        self._failure = str(error)
        self.registry.lost(self._failure)
        log.debug("cannot read the writer's schema (try %d), next try in %.1fs: %s",
                  self._failures, delay, error)  # fmt: skip

    def answered(self) -> None:
        self._failures = 0
        self.registry.reached()

    def waiting(self) -> str | None:
        """Why records wait for the registry; None when none do."""
        return self._failure if self.records else None

    def due(self, now: float) -> bool:
        """Whether records wait and their back-off is over."""
        return bool(self.records) and now >= self._next_try_at

    def drop(self, partitions: set[int] | None = None) -> int:
        """Forget the waiting records of `partitions` (all: None); how many were dropped."""
        before = len(self.records)
        if partitions is None:
            self.records.clear()
        else:
            kept = [record for record in self.records if record.partition not in partitions]
            self.records = deque(kept)
        return before - len(self.records)
