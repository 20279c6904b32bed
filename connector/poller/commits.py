"""The leader's transactions: a page's results, dead letters and cursor (or several pages', one
after the other, while a backlog drains: `open`, `add`, `commit_open`); a keepalive (the cursor
written again, the leader's sign of life on the state topic); the release (a cursor without
holder, on a clean stop). Each success moves the metrics on; each failure is told to readiness
(`PollerStatus.kafka_problem`) and raised.

The leader's state shows what committed, and while pages are added to an open transaction, what
they change too: the next page is planned against the state the earlier ones leave. When that
transaction does not commit, the state and the scan go back to where they stood before its first
page (its records are aborted with it, or die with the producer), so the cursor never runs ahead
of published results."""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field

from connector.clock import Clock
from connector.contract.cursor import Cursor, Segment
from connector.errors import PageAbortedError, PublishError
from connector.lifecycle import Heartbeat
from connector.metrics import Metrics
from connector.metrics.labels import result_status_label
from connector.outstanding import OutstandingItems
from connector.poller.late_window import PollerState
from connector.poller.lookback import BackgroundLookBack
from connector.poller.page_records import PageOutcome
from connector.poller.publisher import TransactionalPublisher
from connector.poller.scan import PagePlan, Scan, keepalive_change
from connector.poller.status import PollerStatus
from connector.toloka.models import Item

log = logging.getLogger(__name__)


@dataclass
class Leadership:
    """What exists only while this instance leads."""

    publisher: TransactionalPublisher
    state: PollerState
    scan: Scan
    last_write: float
    """Monotonic time of the last committed cursor record (a keepalive falls due from it)."""
    last_late_scan: float
    """Monotonic end of the last look-back scan: the main scan gets at least an interval
    between two of them, however long one takes (a burst in the window is a long one)."""
    flowing: bool = False
    """The current main scan published something."""
    rejected_after_id: str | None = None
    """A cursor item the API said it does not know: the main scan lists from the cursor's
    finished_at instead, until the cursor moves to another item."""
    beside: BackgroundLookBack | None = None
    """A look-back scan listing beside the main scan (while the main scan has a backlog)."""


@dataclass
class OpenTransaction:
    """Pages added to a transaction that has not committed yet."""

    scan: Scan
    """The scan before its first page (and the state's cursor and segments, below)."""
    cursor: Cursor
    segments: dict[int, Segment]
    opened_at: float
    pages: list[tuple[PagePlan, PageOutcome]] = field(default_factory=list)
    records: int = 0
    value_bytes: int = 0


