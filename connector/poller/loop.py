"""The poller's loop: wait as a standby until the leader is gone, then lead until fenced or told
to stop. Leading is: list a page, publish its new finished items and the new cursor in one
transaction, repeat at once while there is more, and between listings write heartbeats.

Errors and what they do:
- a listing that failed after the client's retries (RetryableApiError): wait, list again;
- an abortable Kafka error: the page's transaction is aborted, the page is listed again;
- a fatal producer error: a new producer claims the transactional id and re-reads the state
  (a commit whose outcome was unknown is then known);
- fencing (a newer poller claimed the id): step down to standby;
- a FatalApiError (bad key, unknown project) or an unreadable state record: raised, the process
  exits.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Protocol

from connector.clock import Clock
from connector.config import PollerSettings
from connector.errors import (
    AuthenticationError,
    FatalApiError,
    KafkaOperationError,
    RetryableApiError,
    ValidationFailedError,
)
from connector.lifecycle import Heartbeat
from connector.metrics import Metrics, result_status_label
from connector.outstanding import OutstandingItems
from connector.poller.cursor import PollerState, StateChange, initial_cursor
from connector.poller.leadership import LeaderWatch, Role, heartbeat_interval
from connector.poller.publisher import (
    PageAbortedError,
    ProducerFactory,
    ProducerFailedError,
    ProducerFencedError,
    PublishError,
    TransactionalPublisher,
    output_record,
)
from connector.poller.scan import (
    Scan,
    heartbeat_change,
    late_scan,
    main_scan,
    next_request,
    plan_page,
)
from connector.poller.state import StateStore
from connector.toloka.models import Item, ItemPage

log = logging.getLogger(__name__)

_FEED_POLL_SECONDS = 0.5
_RETRY_PAUSE_SECONDS = 1.0


class ItemSource(Protocol):
    """The listing call of the Apps API client (TolokaClient implements it)."""

    def list_items(
        self,
        *,
        sort: str = "finished",
        after_id: str | None = None,
        limit: int = 100,
        filters: Mapping[str, str] | None = None,
    ) -> ItemPage: ...


@dataclass
class _Leadership:
    """What exists only while this instance leads."""

    publisher: TransactionalPublisher
    state: PollerState
    scan: Scan
    last_write: float  # monotonic time of the last committed state record
    last_late_scan: float  # monotonic start of the last look-back scan
    flowing: bool = False  # the current main scan published something


class PollerLoop:
    def __init__(
        self,
        settings: PollerSettings,
        app_project_id: str,
        *,
        source: ItemSource,
        producer_factory: ProducerFactory,
        store: StateStore,
        clock: Clock,
        metrics: Metrics,
        heartbeat: Heartbeat,
        instance_id: str,
        outstanding: OutstandingItems | None = None,
    ) -> None:
        self._settings = settings
        self._project = app_project_id
        self._source = source
        self._producer_factory = producer_factory
        self._store = store
        self._clock = clock
        self._metrics = metrics
        self._heartbeat = heartbeat
        self._instance_id = instance_id
        self._outstanding = outstanding
        self._heartbeat_every = heartbeat_interval(settings.leader_timeout_seconds)
        self.role = Role.STARTING
        self.kafka_problem: str | None = None
        """Why the last transaction or take-over failed; None once one succeeds (readiness)."""
        # Progress of the leader, for readiness: monotonic times of the last listing answered
        # and the last transaction committed (both set at take-over), and why listing fails.
        self.last_listing_at = clock.monotonic()
        self.last_commit_at = clock.monotonic()
        self.listing_failure: str | None = None

    # --- roles -----------------------------------------------------------------------------

    def run(self, stop: threading.Event) -> None:
        wait_for_vacancy = True
        try:
            while not stop.is_set():
                self._set_role(Role.STANDBY)
                if wait_for_vacancy and not self._wait_for_vacancy(stop):
                    return
                leadership = self._take_over()
                if leadership is None:
                    wait_for_vacancy = True
                    self._clock.wait(stop, _RETRY_PAUSE_SECONDS)
                    continue
                try:
                    self._lead(leadership, stop)
                    self._release(leadership)
                except ProducerFencedError as exc:
                    log.warning("another poller took over (%s): stepping down to standby", exc)
                    self.kafka_problem = None  # a standby that was fenced is doing its job
                    wait_for_vacancy = True
                except ProducerFailedError as exc:
                    log.error("fatal producer error (%s): claiming the transactional id anew", exc)
                    wait_for_vacancy = False
        finally:
            self._set_role(Role.STANDBY)

    def _set_role(self, role: Role) -> None:
        if role != self.role:
            log.info("poller of app project %s: %s", self._project, role.value)
        self.role = role
        self._metrics.poller_leader.set(1 if role is Role.LEADER else 0)

    def _wait_for_vacancy(self, stop: threading.Event) -> bool:
        """Follow the state topic until the leader is gone (True) or `stop` is set (False)."""
        watch = LeaderWatch(self._settings.leader_timeout_seconds, self._clock)
        feed = self._store.open_feed()
        try:
            while not stop.is_set():
                self._heartbeat.beat()
                watch.observe(feed.poll(_FEED_POLL_SECONDS))
                if watch.leader_gone():
                    log.info("no live poller (last holder %s): taking over", watch.holder())
                    return True
            return False
        finally:
            feed.close()

    def _take_over(self) -> _Leadership | None:
        """Claim the transactional id, then read the state it protects; None when Kafka failed
        (the caller waits and tries again)."""
        publisher = TransactionalPublisher(
            self._producer_factory(),
            output_topic=self._settings.output_topic,
            state_topic=self._settings.state_topic,
            timeout_seconds=self._settings.transaction_timeout_seconds,
            clock=self._clock,
        )
        try:
            with self._heartbeat.waiting_on("Kafka (taking over)"):
                publisher.init()
                # Read after init_transactions: the previous holder's open transaction is
                # resolved by then, so read_committed shows the last cursor that will ever count.
                state = self._store.read().poller_state()
                if state is None:
                    state = self._new_state()
                    log.info("no cursor yet: starting from %s", self._settings.start_from)
                change = heartbeat_change(state, now=self._clock.time(), holder=self._instance_id)
                publisher.commit_page([], change.records())
        except (PublishError, KafkaOperationError) as exc:
            log.warning("could not take over as poller: %s", exc)
            self.kafka_problem = f"could not take over: {exc}"
            return None
        state.apply(change)
        now = self._clock.monotonic()
        self.last_listing_at = self.last_commit_at = now
        self.listing_failure = None
        self._set_role(Role.LEADER)
        self._metrics.poller_takeovers.inc()
        self._observe_state(state)
        return _Leadership(publisher, state, main_scan(self._clock.time()), now, now)

    def _new_state(self) -> PollerState:
        cursor = initial_cursor(
            self._project,
            self._settings.start_from,
            now=self._clock.time(),
            late_window_seconds=self._settings.late_window_seconds,
            holder=self._instance_id,
        )
        return PollerState(cursor)

    # --- leading ---------------------------------------------------------------------------

    def _lead(self, lead: _Leadership, stop: threading.Event) -> None:
        """Pages until `stop`; ProducerFencedError / ProducerFailedError end the leadership."""
        while not stop.is_set():
            self._heartbeat.beat()
            if self._clock.monotonic() - lead.last_write >= self._heartbeat_every:
                self._write_heartbeat(lead)
            try:
                caught_up = self._poll_page(lead)
            except PageAbortedError as exc:
                log.warning("page transaction aborted, listing the page again: %s", exc)
                self._pause(lead, stop, _RETRY_PAUSE_SECONDS)
                continue
            except RetryableApiError as exc:
                log.warning("listing failed, trying again: %s", exc)
                self.listing_failure = str(exc)
                self._pause(lead, stop, self._settings.poll_interval_seconds)
                continue
            except AuthenticationError:
                raise  # a wrong or revoked key: no retry helps, exit and say so
            except FatalApiError as exc:
                # An answer that cannot be used (a malformed body, a proxy's 404, an after_id the
                # API forgot): exiting would only restart into the same answer, a crash loop.
                log.warning("listing answered unusably, trying again later: %s", exc)
                self.listing_failure = str(exc)
                if isinstance(exc, ValidationFailedError) and "after_id" in exc.payload:
                    lead.scan = self._without_after_id(lead.scan)
                self._pause(lead, stop, self._settings.idle_poll_interval_seconds)
                continue
            if caught_up:
                self._after_caught_up(lead, stop)

    def _after_caught_up(self, lead: _Leadership, stop: threading.Event) -> None:
        now = self._clock.monotonic()
        if lead.scan.late:
            lead.scan = main_scan(self._clock.time())
            return
        late_scan_due = now - lead.last_late_scan >= self._settings.late_scan_interval_seconds
        if self._settings.late_window_seconds > 0 and late_scan_due:
            lead.scan = late_scan(self._clock.time())
            lead.last_late_scan = now
            return
        wait = (
            self._settings.poll_interval_seconds
            if lead.flowing
            else self._settings.idle_poll_interval_seconds
        )
        lead.scan = main_scan(self._clock.time())
        lead.flowing = False
        self._pause(lead, stop, wait)

    def _poll_page(self, lead: _Leadership) -> bool:
        """List one page and commit what it changes; True when the scan is caught up."""
        started = self._clock.monotonic()
        request = next_request(lead.state, lead.scan)
        with self._heartbeat.waiting_on("the Toloka API (listing)"):
            page = self._source.list_items(
                sort="finished",
                after_id=request.after_id,
                limit=self._settings.page_size,
                filters=request.filters,
            )
        self.last_listing_at = self._clock.monotonic()
        self.listing_failure = None
        plan = plan_page(
            lead.state,
            lead.scan,
            page,
            now=self._clock.time(),
            late_window_seconds=self._settings.late_window_seconds,
            holder=self._instance_id,
        )
        if plan.change is not None:
            self._commit(lead, plan.publish, plan.change)
            if lead.scan.late:
                self._metrics.late_items.inc(len(plan.publish))
            else:
                lead.flowing = lead.flowing or bool(plan.publish)
        lead.scan = plan.next_scan
        if plan.out_of_range:
            log.warning(
                "the listing returned %d items outside what was asked for (behind the cursor or "
                "its floor): skipped, not published again", plan.out_of_range,
            )  # fmt: skip
        self._metrics.poll_page_size.observe(
            sum(1 for item in page.content if item.finished_at is not None)
        )
        self._metrics.poll_duration.observe(self._clock.monotonic() - started)
        return plan.caught_up

    def _commit(self, lead: _Leadership, publish: Sequence[Item], change: StateChange) -> None:
        records = [
            output_record(item, key_field=self._settings.key_field, app_project_id=self._project)
            for item in publish
        ]
        try:
            with self._heartbeat.waiting_on("Kafka (transaction)"):
                lead.publisher.commit_page(records, change.records())
        except PublishError as exc:
            self._metrics.transactions.labels("aborted").inc()
            self.kafka_problem = f"transaction failed: {exc}"
            raise
        self.kafka_problem = None
        lead.state.apply(change)
        lead.last_write = self.last_commit_at = self._clock.monotonic()
        self._metrics.transactions.labels("committed").inc()
        self._observe_published(publish)
        self._observe_state(lead.state)

    def _write_heartbeat(self, lead: _Leadership) -> None:
        change = heartbeat_change(lead.state, now=self._clock.time(), holder=self._instance_id)
        try:
            self._commit(lead, [], change)
        except PageAbortedError as exc:
            log.warning("heartbeat transaction aborted: %s", exc)

    @staticmethod
    def _without_after_id(scan: Scan) -> Scan:
        """List again from the floor of the scan: the API no longer knows its after_id."""
        return replace(scan, after_id=None) if scan.late else replace(scan, from_floor=True)

    def _release(self, lead: _Leadership) -> None:
        """On a clean stop, a cursor without holder: a standby takes over at once instead of
        after the leader timeout, and `reset-cursor` needs no --force."""
        change = heartbeat_change(lead.state, now=self._clock.time(), holder=None)
        try:
            self._commit(lead, [], change)
        except PublishError as exc:
            log.warning("could not hand leadership over (a standby waits it out): %s", exc)
            return
        log.info("poller of app project %s: leadership released", self._project)

    def _pause(self, lead: _Leadership, stop: threading.Event, seconds: float) -> None:
        """Wait `seconds` (or until `stop`), writing heartbeats when they fall due."""
        deadline = self._clock.monotonic() + seconds
        while True:
            now = self._clock.monotonic()
            if now >= deadline:
                return
            next_heartbeat = lead.last_write + self._heartbeat_every
            if self._clock.wait(stop, max(0.0, min(deadline, next_heartbeat) - now)):
                return
            self._heartbeat.beat()
            if self._clock.monotonic() >= next_heartbeat:
                self._write_heartbeat(lead)

    # --- metrics ---------------------------------------------------------------------------

    def _observe_published(self, items: Sequence[Item]) -> None:
        now = self._clock.time()
        for item in items:
            self._metrics.results_published.labels(result_status_label(item.status)).inc()
            if item.created_at is not None and item.finished_at is not None:
                self._metrics.item_processing_time.observe(
                    (item.finished_at - item.created_at).total_seconds()
                )
            if self._outstanding is not None:
                uploaded_at = self._outstanding.take(item.id)
                if uploaded_at is not None:
                    self._metrics.end_to_end_time.observe(now - uploaded_at)
        if self._outstanding is not None:
            self._metrics.items_outstanding.set(len(self._outstanding))

    def _observe_state(self, state: PollerState) -> None:
        self._metrics.cursor_age.set(state.cursor.age_seconds(self._clock.time()))
        self._metrics.late_window_tracked_items.set(len(state.seen))
