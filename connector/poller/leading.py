"""The leader's turn: list a page, publish its new finished items and the new cursor in one
transaction (`commits`), repeat at once while there is more, and between listings write
keepalives (while a listing is in flight, the keepalive thread writes them: `keepalive`). Every
`late_scan_interval_seconds` a look-back scan runs, caught up or not: in the loop's turn once the
main scan has reached the end, beside it while it has more to list (`lookback`: the loop commits
only the pages that thread hands over).

While the main scan drains a backlog, several pages may share a transaction (`publishing`).

Errors and what they do:
- a listing that failed after the client's retries (RetryableApiError): wait, list again;
- a page that cannot be read (UnreadablePageError): list it again with half as many items; a
  page of one item that cannot be read: dead-letter the item (`unreadable_result`) and pass it;
- a result larger than its topic accepts: dead-letter it (`result_too_large`) instead;
- an abortable Kafka error: the transaction is aborted, its pages are listed again;
- a fatal producer error, or a transaction that could not end (a commit or abort timing out):
  raised (`PollerLoop` claims the transactional id with a new producer and re-reads the state);
- fencing (a newer poller claimed the id), from any transaction or keepalive: raised
  (`PollerLoop` steps down to standby);
- a key the API refuses (401/403) after start-up: readiness 503, one line when the refusal
  begins and one when it ends (`KeyAvailability`), listed again after the idle interval.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import replace
from datetime import UTC, datetime

from connector.clock import Clock
from connector.config import PollerSettings
from connector.contract.leadership import keepalive_interval
from connector.errors import (
    AuthenticationError,
    FatalApiError,
    PageAbortedError,
    ProducerFailedError,
    PublishError,
    RecordsTooLargeError,
    RetryableApiError,
    UnreadablePageError,
    ValidationFailedError,
)
from connector.lifecycle import Heartbeat
from connector.metrics import Metrics
from connector.poller.commits import Commits, Leadership
from connector.poller.keepalive import KeepalivesWhileListing
from connector.poller.late_window import WindowClock
from connector.poller.limits import RecordLimits
from connector.poller.listing import PageListing
from connector.poller.page_records import PageRecords
from connector.poller.publishing import PagePublishing
from connector.poller.scan import (
    Scan,
    late_scan,
    late_scan_is_empty,
    main_scan,
    next_request,
    plan_unreadable,
)
from connector.poller.status import PollerStatus
from connector.poller.takeover import RETRY_PAUSE_SECONDS, TakeOver
from connector.poller.unreadable import single_entry
from connector.toloka.availability import KeyAvailability
from connector.toloka.models import ItemPage

log = logging.getLogger(__name__)

UNREADABLE_ATTEMPTS = 3
"""Times an item must fail to read alone before it is dead-lettered (a garbled answer may be a
passing fault of a proxy)."""


class Leading:
    """Leads until `stop`; ProducerFencedError / ProducerFailedError end the leadership."""

    def __init__(
        self,
        settings: PollerSettings,
        *,
        instance_id: str,
        listing: PageListing,
        publishing: PagePublishing,
        records: PageRecords,
        limits: RecordLimits,
        commits: Commits,
        takeover: TakeOver,
        window: WindowClock,
        clock: Clock,
        metrics: Metrics,
        heartbeat: Heartbeat,
        status: PollerStatus,
        key: KeyAvailability,
    ) -> None:
        self._settings = settings
        self._instance_id = instance_id
        self._listing = listing
        self._publishing = publishing
        self._pages = listing.sizes
        self._records = records
        self._limits = limits
        self._commits = commits
        self._takeover = takeover
        self._window = window
        self._clock = clock
        self._metrics = metrics
        self._heartbeat = heartbeat
        self._status = status
        self._key = key
        self._keepalive_every = keepalive_interval(settings.leader_timeout_seconds)
        self._unreadable_strikes: dict[str, int] = {}

    def run(self, lead: Leadership, stop: threading.Event) -> None:
        def due_in() -> float:
            return lead.last_write + self._keepalive_every - self._clock.monotonic()

        with KeepalivesWhileListing(
            lambda: self._commits.keepalive_while_listing(lead), due_in, RETRY_PAUSE_SECONDS
        ) as keepalives:
            try:
                self._lead(lead, keepalives, stop)
            finally:
                self._listing.drop()
                if lead.beside is not None:
                    lead.beside.cancel()

    def _lead(
        self, lead: Leadership, keepalives: KeepalivesWhileListing, stop: threading.Event
    ) -> None:
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
                level = logging.DEBUG if self._status.listing_failure else logging.WARNING
                log.log(level, "listing failed, trying again: %s", exc)
                self._status.listing_failure = str(exc)
                self._pause(lead, stop, self._settings.poll_interval_seconds)
                continue
            except AuthenticationError as exc:
                # A key rotated or revoked while running: a restart would not bring it back,
                # and start-up already proved the key was right once. Wait, and say so.
                self._key.refused(exc)
                self._status.listing_failure = str(exc)
                self._pause(lead, stop, self._settings.idle_poll_interval_seconds)
                continue
            except FatalApiError as exc:
                # An answer that cannot be used (a malformed body, a proxy's 404, an after_id the
                # API forgot): exiting would only restart into the same answer, a crash loop.
                log.warning("listing answered unusably, trying again later: %s", exc)
                self._status.listing_failure = str(exc)
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
            scan = late_scan(self._window.time(), ceiling=lead.state.cursor.finished_at)
            if caught_up or late_scan_is_empty(lead.state, scan):
                lead.scan = scan
            else:  # a backlog: the main scan goes on meanwhile (`lookback`)
                lead.beside = self._listing.beside(lead.state, scan)
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
        return main_scan(self._window.time(), from_floor=rejected)

    def _poll_page(self, lead: Leadership, keepalives: KeepalivesWhileListing) -> bool:
        """List one page and commit what it changes (`publishing`); True when the scan is
        caught up."""
        started = self._clock.monotonic()
        # An empty look-back scan (nothing between the horizon and the cursor) lists nothing.
        empty = late_scan_is_empty(lead.state, lead.scan)
        page, prepared = (ItemPage(), None) if empty else self._listing.page(
            next_request(lead.state, lead.scan), keepalives
        )  # fmt: skip
        caught_up = self._publishing.scan_page(lead, page, prepared, listed=not empty)
        self._metrics.poll_duration.observe(self._clock.monotonic() - started)
        return caught_up

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
        plan = self._publishing.look_back_page(lead, handed.scan, handed.page)
        if plan.caught_up:
            lead.last_late_scan = self._clock.monotonic()
        else:
            lead.beside = self._listing.beside(lead.state, plan.next_scan)

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
            tracked_until=datetime.fromtimestamp(self._window.time(), UTC),
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
