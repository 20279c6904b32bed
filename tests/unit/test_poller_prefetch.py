"""The poller lists the next page while the current page's transaction commits, and a page so
listed ahead is used only for the request it was made for (fakes at the poller's seams)."""

from __future__ import annotations

import threading
from collections.abc import Mapping

from connector.poller.prefetch import PagePrefetch, PrefetchKey
from connector.toloka.models import ItemPage
from testkit.clocks import FakeClock
from testkit.waiting import wait_for
from tests.unit.poller_fakes import T0, FakeApi, FakeProducer, finished_item
from tests.unit.test_poller_loop import Harness, abortable


class RecordingApi(FakeApi):
    """Records the `after_id` of every listing, in the order they arrive (from any thread)."""

    def __init__(self, clock: FakeClock) -> None:
        super().__init__(clock)
        self.lock = threading.Lock()
        self.after_ids: list[str | None] = []

    def list_items(
        self,
        *,
        sort: str = "finished",
        after_id: str | None = None,
        limit: int = 100,
        filters: Mapping[str, str] | None = None,
    ) -> ItemPage:
        with self.lock:
            self.after_ids.append(after_id)
        return super().list_items(sort=sort, after_id=after_id, limit=limit, filters=filters)

    def listed(self, after_id: str) -> bool:
        with self.lock:
            return after_id in self.after_ids


def harness_with_items(count: int) -> tuple[Harness, RecordingApi]:
    clock = FakeClock()
    api = RecordingApi(clock)
    # A transaction per page: the next page is listed while each one commits.
    h = Harness(clock=clock, api=api, page_size=2, transaction_span_seconds=0)
    for n in range(count):
        h.api.add(finished_item(f"i{n}", T0 - 10 + n))
    return h, api


def test_the_next_page_is_listed_while_the_page_commits_and_used_once() -> None:
    h, api = harness_with_items(6)
    seen_during_commit: list[str] = []

    def commit_waits_for_the_next_listing(producer: FakeProducer) -> None:
        original = producer.commit_transaction

        def commit(timeout: float) -> None:
            with producer.kafka.lock:
                published = [r for r in producer.kafka.records if r.producer == producer.number
                             and r.status == "open" and r.topic == "out"]  # fmt: skip
            if published:  # a page: its last item is where the next listing starts
                last = dict(published[-1].headers or [])["toloka-item-id"]
                assert isinstance(last, bytes)
                after = last.decode()
                if after != "i5":  # the last page is caught up: nothing follows it
                    wait_for(lambda: api.listed(after), f"the listing after {after}", 10)
                    seen_during_commit.append(after)
            original(timeout)

        producer.commit_transaction = commit  # type: ignore[method-assign]

    h.run_until(20, h.loop(configure=commit_waits_for_the_next_listing))
    assert seen_during_commit == ["i1", "i3"]
    assert h.published() == [f"i{n}" for n in range(6)]
    # Each page was listed once: the page listed ahead was the one used.
    assert api.after_ids[:3] == [None, "i1", "i3"]


def test_a_page_listed_ahead_is_dropped_when_the_transaction_aborts() -> None:
    h, api = harness_with_items(4)

    def abort_the_first_page(producer: FakeProducer) -> None:
        original = producer.commit_transaction
        commits = 0

        def commit(timeout: float) -> None:
            nonlocal commits
            commits += 1
            if commits == 2:  # the first page (the first commit is the take-over keepalive)
                wait_for(lambda: api.listed("i1"), "the listing after the first page", 10)
                raise abortable()
            original(timeout)

        producer.commit_transaction = commit  # type: ignore[method-assign]

    h.run_until(20, h.loop(configure=abort_the_first_page))
    assert h.published() == ["i0", "i1", "i2", "i3"]
    # The first page again (not the page listed ahead), then the second listed ahead anew.
    assert api.after_ids[:4] == [None, "i1", None, "i1"]


def test_a_page_listed_ahead_with_fewer_items_serves_a_grown_page_size_not_a_shrunk_one() -> None:
    """The page size grows back after readable pages while the next page is listed ahead with
    the old size: that page is the first part of the larger one and is used (before, it was
    dropped and listed again). After a shrink (larger pages were unreadable) it is not."""
    key = PrefetchKey(after_id="i1", filters=(("status", "COMPLETED"),), limit=50)
    prefetch: PagePrefetch[ItemPage] = PagePrefetch()
    listed = ItemPage.from_api({"content": [finished_item("i2", T0)], "has_more": True})
    prefetch.start(key, lambda: listed)
    assert prefetch.take(PrefetchKey("i1", key.filters, limit=100)) is listed
    prefetch.start(key, lambda: listed)
    assert prefetch.take(PrefetchKey("i1", key.filters, limit=25)) is None, "shrunk: listed anew"
    for other in (PrefetchKey("i2", key.filters, 50), PrefetchKey("i1", (), 50)):
        prefetch.start(key, lambda: listed)
        assert prefetch.take(other) is None, "another request"
