"""Look-back scans listed beside the main scan while it has a backlog (`connector.poller.lookback`):
the main scan goes on meanwhile, late items are still published exactly once, and a listing the
thread could not make is made again in the loop's turn."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Mapping
from contextlib import suppress
from datetime import UTC, datetime

from connector.contract.cursor import initial_cursor
from connector.errors import RetryableApiError
from connector.metrics import Metrics
from connector.poller.late_window import PollerState
from connector.poller.lookback import BackgroundLookBack
from connector.poller.scan import ListingRequest, late_scan
from connector.toloka.models import Item, ItemPage
from testkit.clocks import FakeClock
from testkit.waiting import WaitTimeoutError, wait_for
from tests.unit.poller_fakes import T0, FakeApi, FakeKafka, finished_item
from tests.unit.test_poller_liveness_and_window import commits_take, cursor_records, loop_for


def is_look_back(filters: Mapping[str, str] | None) -> bool:
    return "finished_lte" in (filters or {})


class BacklogApi(FakeApi):
    """A backlog that outlasts the test (one item finishing every 0.8 s, published one per page
    in transactions of 1 s), and one item that shows up 20 s after it finished, behind the
    cursor. The first look-back listing returns only once the main scan committed a page
    after it began (or after 10 s of real time: `main_scan_went_on` says which). The clock moves
    only with the main scan's transactions, which a thread of its own may never catch up with:
    from 15 s on, a main-scan listing waits (10 s of real time at most) until a look-back listing
    began, and from 40 s on until one listed the late item."""

    def __init__(self, clock: FakeClock, kafka: FakeKafka) -> None:
        super().__init__(clock)
        self.kafka = kafka
        self.main_scan_went_on: bool | None = None
        self.look_back_began = threading.Event()
        self.late_listed = threading.Event()
        for n in range(100):
            finished = T0 + n * 0.8
            self.add(finished_item(f"i{n:03d}", finished), visible_at=finished)
        self.add(finished_item("late", T0 + 2.1), visible_at=T0 + 22)

    def list_items(
        self,
        *,
        sort: str = "finished",
        after_id: str | None = None,
        limit: int = 100,
        filters: Mapping[str, str] | None = None,
    ) -> ItemPage:
        if is_look_back(filters):
            first = not self.look_back_began.is_set()
            self.look_back_began.set()
            if first:
                self.first_look_back()
            page = super().list_items(sort=sort, after_id=after_id, limit=limit, filters=filters)
            if any(item.id == "late" for item in page.content):
                self.late_listed.set()
            return page
        for since, event in ((T0 + 15, self.look_back_began), (T0 + 40, self.late_listed)):
            if self.clock.time() >= since:
                with suppress(WaitTimeoutError):
                    wait_for(event.is_set, "a look-back listing", timeout=10)
        return super().list_items(sort=sort, after_id=after_id, limit=limit, filters=filters)

    def first_look_back(self) -> None:
        before = cursor_records(self.kafka)
        try:
            wait_for(lambda: cursor_records(self.kafka) > before + 1, timeout=10)
        except WaitTimeoutError:
            self.main_scan_went_on = False
        else:
            self.main_scan_went_on = True


def run_backlog(api_type: type[BacklogApi]) -> tuple[BacklogApi, FakeKafka, Metrics]:
    """A leader paging one item at a time through the backlog for a minute of fake time, each
    transaction taking a second, with a look-back scan due every 5 s."""
    clock = FakeClock(stop_at=T0 + 60)
    kafka = FakeKafka()
    api = api_type(clock, kafka)
    metrics = Metrics()
    loop = loop_for(
        api, kafka, clock, metrics, commits_take(clock, 1.0), page_size=1,
        late_window_seconds=60, late_scan_interval_seconds=5, poll_interval_seconds=0.1,
        transaction_span_seconds=0,  # a transaction per item, each taking a second
    )  # fmt: skip
    loop.run(clock.stop)
    return api, kafka, metrics


def test_a_look_back_scan_during_a_backlog_does_not_stop_the_main_scan() -> None:
    api, kafka, metrics = run_backlog(BacklogApi)
    wait_for(lambda: api.main_scan_went_on is not None, "the first look-back listing", timeout=20)
    assert api.main_scan_went_on is True, "the main scan waited for the look-back listing"
    published = Counter(kafka.published_ids())
    assert published["late"] == 1
    assert max(published.values()) == 1
    assert "i099" not in published, "the backlog is not through yet"
    assert metrics.sample("toloka_connector_late_items_total") == 1


class FailingLookBack(BacklogApi):
    """The backlog, where the first look-back listing fails (after the client's retries)."""

    def __init__(self, clock: FakeClock, kafka: FakeKafka) -> None:
        super().__init__(clock, kafka)
        self.failed = False

    def first_look_back(self) -> None:
        self.failed = True
        raise RetryableApiError("503 from the look-back listing")


def test_a_look_back_listing_that_fails_beside_the_main_scan_is_made_again() -> None:
    api, kafka, metrics = run_backlog(FailingLookBack)
    assert isinstance(api, FailingLookBack)
    assert api.failed
    published = Counter(kafka.published_ids())
    assert published["late"] == 1
    assert max(published.values()) == 1
    assert metrics.sample("toloka_connector_late_items_total") == 1


# --- BackgroundLookBack alone -------------------------------------------------------------------


def item(item_id: str, seconds: float) -> Item:
    return Item(id=item_id, finished_at=datetime.fromtimestamp(seconds, UTC))


def state_with(published: list[str]) -> PollerState:
    cursor = initial_cursor("proj", "earliest", now=T0 + 100, late_window_seconds=200, holder="A")
    state = PollerState(cursor)
    state.seen.update(published)
    return state


def pages_by_after_id(pages: list[list[Item]]) -> dict[str | None, ItemPage]:
    """The listing of `pages`, keyed by the after_id that asks for each."""
    listing: dict[str | None, ItemPage] = {}
    after: str | None = None
    for number, content in enumerate(pages):
        listing[after] = ItemPage(content, has_more=number < len(pages) - 1)
        after = content[-1].id
    return listing


def test_pages_of_published_items_are_skipped_and_the_first_with_a_new_one_is_handed_over() -> None:
    pages = [
        [item("a", T0 + 1), item("b", T0 + 2)],
        [item("c", T0 + 3), item("d", T0 + 4)],
        [item("e", T0 + 5), item("new", T0 + 6)],
        [item("f", T0 + 7)],
    ]
    listing = pages_by_after_id(pages)
    requests: list[ListingRequest] = []

    def list_page(request: ListingRequest) -> ItemPage:
        requests.append(request)
        return listing[request.after_id]

    state = state_with(["a", "b", "c", "d", "e", "f"])
    scan = late_scan(T0 + 100, ceiling=datetime.fromtimestamp(T0 + 50, UTC))
    look_back = BackgroundLookBack(state, scan, list_page)
    wait_for(look_back.done, "the hand-over", timeout=10)
    handed = look_back.take()
    assert handed.page is listing["d"]
    assert handed.scan.after_id == "d"
    assert [request.after_id for request in requests] == [None, "b", "d"]


def test_the_page_that_ends_the_scan_is_handed_over_even_with_nothing_new() -> None:
    listing = pages_by_after_id([[item("a", T0 + 1)], [item("b", T0 + 2)]])
    state = state_with(["a", "b"])
    scan = late_scan(T0 + 100, ceiling=datetime.fromtimestamp(T0 + 50, UTC))
    look_back = BackgroundLookBack(state, scan, lambda request: listing[request.after_id])
    wait_for(look_back.done, "the hand-over", timeout=10)
    handed = look_back.take()
    assert handed.page is listing["a"]
    assert not handed.page.has_more


def test_a_failed_listing_is_handed_over_with_the_scan_that_made_it() -> None:
    listing = pages_by_after_id([[item("a", T0 + 1)], [item("b", T0 + 2)]])
    failure = RetryableApiError("503")

    def list_page(request: ListingRequest) -> ItemPage:
        if request.after_id == "a":
            raise failure
        return listing[request.after_id]

    state = state_with(["a", "b"])
    scan = late_scan(T0 + 100, ceiling=datetime.fromtimestamp(T0 + 50, UTC))
    look_back = BackgroundLookBack(state, scan, list_page)
    wait_for(look_back.done, "the hand-over", timeout=10)
    handed = look_back.take()
    assert handed.page is None
    assert handed.error is failure
    assert handed.scan.after_id == "a"


def test_cancel_names_the_page_the_thread_was_about_to_list() -> None:
    listing = pages_by_after_id([[item("a", T0 + 1)], [item("b", T0 + 2)], [item("c", T0 + 3)]])
    held = Counter[str]()

    def list_page(request: ListingRequest) -> ItemPage:
        if request.after_id == "b":  # in flight when cancelled
            held["b"] += 1
            wait_for(lambda: held["released"], "the release", timeout=10)
        return listing[request.after_id]

    state = state_with(["a", "b", "c"])
    scan = late_scan(T0 + 100, ceiling=datetime.fromtimestamp(T0 + 50, UTC))
    look_back = BackgroundLookBack(state, scan, list_page)
    wait_for(lambda: held["b"], "the listing after b", timeout=10)
    position = look_back.cancel()
    held["released"] += 1
    assert position.after_id == "b"
