"""Taking over as the leader: claim the transactional id (fencing older holders), read the state
it protects, write the first cursor record; and, when Kafka says no, try again with back-off.

A failed take-over is tried again after an exponential back-off (`RETRY_PAUSE_SECONDS` doubled
up to `TAKEOVER_BACKOFF_CAP_SECONDS`): a broker that is away, or one that refuses the poller's
settings, is not asked again every second by a new transactional producer and a new state
consumer. It is logged once per outage (once per kind of failure), not once per attempt; a
transaction timeout the broker refuses is a configuration problem and says which settings to
compare. Readiness shows the reason throughout (`PollerStatus.kafka_problem`).
"""

from __future__ import annotations

import logging
import threading

from connector.clock import Clock
from connector.config import PollerSettings
from connector.contract.cursor import initial_cursor
from connector.errors import (
    KafkaOperationError,
    ProducerFencedError,
    PublishError,
    TransactionTimeoutRefusedError,
)
from connector.kafka.transactions import ProducerFactory
from connector.lifecycle import Heartbeat
from connector.metrics import Metrics
from connector.poller.commits import Commits, Leadership
from connector.poller.late_window import PollerState
from connector.poller.limits import RecordLimits
from connector.poller.publisher import TransactionalPublisher
from connector.poller.scan import keepalive_change, main_scan
from connector.poller.state import StateStore
from connector.poller.status import PollerStatus

log = logging.getLogger(__name__)

RETRY_PAUSE_SECONDS = 1.0
"""The pause before trying a failed Kafka step again (a take-over, a keepalive, a page whose
transaction was aborted): the broker is away or busy, do not spin."""
TAKEOVER_BACKOFF_CAP_SECONDS = 30.0
"""The longest pause between two take-over attempts: a broker back from an outage is used
within this long."""


def takeover_backoff(failures: int) -> float:
    """The pause after the `failures`-th failed take-over in a row (1 for the first)."""
    return min(TAKEOVER_BACKOFF_CAP_SECONDS, RETRY_PAUSE_SECONDS * 2.0 ** min(failures - 1, 16))


class TakeOver:
    def __init__(
        self,
        settings: PollerSettings,
        app_project_id: str,
        *,
        instance_id: str,
        producer_factory: ProducerFactory,
        store: StateStore,
        limits: RecordLimits,
        commits: Commits,
        clock: Clock,
        metrics: Metrics,
        heartbeat: Heartbeat,
        status: PollerStatus,
    ) -> None:
        self._settings = settings
        self._project = app_project_id
        self._instance_id = instance_id
        self._producer_factory = producer_factory
        self._store = store
        self._limits = limits
        self._commits = commits
        self._clock = clock
        self._metrics = metrics
        self._heartbeat = heartbeat
        self._status = status
        self.failures = 0
        """Failed take-overs in a row (an outage is on while it is above 0)."""
        self._reported: type[BaseException] | None = None
        """The kind of failure logged in this outage."""

    def new_publisher(self) -> TransactionalPublisher:
        """A producer that claimed the transactional id (fencing older holders)."""
        self._limits.refresh()
        publisher = TransactionalPublisher(
            self._producer_factory(),
            output_topic=self._settings.output_topic,
            state_topic=self._settings.state_topic,
            dlq_topic=self._settings.dlq_topic,
            timeout_seconds=self._settings.transaction_timeout_seconds,
            clock=self._clock,
        )
        publisher.init()
        return publisher

    def attempt(self, late_window_time: float) -> Leadership | None:
        """Claim the transactional id, then read the state it protects; None when Kafka failed
        or another poller claimed it first (the caller waits, `pause_after_failure`)."""
        try:
            with self._heartbeat.waiting_on("Kafka (taking over)"):
                publisher = self.new_publisher()
                # Read after init_transactions: the previous holder's open transaction is
                # resolved by then, so read_committed shows the last cursor that will ever count.
                state = self._store.read().poller_state()
                if state is None:
                    state = self._new_state()
                    log.info("no cursor yet: starting from %s", self._settings.start_from)
                change = keepalive_change(state, now=self._clock.time(), holder=self._instance_id)
                publisher.commit_page([], change.records())
        except ProducerFencedError as exc:
            # Another standby claimed the id first: it leads, this one is a standby doing its job.
            log.info("another poller took over first (%s): standing by", exc)
            self._status.kafka_problem = None
            self._end_outage()
            return None
        except (PublishError, KafkaOperationError) as exc:
            self._failed(exc)
            return None
        state.apply(change)
        if self.failures:
            log.info("took over after %d failed attempts", self.failures)
        self._end_outage()
        now = self._clock.monotonic()
        status = self._status
        status.kafka_problem = status.listing_failure = None
        status.last_listing_at = status.last_commit_at = now
        self._metrics.poller_takeovers.inc()
        self._commits.observe_state(state)
        return Leadership(publisher, state, main_scan(late_window_time), now, now)

    def pause_after_failure(self, stop: threading.Event) -> bool:
        """The back-off after a failed take-over (a short pause after a lost race); True when
        `stop` was set meanwhile."""
        seconds = takeover_backoff(self.failures) if self.failures else RETRY_PAUSE_SECONDS
        return self._clock.wait(stop, seconds)

    def _failed(self, exc: BaseException) -> None:
        self.failures += 1
        self._metrics.poller_takeover_failures.inc()
        refused_timeout = isinstance(exc, TransactionTimeoutRefusedError)
        if refused_timeout:
            timeout = self._settings.transaction_timeout_seconds
            self._status.kafka_problem = (
                f"configuration: the broker refuses CONNECTOR_TRANSACTION_TIMEOUT_SECONDS="
                f"{timeout:g} (above its transaction.max.timeout.ms)"
            )
        else:
            self._status.kafka_problem = f"could not take over: {exc}"
        first_of_its_kind = self._reported is not type(exc)
        self._reported = type(exc)
        delay = takeover_backoff(self.failures)
        if not first_of_its_kind:
            log.debug("take-over attempt %d failed, next in %.0fs: %s", self.failures, delay, exc)
        elif refused_timeout:
            log.error(
                "the broker refuses the poller's transaction timeout: "
                "CONNECTOR_TRANSACTION_TIMEOUT_SECONDS=%g is above the broker's "
                "transaction.max.timeout.ms; lower the setting or raise the broker's limit "
                "(trying again with back-off, up to %.0fs apart): %s",
                self._settings.transaction_timeout_seconds, TAKEOVER_BACKOFF_CAP_SECONDS, exc,
            )  # fmt: skip
        else:
            log.warning(
                "could not take over as poller (trying again with back-off, up to %.0fs "
                "apart; logged once until it succeeds): %s",
                TAKEOVER_BACKOFF_CAP_SECONDS, exc,
            )  # fmt: skip

    def _end_outage(self) -> None:
        self.failures = 0
        self._reported = None

    def _new_state(self) -> PollerState:
        cursor = initial_cursor(
            self._project,
            self._settings.start_from,
            now=self._clock.time(),
            late_window_seconds=self._settings.late_window_seconds,
            holder=self._instance_id,
        )
        return PollerState(cursor)
