"""The poller's loop: wait as a standby until the leadership group grants this pipeline and the
leader is gone, then lead (`leading`) until fenced, revoked or told to stop. Taking over, and its
back-off when Kafka says no: `takeover`.

How a leadership ends:
- fencing (a newer poller claimed the transactional id), from any transaction or keepalive: step
  down to standby, never exit;
- a fatal producer error, or a transaction that could not end (a commit or abort timing out):
  a new producer claims the transactional id and re-reads the state (a commit whose outcome was
  unknown is then known);
- an unreadable state record: raised, the process exits.
"""

from __future__ import annotations

import logging
import threading
from contextlib import nullcontext

from connector.clock import Clock
from connector.config import PollerSettings
from connector.errors import ProducerFailedError, ProducerFencedError
from connector.kafka.transactions import ProducerFactory
from connector.lifecycle import Heartbeat
from connector.metrics import Metrics
from connector.outstanding import OutstandingItems
from connector.poller.commits import Commits
from connector.poller.group import Lease
from connector.poller.late_window import WindowClock
from connector.poller.leadership import LeaderWatch, Standing
from connector.poller.leading import Leading
from connector.poller.limits import RecordLimits
from connector.poller.listing import ItemSource, PageListing
from connector.poller.page_records import PageRecords
from connector.poller.publishing import PagePublishing
from connector.poller.state import StateStore
from connector.poller.status import PollerStatus
from connector.poller.takeover import TakeOver
from connector.toloka.availability import KeyAvailability
from connector.toloka.page_size import PageSizer

log = logging.getLogger(__name__)

_FEED_POLL_SECONDS = 0.5


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
        self._store = store
        self._clock = clock
        self._metrics = metrics
        self._heartbeat = heartbeat
        limits = limits or RecordLimits({}, (), lambda _topics: {})
        pages = PageSizer(settings.page_size, response_limit_bytes)
        metrics.poller_page_limit.set(pages.size)
        self._window = WindowClock(clock)
        self.status = PollerStatus(clock.monotonic(), clock.monotonic())
        self.key = KeyAvailability(clock)
        records = PageRecords(settings, app_project_id, limits)
        self._commits = Commits(
            instance_id=instance_id, clock=clock, metrics=metrics, heartbeat=heartbeat,
            status=self.status, outstanding=outstanding,
        )  # fmt: skip
        self._takeover = TakeOver(
            settings, app_project_id, instance_id=instance_id,
            producer_factory=producer_factory, store=store, limits=limits,
            commits=self._commits, clock=clock, metrics=metrics, heartbeat=heartbeat,
            status=self.status,
        )  # fmt: skip
        listing = PageListing(source, records, pages, heartbeat)
        publishing = PagePublishing(
            settings, instance_id=instance_id, listing=listing, records=records,
            commits=self._commits, clock=clock, metrics=metrics, status=self.status, key=self.key,
        )  # fmt: skip
        self._leading = Leading(
            settings, instance_id=instance_id, listing=listing, publishing=publishing,
            records=records, limits=limits, commits=self._commits, takeover=self._takeover,
            window=self._window, clock=clock, metrics=metrics, heartbeat=heartbeat,
            status=self.status, key=self.key,
        )  # fmt: skip

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
        leadership = self._takeover.attempt(self._window.time())
        if leadership is None:
            self._takeover.pause_after_failure(term)
            return True
        self._set_standing(Standing.LEADER)
        try:
            self._leading.run(leadership, term)
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
