"""Listed pages into transactions: a page is planned against the leader's state (`scan`) and
what it changes is committed (`commits`), alone, or, while the main scan drains a backlog on a
broker whose transactions are atomic, together with the pages listed ahead after it.

A transaction spans pages (`TransactionSpan`) so that its flush and commit are paid once for
several. A page joins only when it is listed within the span's time left; the span ends at the
end of the backlog, after CONNECTOR_TRANSACTION_SPAN_SECONDS (at most a quarter of the
transaction timeout; 0, the default, is a transaction per page), `SPAN_RECORDS` or
`SPAN_VALUE_BYTES`, so a result waits at most that long longer than alone, and no listing is made
with keepalives while a transaction is open (the next page comes from the thread that listed it
ahead). Exactly once is unchanged: every page writes its cursor in the same transaction as its
results, the next page is planned against the state the earlier ones leave, and a transaction
that does not commit puts the state and the scan back before its first page
(`Commits.abandon`): every page of it is listed again (a failure other than Kafka's between its
pages aborts it first: `Commits.abort`). Its pages are counted (`poll_page_items`) once it
commits. Open: with spans, a backlog's cursor
records carried up to ~100 segment refs (4.5 kB) for longer than with a transaction per page
(`test_poller_hardening.py`'s backlog test fails with a span of 0.5 s: the horizon passed the
backlog's items only after half of its cursor records).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from connector.clock import Clock
from connector.config import PollerSettings
from connector.metrics import Metrics
from connector.poller.commits import Commits, Leadership, OpenTransaction
from connector.poller.listing import PageListing
from connector.poller.page_records import PageRecords, PreparedRecords
from connector.poller.scan import PagePlan, Scan, next_request, plan_page, request_after
from connector.poller.status import PollerStatus
from connector.toloka.availability import KeyAvailability
from connector.toloka.models import ItemPage

log = logging.getLogger(__name__)

SPAN_RECORDS = 10_000
SPAN_VALUE_BYTES = 16 * 1024 * 1024


@dataclass(frozen=True)
class TransactionSpan:
    """How far one transaction may span pages while a backlog drains."""

    seconds: float
    records: int = SPAN_RECORDS
    value_bytes: int = SPAN_VALUE_BYTES

    def time_left(self, txn: OpenTransaction, now: float) -> float:
        return txn.opened_at + self.seconds - now

    def has_room(self, txn: OpenTransaction, now: float) -> bool:
        return (
            self.time_left(txn, now) > 0
            and txn.records < self.records
            and txn.value_bytes < self.value_bytes
        )


class PagePublishing:
    """Plans and commits the leader's listed pages; used from the loop's thread."""

    def __init__(
        self,
        settings: PollerSettings,
        *,
        instance_id: str,
        listing: PageListing,
        records: PageRecords,
        commits: Commits,
        clock: Clock,
        metrics: Metrics,
        status: PollerStatus,
        key: KeyAvailability,
    ) -> None:
        self._settings = settings
        self._instance_id = instance_id
        self._listing = listing
        self._records = records
        self._commits = commits
        self._clock = clock
        self._metrics = metrics
        self._status = status
        self._key = key
        self._span = TransactionSpan(
            min(settings.transaction_span_seconds, settings.transaction_timeout_seconds / 4)
        )

    def scan_page(
        self, lead: Leadership, page: ItemPage, prepared: PreparedRecords | None, *, listed: bool
    ) -> bool:
        """Commit what the scan's page changes, and list the next one meanwhile (with the pages
        listed after it, in one transaction, while a backlog drains); the scan moves on. True
        when it is caught up. `listed`: False for a page that was not listed (an empty scan)."""
        plan = self._planned(lead, lead.scan, page)
        backlog = listed and plan.change is not None and not plan.caught_up
        if backlog:  # before the records are built: as early as it is known
            self._listing.list_ahead(request_after(lead.state, plan))
        if backlog and self._spans_pages(lead):
            return self._publish_span(lead, plan, page, prepared)
        self._publish(lead, plan, page, listed=listed, prepared=prepared)
        lead.scan = plan.next_scan
        return plan.caught_up

    def look_back_page(self, lead: Leadership, scan: Scan, page: ItemPage) -> PagePlan:
        """Commit what a page a look-back scan listed beside the main scan changes."""
        plan = self._planned(lead, scan, page)
        self._publish(lead, plan, page, listed=True)
        return plan

    def _spans_pages(self, lead: Leadership) -> bool:
        """Pages of the main scan may share a transaction (on a broker whose transactions are
        atomic: elsewhere each page's results are flushed before its cursor)."""
        atomic = not lead.publisher.flushes_before_cursor
        return self._span.seconds > 0 and atomic and not lead.scan.late

    def _publish_span(
        self, lead: Leadership, plan: PagePlan, page: ItemPage, prepared: PreparedRecords | None
    ) -> bool:
        """Publish `plan` and the pages listed ahead after it in one transaction, while the
        span has room; True when the scan caught up."""
        finished: list[int] = []  # per page: counted once the transaction commits
        with self._commits.transaction(lead) as txn:
            while True:
                self._publish(lead, plan, page, listed=True, prepared=prepared, into=txn)
                finished.append(_finished(page))
                lead.scan = plan.next_scan
                if plan.caught_up or not self._span.has_room(txn, self._clock.monotonic()):
                    break
                time_left = self._span.time_left(txn, self._clock.monotonic())
                listed = self._listing.listed_ahead(next_request(lead.state, lead.scan), time_left)
                if listed is None:
                    break
                page, prepared = listed
                plan = self._planned(lead, lead.scan, page)
                if plan.change is not None and not plan.caught_up:
                    self._listing.list_ahead(request_after(lead.state, plan))
        for count in finished:
            self._metrics.poll_page_size.observe(count)
        return plan.caught_up

    def _planned(self, lead: Leadership, scan: Scan, page: ItemPage) -> PagePlan:
        """A page listed: the listing is reached, and what the page changes."""
        self._status.last_listing_at = self._clock.monotonic()
        self._status.listing_failure = None
        self._key.reached()
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
        into: OpenTransaction | None = None,
    ) -> None:
        """Commit what a page's `plan` changes (nothing when it changes nothing), or add it to
        the transaction `into`; the page is counted once committed."""
        outcome = self._records.outcome(plan.publish, prepared=prepared)
        if plan.change is not None:
            if into is None:
                self._commits.commit(lead, plan, outcome)
            else:
                self._commits.add(lead, into, plan, outcome)
        if plan.out_of_range:
            log.warning(
                "the listing returned %d items outside what was asked for (behind the cursor or "
                "its floor): skipped, not published again", plan.out_of_range,
            )  # fmt: skip
        pages = self._listing.sizes
        if listed:
            pages.readable(len(outcome.results), outcome.result_bytes)
            self._metrics.poller_page_limit.set(pages.size)
        if into is None:  # (a span's pages are counted once it commits)
            self._metrics.poll_page_size.observe(_finished(page))


def _finished(page: ItemPage) -> int:
    return sum(1 for item in page.content if item.finished_at is not None)