class Commits:
    """Commits the leader's transactions. `commit`, `write_keepalive` and `release` run in the
    loop's thread and say on its heartbeat that it waits for Kafka; `keepalive_while_listing`
    runs in the keepalive thread (`connector.poller.keepalive`) and leaves the loop's heartbeat
    alone: the loop is waiting on the API then, and says so itself."""

    def __init__(
        self,
        *,
        instance_id: str,
        clock: Clock,
        metrics: Metrics,
        heartbeat: Heartbeat,
        status: PollerStatus,
        outstanding: OutstandingItems | None,
    ) -> None:
        self._instance_id = instance_id
        self._clock = clock
        self._metrics = metrics
        self._heartbeat = heartbeat
        self._status = status
        self._outstanding = outstanding

    def commit(self, lead: Leadership, plan: PagePlan, outcome: PageOutcome) -> None:
        with self._heartbeat.waiting_on("Kafka (transaction)"):
            self._commit(lead, plan, outcome)

    def write_keepalive(self, lead: Leadership) -> None:
        """A keepalive from the loop; an aborted one is logged (the next one is due soon)."""
        try:
            self.commit(lead, self._keepalive_plan(lead, self._instance_id), PageOutcome())
        except PageAbortedError as exc:
            log.warning("keepalive transaction aborted: %s", exc)

    def keepalive_while_listing(self, lead: Leadership) -> None:
        """A keepalive from the keepalive thread; raises what the transaction raised."""
        self._commit(lead, self._keepalive_plan(lead, self._instance_id), PageOutcome(),
                     loop=False)  # fmt: skip

    def release(self, lead: Leadership, app_project_id: str) -> None:
        """On a clean stop, a cursor without holder: a standby takes over at once instead of
        after the leader timeout, and `reset-cursor` needs no --force."""
        try:
            self.commit(lead, self._keepalive_plan(lead, None), PageOutcome())
        except PublishError as exc:
            log.warning("could not hand leadership over (a standby waits it out): %s", exc)
            return
        log.info("poller of app project %s: leadership released", app_project_id)

    def _keepalive_plan(self, lead: Leadership, holder: str | None) -> PagePlan:
        change = keepalive_change(lead.state, now=self._clock.time(), holder=holder)
        return PagePlan([], change, False, lead.scan)

    def open(self, lead: Leadership) -> OpenTransaction:
        """Open a transaction for pages to be added to (PublishError when it did not open)."""
        try:
            lead.publisher.begin()
        except PublishError as exc:
            self._failed(exc)
            raise
        state = lead.state
        return OpenTransaction(
            lead.scan, state.cursor, dict(state.segments), self._clock.monotonic()
        )

    def add(
        self, lead: Leadership, txn: OpenTransaction, plan: PagePlan, outcome: PageOutcome
    ) -> None:
        """A page into the open transaction; the state shows it at once (PublishError when it
        could not be produced: the transaction is aborted, the state put back)."""
        assert plan.change is not None
        try:
            lead.publisher.add(outcome.results, plan.change.records(), outcome.dead_letters)
        except PublishError as exc:
            self.abandon(lead, txn)
            self._failed(exc)
            raise
        lead.state.apply(plan.change)
        txn.pages.append((plan, outcome))
        txn.records += len(outcome.results) + len(outcome.dead_letters)
        txn.value_bytes += outcome.result_bytes

    @contextmanager
    def transaction(self, lead: Leadership, *, loop: bool = True) -> Iterator[OpenTransaction]:
        """A transaction open for the block's pages (`add`), committed when the block ends.
        Every transaction ends here, one page's or a span's, so each ending is counted once
        (`transactions{outcome}`): a Kafka failure is counted and abandoned where it came; any
        other is raised after the transaction is aborted (`abort`). `loop`: made by the loop's
        thread, whose heartbeat waits on Kafka during the commit (not the keepalive thread's:
        it must not beat the loop's heartbeat)."""
        txn = self.open(lead)
        try:
            yield txn
            if loop:
                self.commit_open(lead, txn)
            else:
                self._commit_open(lead, txn)
        except PublishError:
            raise  # (abandoned and counted where it failed)
        except BaseException as failure:
            self.abort(lead, txn, failure)
            raise

    def commit_open(self, lead: Leadership, txn: OpenTransaction) -> None:
        with self._heartbeat.waiting_on("Kafka (transaction)"):
            self._commit_open(lead, txn)

    def _commit_open(self, lead: Leadership, txn: OpenTransaction) -> None:
        try:
            lead.publisher.commit()
        except PublishError as exc:
            self.abandon(lead, txn)
            self._failed(exc)
            raise
        self._committed(lead, txn.pages)

    def abort(self, lead: Leadership, txn: OpenTransaction, failure: BaseException) -> None:
        """`failure` (not Kafka's) came while `txn` was open: the state and the scan as before
        it, and the transaction aborted (`TransactionalPublisher.abort_after`); the caller
        raises `failure`. A kill (a BaseException, not an Exception) aborts nothing."""
        self.abandon(lead, txn)
        if isinstance(failure, Exception) and lead.publisher.abort_after(failure):
            self._metrics.transactions.labels("aborted").inc()

    def abandon(self, lead: Leadership, txn: OpenTransaction) -> None:
        """The open transaction will not commit: the state and the scan as before it."""
        lead.state.reset(txn.cursor, txn.segments)
        lead.scan = txn.scan

    def _commit(
        self, lead: Leadership, plan: PagePlan, outcome: PageOutcome, *, loop: bool = True
    ) -> None:
        with self.transaction(lead, loop=loop) as txn:
            self.add(lead, txn, plan, outcome)

    def _failed(self, exc: PublishError) -> None:
        self._metrics.transactions.labels("aborted").inc()
        self._status.kafka_problem = f"transaction failed: {exc}"

    def _committed(self, lead: Leadership, pages: Sequence[tuple[PagePlan, PageOutcome]]) -> None:
        self._status.kafka_problem = None
        lead.last_write = self._status.last_commit_at = self._clock.monotonic()
        self._metrics.transactions.labels("committed").inc()
        for plan, outcome in pages:
            if plan.next_scan.late:  # (a look-back scan beside the main scan too)
                self._metrics.late_items.inc(len(plan.publish))
            else:
                lead.flowing = lead.flowing or bool(plan.publish)
            for reason in outcome.reasons:
                self._metrics.dead_letters.labels(reason).inc()
            self._observe_published(plan.publish, outcome.published)
        self.observe_state(lead.state)

    def _observe_published(self, passed: Sequence[Item], published: Sequence[Item]) -> None:
        """`passed`: every item the transaction moved past; `published`: those with a result
        (the others were dead-lettered)."""
        now = self._clock.time()
        # One increment per status, not per item: a labelled inc() costs more than the count
        # (and the label is looked up per status, not per item).
        by_label: Counter[str] = Counter()
        for status, count in Counter(item.status for item in published).items():
            by_label[result_status_label(status)] += count
        for label, count in by_label.items():
            self._metrics.results_published.labels(label).inc(count)
        observe_processing = self._metrics.item_processing_time.observe
        for item in published:
            if item.created_at is not None and item.finished_at is not None:
                observe_processing((item.finished_at - item.created_at).total_seconds())
        if self._outstanding is not None:
            for item in passed:
                uploaded_at = self._outstanding.take(item.id)
                if uploaded_at is not None:
                    self._metrics.end_to_end_time.observe(now - uploaded_at)
            self._metrics.items_outstanding.set(len(self._outstanding))

    def observe_state(self, state: PollerState) -> None:
        self._metrics.cursor_age.set(state.cursor.age_seconds(self._clock.time()))
        self._metrics.late_window_tracked_items.set(len(state.seen))
