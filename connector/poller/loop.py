"""The poller's loop: wait as a standby until the leader is gone, then lead until fenced or told
to stop. Leading is: list a page, publish its new finished items and the new cursor in one
transaction, repeat at once while there is more, and between listings write heartbeats (while a
listing is in flight, a helper thread writes them: see `keepalive`). Every
`late_scan_interval_seconds` a look-back scan interrupts the main scan, caught up or not.

Errors and what they do:
- a listing that failed after the client's retries (RetryableApiError): wait, list again;
- a page that cannot be read (UnreadablePageError): list it again with half as many items; a
  page of one item that cannot be read: dead-letter the item (`unreadable_result`) and pass it;
- a result larger than its topic accepts: dead-letter it (`result_too_large`) instead;
- an abortable Kafka error: the page's transaction is aborted, the page is listed again;
- a fatal producer error, or a transaction that could not end (a commit or abort timing out):
  a new producer claims the transactional id and re-reads the state (a commit whose outcome was
  unknown is then known);
- fencing (a newer poller claimed the id), from any transaction or heartbeat: step down to
  standby, never exit;
- an AuthenticationError (bad key) or an unreadable state record: raised, the process exits.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Protocol

from connector.clock import Clock
from connector.config import PollerSettings
from connector.contract.cursor import initial_cursor
from connector.contract.dead_letters import RESULT_TOO_LARGE, UNREADABLE_RESULT
from connector.contract.leadership import keepalive_interval
from connector.errors import (
    AuthenticationError,
    FatalApiError,
    KafkaOperationError,
    PageAbortedError,
    ProducerFailedError,
    ProducerFencedError,
    PublishError,
    RecordsTooLargeError,
    RetryableApiError,
    UnreadablePageError,
    ValidationFailedError,
)
from connector.kafka.transactions import ProducerFactory
from connector.lifecycle import Heartbeat
from connector.metrics import Metrics, result_status_label
from connector.outstanding import OutstandingItems
from connector.poller.dead_letters import dead_letter
from connector.poller.keepalive import KeepalivesDuringCall
from connector.poller.late_window import PollerState
from connector.poller.leadership import LeaderWatch, Standing
from connector.poller.limits import RecordLimits, record_size
from connector.poller.page_size import PageSizer
from connector.poller.publisher import (
    OutputRecord,
    TransactionalPublisher,
    output_record,
    record_key,
)
from connector.poller.scan import (
    PagePlan,
    Scan,
    keepalive_change,
    late_scan,
    late_scan_is_empty,
    main_scan,
    next_request,
    plan_page,
    plan_unreadable,
)
from connector.poller.state import StateStore
from connector.poller.unreadable import UnreadableItem, readable_item, single_entry
from connector.toloka.models import Item, ItemPage

log = logging.getLogger(__name__)

_FEED_POLL_SECONDS = 0.5
UNREADABLE_ATTEMPTS = 3
"""Times an item must fail to read alone before it is dead-lettered (a garbled answer may be a
passing fault of a proxy)."""
_RETRY_PAUSE_SECONDS = 1.0
DEFAULT_RESPONSE_LIMIT_BYTES = 64 * 1024 * 1024


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
    last_late_scan: float
    """Monotonic end of the last look-back scan: the main scan gets at least an interval
    between two of them, however long one takes (a burst in the window is a long one)."""
    flowing: bool = False  # the current main scan published something
    one_record_per_batch: bool = False
    """The producer was built to send one record per batch (a refusal then names the record)."""
    rejected_after_id: str | None = None
    """A cursor item the API said it does not know: the main scan lists from the cursor's
    finished_at instead, until the cursor moves to another item."""


@dataclass
class _PageOutcome:
    """What the records of one transaction are, before they are produced."""

    results: list[OutputRecord] = field(default_factory=list)
    dead_letters: list[OutputRecord] = field(default_factory=list)
    published: list[Item] = field(default_factory=list)
    reasons: list[str] = field(default_factory=list)


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
        dlq_topic: str = "toloka.items.dlq",
        limits: RecordLimits | None = None,
        response_limit_bytes: int = DEFAULT_RESPONSE_LIMIT_BYTES,
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
        self._dlq_topic = dlq_topic
        self._limits = limits or RecordLimits({}, (), lambda _topics: {})
        self._pages = PageSizer(settings.page_size, response_limit_bytes)
        self._unreadable_strikes: dict[str, int] = {}
        self._metrics.poller_page_limit.set(self._pages.size)
        self._keepalive_every = keepalive_interval(settings.leader_timeout_seconds)
        # The late window's clock: the wall clock read once, moved on by the monotonic clock,
        # so that a step of the wall clock while leading cannot move the horizon past items
        # that may still appear (a forward jump would disable the window).
        self._wall_at_start = clock.time()
        self._monotonic_at_start = clock.monotonic()
        self.standing = Standing.STARTING
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
                self._set_standing(Standing.STANDBY)
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
                    self.kafka_problem = f"producer replaced: {exc}"
                    wait_for_vacancy = False
        finally:
            self._set_standing(Standing.STANDBY)

    def _set_standing(self, standing: Standing, /) -> None:
        if standing != self.standing:
            log.info("poller of app project %s: %s", self._project, standing.value)
        self.standing = standing
        self._metrics.poller_leader.set(1 if standing is Standing.LEADER else 0)

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

    def _new_publisher(self) -> TransactionalPublisher:
        """A producer that claimed the transactional id (fencing older holders)."""
        self._limits.refresh()
        publisher = TransactionalPublisher(
            self._producer_factory(),
            output_topic=self._settings.output_topic,
            state_topic=self._settings.state_topic,
            dlq_topic=self._dlq_topic,
            timeout_seconds=self._settings.transaction_timeout_seconds,
            clock=self._clock,
        )
        publisher.init()
        return publisher

    def _take_over(self) -> _Leadership | None:
        """Claim the transactional id, then read the state it protects; None when Kafka failed
        (the caller waits and tries again)."""
        try:
            with self._heartbeat.waiting_on("Kafka (taking over)"):
                publisher = self._new_publisher()
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
            self.kafka_problem = None
            return None
        except (PublishError, KafkaOperationError) as exc:
            log.warning("could not take over as poller: %s", exc)
            self.kafka_problem = f"could not take over: {exc}"
            return None
        state.apply(change)
        now = self._clock.monotonic()
        self.kafka_problem = None
        self.last_listing_at = self.last_commit_at = now
        self.listing_failure = None
        self._set_standing(Standing.LEADER)
        self._metrics.poller_takeovers.inc()
        self._observe_state(state)
        return _Leadership(
            publisher,
            state,
            main_scan(self._late_window_time()),
            now,
            now,
            one_record_per_batch=self._limits.single_record_batches,
        )

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
            if self._clock.monotonic() - lead.last_write >= self._keepalive_every:
                self._write_keepalive(lead)
            try:
                caught_up = self._poll_page(lead)
            except UnreadablePageError as exc:
                self._pass_unreadable(lead, exc, stop)
                continue
            except RecordsTooLargeError as exc:
                self._learn_sizes(lead, exc)
                continue
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
                    self._without_after_id(lead)
                self._pause(lead, stop, self._settings.idle_poll_interval_seconds)
                continue
            self._next_scan(lead, caught_up, stop)

    def _next_scan(self, lead: _Leadership, caught_up: bool, stop: threading.Event) -> None:
        """After a page: go on, look back when a look-back scan is due (caught up or not), or
        wait for more."""
        now = self._clock.monotonic()
        if lead.scan.late:
            if caught_up:
                lead.scan = self._main_scan(lead)
                lead.last_late_scan = now
            return
        late_scan_due = now - lead.last_late_scan >= self._settings.late_scan_interval_seconds
        if self._settings.late_window_seconds > 0 and late_scan_due:
            lead.scan = late_scan(self._late_window_time(), ceiling=lead.state.cursor.finished_at)
            return
        if not caught_up:
            return
        wait = (
            self._settings.poll_interval_seconds
            if lead.flowing
            else self._settings.idle_poll_interval_seconds
        )
        lead.flowing = False
        self._pause(lead, stop, wait)
        lead.scan = self._main_scan(lead)

    def _main_scan(self, lead: _Leadership) -> Scan:
        after_id = lead.state.cursor.after_id
        rejected = after_id is not None and after_id == lead.rejected_after_id
        return main_scan(self._late_window_time(), from_floor=rejected)

    def _poll_page(self, lead: _Leadership) -> bool:
        """List one page and commit what it changes; True when the scan is caught up."""
        started = self._clock.monotonic()
        # An empty look-back scan (nothing between the horizon and the cursor) lists nothing.
        empty = late_scan_is_empty(lead.state, lead.scan)
        page = ItemPage() if empty else self._list(lead)
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
        outcome = self._outcome(plan.publish)
        if plan.change is not None:
            self._commit(lead, plan, outcome)
        lead.scan = plan.next_scan
        if plan.out_of_range:
            log.warning(
                "the listing returned %d items outside what was asked for (behind the cursor or "
                "its floor): skipped, not published again", plan.out_of_range,
            )  # fmt: skip
        if not empty:
            self._pages.readable(len(outcome.results), sum(len(r.value) for r in outcome.results))
            self._metrics.poller_page_limit.set(self._pages.size)
        self._metrics.poll_page_size.observe(
            sum(1 for item in page.content if item.finished_at is not None)
        )
        self._metrics.poll_duration.observe(self._clock.monotonic() - started)
        return plan.caught_up

    def _list(self, lead: _Leadership) -> ItemPage:
        """The next page of the scan; heartbeats go on meanwhile, however long it takes."""
        request = next_request(lead.state, lead.scan)

        def write() -> None:
            change = keepalive_change(lead.state, now=self._clock.time(), holder=self._instance_id)
            self._commit(lead, PagePlan([], change, False, lead.scan), _PageOutcome())

        def due_in() -> float:
            return lead.last_write + self._keepalive_every - self._clock.monotonic()

        try:
            with KeepalivesDuringCall(write, due_in):
                return self._source.list_items(
                    sort="finished",
                    after_id=request.after_id,
                    limit=self._pages.size,
                    filters=request.filters,
                )
        except UnreadablePageError as exc:
            item = readable_item(exc) if self._pages.size == 1 else None
            if item is None:
                raise
            log.warning("the page around item %s is unreadable, the item is not: taking it (%s)",
                        item.id, exc)  # fmt: skip
            return ItemPage(content=[item], has_more=True)

    def _pass_unreadable(
        self, lead: _Leadership, exc: UnreadablePageError, stop: threading.Event
    ) -> None:
        """A page that cannot be read: ask for fewer items; a page of one: dead-letter its item
        in the transaction that moves past it."""
        self._metrics.unreadable_pages.inc()
        if self._pages.shrink():
            log.warning("listing page unreadable (%s): asking for %d items", exc, self._pages.size)
            self._metrics.poller_page_limit.set(self._pages.size)
            return
        entry = single_entry(exc)
        if entry is None:
            log.error(
                "an item cannot be read even alone, nor its id (%s): it cannot be passed; "
                "trying again later", exc,
            )  # fmt: skip
            self._pause(lead, stop, self._settings.idle_poll_interval_seconds)
            return
        strikes = self._unreadable_strikes.get(entry.id, 0) + 1
        self._unreadable_strikes = {entry.id: strikes}
        if strikes < UNREADABLE_ATTEMPTS:
            log.warning("item %s cannot be read even alone (%s): reading it again",
                        entry.id, exc)  # fmt: skip
            self._pause(lead, stop, self._settings.poll_interval_seconds)
            return
        plan = plan_unreadable(
            lead.state,
            lead.scan,
            entry,
            now=self._clock.time(),
            tracked_until=datetime.fromtimestamp(self._late_window_time(), UTC),
            holder=self._instance_id,
        )
        if plan.change is None:
            self._next_scan(lead, plan.caught_up, stop)
            return
        log.error("item %s cannot be read even alone (%s): dead-lettered", entry.id, exc)
        try:
            self._commit(lead, plan, self._outcome([], unreadable=entry if plan.publish else None))
        except RecordsTooLargeError as refused:
            self._learn_sizes(lead, refused)
            return
        except PageAbortedError as aborted:
            log.warning("transaction aborted, listing the item again: %s", aborted)
            return
        lead.scan = plan.next_scan

    def _outcome(
        self, publish: Sequence[Item], unreadable: UnreadableItem | None = None
    ) -> _PageOutcome:
        """Output records for the items of a page, dead letters for what cannot be published."""
        outcome = _PageOutcome()
        for item in publish:
            record = output_record(
                item, key_field=self._settings.key_field, app_project_id=self._project
            )
            size = record_size(record.key, record.value, record.headers)
            if self._limits.fits(self._settings.output_topic, size):
                outcome.results.append(record)
                outcome.published.append(item)
            else:
                outcome.dead_letters.append(self._too_large_letter(item, record, size))
                outcome.reasons.append(RESULT_TOO_LARGE)
        if unreadable is not None:
            outcome.dead_letters.append(self._unreadable_letter(unreadable))
            outcome.reasons.append(UNREADABLE_RESULT)
        return outcome

    def _too_large_letter(self, item: Item, record: OutputRecord, size: int) -> OutputRecord:
        topic = self._settings.output_topic
        message = (
            f"the result record takes {size} bytes; {topic} accepts at most "
            f"{self._limits.limit(topic)} (the lowest of its max.message.bytes, the producer's "
            "message.max.bytes, and what the broker refused): too large to publish"
        )
        return dead_letter(
            RESULT_TOO_LARGE,
            message,
            item_id=item.id,
            app_project_id=item.app_project_id or self._project,
            key=record.key,
            fields=item.raw,
            limit=self._limits.limit(self._dlq_topic),
        )

    def _unreadable_letter(self, entry: UnreadableItem) -> OutputRecord:
        input_data = entry.fields.get("input_data")
        stand_in = Item.model_construct(
            id=entry.id, input_data=input_data if isinstance(input_data, dict) else {}
        )
        return dead_letter(
            UNREADABLE_RESULT,
            f"the item cannot be read even alone: {entry.problem}",
            item_id=entry.id,
            app_project_id=self._project,
            key=record_key(stand_in, self._settings.key_field).encode(),
            fields=entry.fields,
            raw=entry.raw,
            limit=self._limits.limit(self._dlq_topic),
        )

    def _commit(self, lead: _Leadership, plan: PagePlan, outcome: _PageOutcome) -> None:
        assert plan.change is not None
        try:
            with self._heartbeat.waiting_on("Kafka (transaction)"):
                lead.publisher.commit_page(
                    outcome.results, plan.change.records(), outcome.dead_letters
                )
        except PublishError as exc:
            self._metrics.transactions.labels("aborted").inc()
            self.kafka_problem = f"transaction failed: {exc}"
            raise
        self.kafka_problem = None
        lead.state.apply(plan.change)
        lead.last_write = self.last_commit_at = self._clock.monotonic()
        self._metrics.transactions.labels("committed").inc()
        if lead.scan.late:
            self._metrics.late_items.inc(len(plan.publish))
        else:
            lead.flowing = lead.flowing or bool(plan.publish)
        for reason in outcome.reasons:
            self._metrics.dead_letters.labels(reason).inc()
        self._observe_published(plan.publish, outcome.published)
        self._observe_state(lead.state)

    def _write_keepalive(self, lead: _Leadership) -> None:
        change = keepalive_change(lead.state, now=self._clock.time(), holder=self._instance_id)
        try:
            self._commit(lead, PagePlan([], change, False, lead.scan), _PageOutcome())
        except PageAbortedError as exc:
            log.warning("keepalive transaction aborted: %s", exc)

    def _learn_sizes(self, lead: _Leadership, refused: RecordsTooLargeError) -> None:
        """Records were refused as too large (the page was aborted and will be listed again).
        When the refusing producer sent several records per batch, which one was too large is
        unknown: replace it by one that sends one record per batch (fencing the old one; a
        failure ends the leadership and the state is read again)."""
        if self._limits.learn(refused.refused, one_record_per_batch=lead.one_record_per_batch):
            return
        try:
            lead.publisher = self._new_publisher()
        except PublishError as exc:
            raise ProducerFailedError(f"could not replace the producer: {exc}") from exc
        lead.one_record_per_batch = True

    def _without_after_id(self, lead: _Leadership) -> None:
        """List again from the floor of the scan: the API no longer knows its after_id."""
        if lead.scan.late:
            lead.scan = replace(lead.scan, after_id=None)
            return
        lead.rejected_after_id = lead.state.cursor.after_id
        lead.scan = self._main_scan(lead)

    def _release(self, lead: _Leadership) -> None:
        """On a clean stop, a cursor without holder: a standby takes over at once instead of
        after the leader timeout, and `reset-cursor` needs no --force."""
        change = keepalive_change(lead.state, now=self._clock.time(), holder=None)
        try:
            self._commit(lead, PagePlan([], change, False, lead.scan), _PageOutcome())
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
            next_heartbeat = max(lead.last_write + self._keepalive_every, now)
            if self._clock.wait(stop, max(0.0, min(deadline, next_heartbeat) - now)):
                return
            self._heartbeat.beat()
            if self._clock.monotonic() < next_heartbeat:
                continue
            self._write_keepalive(lead)
            failed = self._clock.monotonic() >= lead.last_write + self._keepalive_every
            if failed and self._clock.wait(stop, min(_RETRY_PAUSE_SECONDS, seconds)):
                return  # (a failed heartbeat is not tried again at once)

    def _late_window_time(self) -> float:
        """Wall-clock seconds as the late window counts them (see __init__)."""
        return self._wall_at_start + self._clock.monotonic() - self._monotonic_at_start

    # --- metrics ---------------------------------------------------------------------------

    def _observe_published(self, passed: Sequence[Item], published: Sequence[Item]) -> None:
        """`passed`: every item the transaction moved past; `published`: those with a result
        (the others were dead-lettered)."""
        now = self._clock.time()
        for item in published:
            self._metrics.results_published.labels(result_status_label(item.status)).inc()
            if item.created_at is not None and item.finished_at is not None:
                self._metrics.item_processing_time.observe(
                    (item.finished_at - item.created_at).total_seconds()
                )
        if self._outstanding is not None:
            for item in passed:
                uploaded_at = self._outstanding.take(item.id)
                if uploaded_at is not None:
                    self._metrics.end_to_end_time.observe(now - uploaded_at)
            self._metrics.items_outstanding.set(len(self._outstanding))

    def _observe_state(self, state: PollerState) -> None:
        self._metrics.cursor_age.set(state.cursor.age_seconds(self._clock.time()))
        self._metrics.late_window_tracked_items.set(len(state.seen))
