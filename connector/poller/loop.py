"""The poller's loop: wait as a standby until the leadership group grants this pipeline and the
leader is gone, then lead until fenced, revoked or told to stop. Leading is: list a page,
publish its new finished items and the new cursor in one transaction (`commits`), repeat at
once while there is more, and between listings write
keepalives (while a listing is in flight, the keepalive thread writes them: `keepalive`). Every
`late_scan_interval_seconds` a look-back scan runs, caught up or not: in the loop's turn once the
main scan has reached the end, beside it while it has more to list (`lookback`: the loop commits
only the pages that thread hands over). Taking over, and its back-off when Kafka says no:
`takeover`.

Errors and what they do:
- a listing that failed after the client's retries (RetryableApiError): wait, list again;
- a page that cannot be read (UnreadablePageError): list it again with half as many items; a
  page of one item that cannot be read: dead-letter the item (`unreadable_result`) and pass it;
- a result larger than its topic accepts: dead-letter it (`result_too_large`) instead;
- an abortable Kafka error: the page's transaction is aborted, the page is listed again;
- a fatal producer error, or a transaction that could not end (a commit or abort timing out):
  a new producer claims the transactional id and re-reads the state (a commit whose outcome was
  unknown is then known);
- fencing (a newer poller claimed the id), from any transaction or keepalive: step down to
  standby, never exit;
- a key the API refuses (401/403) after start-up: readiness 503, one line when the refusal
  begins and one when it ends (`KeyAvailability`), listed again after the idle interval;
- an unreadable state record: raised, the process exits.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping
from contextlib import nullcontext
from dataclasses import replace
from datetime import UTC, datetime
from typing import Protocol

from connector.clock import Clock
from connector.config import PollerSettings
from connector.contract.leadership import keepalive_interval
from connector.errors import (
    AuthenticationError,
    FatalApiError,
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
from connector.metrics import Metrics
from connector.outstanding import OutstandingItems
from connector.poller.commits import Commits, Leadership
from connector.poller.group import Lease
from connector.poller.keepalive import KeepalivesWhileListing
from connector.poller.leadership import LeaderWatch, Standing
from connector.poller.limits import RecordLimits
from connector.poller.lookback import BackgroundLookBack
from connector.poller.page_records import PageRecords, PreparedRecords
from connector.poller.page_size import PageSizer
from connector.poller.prefetch import PagePrefetch, PrefetchKey
from connector.poller.scan import (
    ListingRequest,
    PagePlan,
    Scan,
    late_scan,
    late_scan_is_empty,
    main_scan,
    next_request,
    plan_page,
    plan_unreadable,
    request_after,
)
from connector.poller.state import StateStore
from connector.poller.status import PollerStatus
from connector.poller.takeover import RETRY_PAUSE_SECONDS, TakeOver
from connector.poller.unreadable import readable_item, single_entry
from connector.toloka.availability import KeyAvailability
from connector.toloka.models import ItemPage

log = logging.getLogger(__name__)

_FEED_POLL_SECONDS = 0.5
UNREADABLE_ATTEMPTS = 3
"""Times an item must fail to read alone before it is dead-lettered (a garbled answer may be a
passing fault of a proxy)."""


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
        response_limit_bytes: int,
        outstanding: OutstandingItems | None = None,
        limits: RecordLimits | None = None,
    ) -> None:
        self._settings = settings
        self._project = app_project_id
        self._source = source
        self._store = store
        self._clock = clock
        self._metrics = metrics
        self._heartbeat = heartbeat
        self._instance_id = instance_id
        self._limits = limits or RecordLimits({}, (), lambda _topics: {})
        self._pages = PageSizer(settings.page_size, response_limit_bytes)
        self._unreadable_strikes: dict[str, int] = {}
        self._prefetch: PagePrefetch[tuple[ItemPage, PreparedRecords]] = PagePrefetch()
        self._metrics.poller_page_limit.set(self._pages.size)
        self._keepalive_every = keepalive_interval(settings.leader_timeout_seconds)
        # The late window's clock: the wall clock read once, moved on by the monotonic clock,
        # so that a step of the wall clock while leading cannot move the horizon past items
        # that may still appear (a forward jump would disable the window).
        self._wall_at_start = clock.time()
        self._monotonic_at_start = clock.monotonic()
        self.status = PollerStatus(clock.monotonic(), clock.monotonic())
        self.key = KeyAvailability(clock)
        self._records = PageRecords(settings, app_project_id, self._limits)
        self._commits = Commits(
            instance_id=instance_id, clock=clock, metrics=metrics, heartbeat=heartbeat,
            status=self.status, outstanding=outstanding,
        )  # fmt: skip
        self._takeover = TakeOver(
            settings, app_project_id, instance_id=instance_id,
            producer_factory=producer_factory, store=store, limits=self._limits,
            commits=self._commits, clock=clock, metrics=metrics, heartbeat=heartbeat,
            status=self.status,
        )  # fmt: skip

    # --- standing --------------------------------------------------------------------------

    def run(self, stop: threading.Event, lease: Lease | None = None) -> None:
        """Stand by and lead until `stop`. With a `lease` (the leadership group's word on this
        pipeline, `connector.poller.group`) it leads only within a term the group granted, and
        steps down when the term ends; without one, whenever the leader is gone."""
        wait_for_vacancy = True
        try:
            while not stop.is_set():
                self._set_standing(Standing.STANDBY)
                term = stop if lease is None else lease.wait_granted(stop, self._heartbeat.beat)
                if term is None:
                    return
                with nullcontext() if lease is None else lease.leading():
                    wait_for_vacancy = self._serve_term(term, wait_for_vacancy)
        finally:
            self._set_standing(Standing.STANDBY)

    def _serve_term(self, term: threading.Event, wait_for_vacancy: bool) -> bool:
        """Take over once the leader is gone and lead until `term` ends or Kafka ends the
        leadership; whether the next take-over must wait for the leader to be gone again."""
        if wait_for_vacancy and not self._wait_for_vacancy(term):
            return True
        if term.is_set():
            return True  # revoked meanwhile: a take-over now would fence the group's choice
        leadership = self._takeover.attempt(self._late_window_time())
        if leadership is None:
            self._takeover.pause_after_failure(term)
            return True
        self._set_standing(Standing.LEADER)
        try:
            self._lead_while_keeping_alive(leadership, term)
            self._commits.release(leadership, self._project)
        except ProducerFencedError as exc:
            log.warning("another poller took over (%s): stepping down to standby", exc)
            self.status.kafka_problem = None  # a standby that was fenced does its job
        except ProducerFailedError as exc:
            log.error("fatal producer error (%s): claiming the transactional id anew", exc)
            self.status.kafka_problem = f"producer replaced: {exc}"
            return False
        return True

    def _set_standing(self, standing: Standing, /) -> None:
        if standing != self.status.standing:
            log.info("poller of app project %s: %s", self._project, standing.value)
        self.status.standing = standing
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
                    # Said once per outage: a take-over failing again is no news.
                    level = logging.DEBUG if self._takeover.failures else logging.INFO
                    log.log(level, "no live poller (last holder %s): taking over", watch.holder())
                    return True
            return False
        finally:
            feed.close()

    # --- leading ---------------------------------------------------------------------------

    def _lead_while_keeping_alive(self, lead: Leadership, stop: threading.Event) -> None:
        def due_in() -> float:
            return lead.last_write + self._keepalive_every - self._clock.monotonic()

        with KeepalivesWhileListing(
            lambda: self._commits.keepalive_while_listing(lead), due_in, RETRY_PAUSE_SECONDS
        ) as keepalives:
            try:
                self._lead(lead, keepalives, stop)
            finally:
                self._prefetch.drop()
                if lead.beside is not None:
                    lead.beside.cancel()

    def _lead(
        self, lead: Leadership, keepalives: KeepalivesWhileListing, stop: threading.Event
    ) -> None:
        """Pages until `stop`; ProducerFencedError / ProducerFailedError end the leadership."""
        while not stop.is_set():
            self._heartbeat.beat()
            if self._clock.monotonic() - lead.last_write >= self._keepalive_every:
                self._commits.write_keepalive(lead)
            try:
                if lead.beside is not None and lead.beside.done():
                    self._take_look_back(lead)
                    continue
                caught_up = self._poll_page(lead, keepalives)
            except UnreadablePageError as exc:
                self._pass_unreadable(lead, exc, stop)
                continue
            except RecordsTooLargeError as exc:
                self._learn_sizes(lead, exc)
                continue
            except PageAbortedError as exc:
                log.warning("page transaction aborted, listing the page again: %s", exc)
                self._pause(lead, stop, RETRY_PAUSE_SECONDS)
                continue
            except RetryableApiError as exc:
                # Said when listings begin to fail; the outage itself is the availability
                # tracker's to log (once when it begins, once when it ends).
                level = logging.DEBUG if self.status.listing_failure else logging.WARNING
                log.log(level, "listing failed, trying again: %s", exc)
                self.status.listing_failure = str(exc)
                self._pause(lead, stop, self._settings.poll_interval_seconds)
                continue
            except AuthenticationError as exc:
                # A key rotated or revoked while running: a restart would not bring it back,
                # and start-up already proved the key was right once. Wait, and say so.
                self.key.refused(exc)
                self.status.listing_failure = str(exc)
                self._pause(lead, stop, self._settings.idle_poll_interval_seconds)
                continue
            except FatalApiError as exc:
                # An answer that cannot be used (a malformed body, a proxy's 404, an after_id the
                # API forgot): exiting would only restart into the same answer, a crash loop.
                log.warning("listing answered unusably, trying again later: %s", exc)
                self.status.listing_failure = str(exc)
                if isinstance(exc, ValidationFailedError) and "after_id" in exc.payload:
                    self._without_after_id(lead)
                self._pause(lead, stop, self._settings.idle_poll_interval_seconds)
                continue
            self._next_scan(lead, caught_up, stop)

    def _next_scan(self, lead: Leadership, caught_up: bool, stop: threading.Event) -> None:
        """After a page: go on, look back when a look-back scan is due (caught up or not), or
        wait for more."""
        now = self._clock.monotonic()
        if lead.scan.late:
            if caught_up:
                lead.scan = self._main_scan(lead)
                lead.last_late_scan = now
            return
        if lead.beside is not None:
            if caught_up:  # the backlog is through: the look-back scan goes on in this turn
                lead.scan = lead.beside.cancel()
                lead.beside = None
            return
        late_scan_due = now - lead.last_late_scan >= self._settings.late_scan_interval_seconds
        if self._settings.late_window_seconds > 0 and late_scan_due:
            scan = late_scan(self._late_window_time(), ceiling=lead.state.cursor.finished_at)
            if caught_up or late_scan_is_empty(lead.state, scan):
                lead.scan = scan
            else:  # a backlog: the main scan goes on meanwhile (`lookback`)
                lead.beside = self._look_back_beside(lead, scan)
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

    def _main_scan(self, lead: Leadership) -> Scan:
        after_id = lead.state.cursor.after_id
        rejected = after_id is not None and after_id == lead.rejected_after_id
        return main_scan(self._late_window_time(), from_floor=rejected)

    def _poll_page(self, lead: Leadership, keepalives: KeepalivesWhileListing) -> bool:
        """List one page and commit what it changes; True when the scan is caught up."""
        started = self._clock.monotonic()
        # An empty look-back scan (nothing between the horizon and the cursor) lists nothing.
        empty = late_scan_is_empty(lead.state, lead.scan)
        page, prepared = (ItemPage(), None) if empty else self._list(lead, keepalives)
        self._listed()
        plan = self._plan(lead, lead.scan, page)
        if plan.change is not None and not (empty or plan.caught_up):
            self._list_ahead(lead, plan)  # before the records are built: as early as it is known
        self._publish(lead, plan, page, listed=not empty, prepared=prepared)
        lead.scan = plan.next_scan
        self._metrics.poll_duration.observe(self._clock.monotonic() - started)
        return plan.caught_up

    def _look_back_beside(self, lead: Leadership, scan: Scan) -> BackgroundLookBack:
        def list_page(request: ListingRequest) -> ItemPage:
            return self._source.list_items(
                sort="finished", after_id=request.after_id, limit=self._pages.size,
                filters=request.filters,
            )  # fmt: skip

        return BackgroundLookBack(lead.state, scan, list_page)

    def _take_look_back(self, lead: Leadership) -> None:
        """Commit the page the look-back scan beside the main scan handed over, and let it go
        on; a listing it could not make is made again in the loop's turn."""
        assert lead.beside is not None
        handed = lead.beside.take()
        lead.beside = None
        if handed.page is None:
            log.debug("the look-back scan goes on in the loop's turn: %s", handed.error)
            lead.scan = handed.scan
            return
        self._listed()
        plan = self._plan(lead, handed.scan, handed.page)
        self._publish(lead, plan, handed.page, listed=True)
        if plan.caught_up:
            lead.last_late_scan = self._clock.monotonic()
        else:
            lead.beside = self._look_back_beside(lead, plan.next_scan)

    def _listed(self) -> None:
        self.status.last_listing_at = self._clock.monotonic()
        self.status.listing_failure = None
        self.key.reached()

    def _plan(self, lead: Leadership, scan: Scan, page: ItemPage) -> PagePlan:
        return plan_page(
            lead.state,
            scan,
            page,
            now=self._clock.time(),
            late_window_seconds=self._settings.late_window_seconds,
            holder=self._instance_id,
        )

    def _publish(
        self,
        lead: Leadership,
        plan: PagePlan,
        page: ItemPage,
        *,
        listed: bool,
        prepared: PreparedRecords | None = None,
    ) -> None:
        """Commit what a page's `plan` changes (nothing when it changes nothing)."""
        outcome = self._records.outcome(plan.publish, prepared=prepared)
        if plan.change is not None:
            self._commits.commit(lead, plan, outcome)
        if plan.out_of_range:
            log.warning(
                "the listing returned %d items outside what was asked for (behind the cursor or "
                "its floor): skipped, not published again", plan.out_of_range,
            )  # fmt: skip
        if listed:
            self._pages.readable(len(outcome.results), sum(len(r.value) for r in outcome.results))
            self._metrics.poller_page_limit.set(self._pages.size)
        self._metrics.poll_page_size.observe(
            sum(1 for item in page.content if item.finished_at is not None)
        )

    def _list_ahead(self, lead: Leadership, plan: PagePlan) -> None:
        """Start listing the page after this one while its transaction commits (`prefetch`)."""
        request = request_after(lead.state, plan)
        limit = self._pages.size

        def list_page() -> tuple[ItemPage, PreparedRecords]:
            page = self._source.list_items(
                sort="finished", after_id=request.after_id, limit=limit, filters=request.filters
            )
            # The records too, while the loop's thread waits for the transaction to commit.
            finished = [item for item in page.content if item.finished_at is not None]
            return page, self._records.prepare(finished)

        self._prefetch.start(PrefetchKey.of(request, limit), list_page)

    def _list(
        self, lead: Leadership, keepalives: KeepalivesWhileListing
    ) -> tuple[ItemPage, PreparedRecords | None]:
        """The next page of the scan (listed ahead while the last one committed, when it was
        this request, with its records built); keepalives go on meanwhile, however long it
        takes."""
        request = next_request(lead.state, lead.scan)
        limit = self._pages.size
        try:
            with (
                self._heartbeat.waiting_on("the Toloka API (listing)"),
                keepalives.listing(),
            ):
                listed = self._prefetch.take(PrefetchKey.of(request, limit))
                if listed is not None:
                    return listed
                page = self._source.list_items(
                    sort="finished", after_id=request.after_id, limit=limit,
                    filters=request.filters,
                )  # fmt: skip
                return page, None
        except UnreadablePageError as exc:
            item = readable_item(exc) if self._pages.size == 1 else None
            if item is None:
                raise
            log.warning("the page around item %s is unreadable, the item is not: taking it (%s)",
                        item.id, exc)  # fmt: skip
            return ItemPage(content=[item], has_more=True), None

    def _pass_unreadable(
        self, lead: Leadership, exc: UnreadablePageError, stop: threading.Event
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
        outcome = self._records.outcome([], unreadable=entry if plan.publish else None)
        try:
            self._commits.commit(lead, plan, outcome)
        except RecordsTooLargeError as refused:
            self._learn_sizes(lead, refused)
            return
        except PageAbortedError as aborted:
            log.warning("transaction aborted, listing the item again: %s", aborted)
            return
        lead.scan = plan.next_scan

    def _learn_sizes(self, lead: Leadership, refused: RecordsTooLargeError) -> None:
        """Records were refused as too large (the page was aborted and will be listed again).
        When the refusing producer sent several records per batch, which one was too large is
        unknown: replace it by one that sends one record per batch (fencing the old one; a
        failure ends the leadership and the state is read again)."""
        if self._limits.learn(refused.refused):
            return
        try:
            lead.publisher = self._takeover.new_publisher()
        except PublishError as exc:
            raise ProducerFailedError(f"could not replace the producer: {exc}") from exc

    def _without_after_id(self, lead: Leadership) -> None:
        """List again from the floor of the scan: the API no longer knows its after_id."""
        if lead.scan.late:
            lead.scan = replace(lead.scan, after_id=None)
            return
        lead.rejected_after_id = lead.state.cursor.after_id
        lead.scan = self._main_scan(lead)

    def _pause(self, lead: Leadership, stop: threading.Event, seconds: float) -> None:
        """Wait `seconds` (or until `stop`), writing keepalives when they fall due."""
        deadline = self._clock.monotonic() + seconds
        while True:
            now = self._clock.monotonic()
            if now >= deadline:
                return
            next_keepalive = max(lead.last_write + self._keepalive_every, now)
            if self._clock.wait(stop, max(0.0, min(deadline, next_keepalive) - now)):
                return
            self._heartbeat.beat()
            if self._clock.monotonic() < next_keepalive:
                continue
            self._commits.write_keepalive(lead)
            failed = self._clock.monotonic() >= lead.last_write + self._keepalive_every
            if failed and self._clock.wait(stop, min(RETRY_PAUSE_SECONDS, seconds)):
                return  # (a failed keepalive is not tried again at once)

    def _late_window_time(self) -> float:
        """Wall-clock seconds as the late window counts them (see __init__)."""
        return self._wall_at_start + self._clock.monotonic() - self._monotonic_at_start
