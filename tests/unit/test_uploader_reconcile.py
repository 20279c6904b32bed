"""Exactly-once uploads, piece by piece: the commit metadata, what each commit says, matching, and
the reconciler's listing against a fake API (the whole flow runs against a real broker and the
simulator in tests/integration/test_uploader_exactly_once.py)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson
import pytest

from connector.config import load_settings
from connector.contract.upload_intents import (
    UploadIntent,
    decode_intent,
    encode_intent,
    item_identity,
)
from connector.errors import ServerError, UnreadablePageError
from connector.metrics import Metrics
from connector.toloka.models import Item, ItemPage
from connector.uploader.batcher import PendingRecord
from connector.uploader.intents import IntentLog
from connector.uploader.reconcile import CreatedItems, Reconciler
from testkit.clocks import FakeClock


@pytest.mark.parametrize("intent", [UploadIntent(None), UploadIntent(1_700_000_000.123456)])
def test_an_intent_survives_its_commit_metadata(intent: UploadIntent) -> None:
    metadata = encode_intent(intent)
    assert len(metadata) < 100
    assert decode_intent(metadata) == intent


@pytest.mark.parametrize(
    "metadata",
    [None, "", "not json", "[]", '{"since": 5}', '{"format": "toloka-connector/upload-intent", '
     '"v": 2, "since": 5}', '{"format": "toloka-connector/upload-intent", "v": 1, "since": "x"}',
     '{"format": "toloka-connector/upload-intent", "v": 1, "since": true}'],
)  # fmt: skip
def test_metadata_of_another_writer_or_version_says_nothing(metadata: str | None) -> None:
    assert decode_intent(metadata) is None


def test_identity_is_the_key_where_the_input_has_one_else_the_whole_input() -> None:
    assert item_identity({"id": "7", "text": "a"}, "id") == item_identity({"id": "7"}, "id")
    assert item_identity({"id": 7}, "id") != item_identity({"id": "7"}, "id")
    assert item_identity({"text": "a", "n": 1}, "id") == item_identity({"n": 1, "text": "a"}, "id")
    assert item_identity({"text": "a"}, "id") != item_identity({"text": "b"}, "id")


def test_listed_items_are_claimed_once_each_so_identical_inputs_stay_apart() -> None:
    items = CreatedItems([("a", "1"), ("a", "2"), ("b", "3"), ("a", "4")], exclude={"4"})
    assert [items.claim("a"), items.claim("a"), items.claim("a")] == ["1", "2", None]
    assert items.claim("b") == "3"
    assert items.claim("c") is None


def test_each_commit_says_since_when_the_oldest_unsettled_request_was_sent() -> None:
    clock = FakeClock()
    log = IntentLog(clock)
    log.assign([0])
    assert decode_intent(log.metadata(0, 0, final=False)) == UploadIntent(clock.time())
    assert decode_intent(log.metadata(0, 0, final=True)) == UploadIntent(None)
    log.sent({0: 9}, at=100.0)  # offsets 0..9
    log.sent({0: 19}, at=105.0)  # offsets 10..19
    assert decode_intent(log.metadata(0, 5, final=True)) == UploadIntent(100.0)
    assert decode_intent(log.metadata(0, 10, final=True)) == UploadIntent(105.0)
    assert decode_intent(log.metadata(0, 20, final=False)) == UploadIntent(clock.time())
    assert decode_intent(log.metadata(0, 20, final=True)) == UploadIntent(None)


def test_an_inherited_intent_is_handed_on_until_the_commit_passes_its_end() -> None:
    log = IntentLog(FakeClock())
    log.assign([3])
    log.inherit(3, since=50.0, end_offset=40)
    log.sent({3: 10}, at=200.0)
    assert decode_intent(log.metadata(3, 20, final=True)) == UploadIntent(50.0)
    assert decode_intent(log.metadata(3, 40, final=True)) == UploadIntent(None)
    assert log.unrecorded([3, 4]) == {3, 4}
    log.recorded([3])
    assert log.unrecorded([3, 4]) == {4}


class ListingApi:
    """`list_items` over a fixed list of items, `page` at a time, failing `failures` times."""

    def __init__(self, inputs: list[dict[str, Any]], failures: int = 0) -> None:
        self.items = [
            Item.from_api(
                {"id": f"item-{n}", "input_data": data, "created_at": "2026-01-01T00:00:00"}
            )
            for n, data in enumerate(inputs)
        ]
        self.failures = failures
        self.requests: list[Mapping[str, str]] = []

    def list_items(
        self,
        *,
        sort: str = "finished",
        after_id: str | None = None,
        limit: int = 100,
        filters: Mapping[str, str] | None = None,
    ) -> ItemPage:
        assert sort == "created"
        assert filters is not None
        assert set(filters) == {"created_gte", "created_lt"}
        self.requests.append(filters)
        if self.failures:
            self.failures -= 1
            raise ServerError("down", status=503)
        start = 0 if after_id is None else int(after_id.removeprefix("item-")) + 1
        page = self.items[start : start + 2]
        return ItemPage(content=page, has_more=start + 2 < len(self.items))


def records(*inputs: dict[str, Any]) -> list[PendingRecord]:
    return [PendingRecord(None, 0, n, 1, orjson.dumps(data)) for n, data in enumerate(inputs)]


def reconciler(api: ListingApi, **settings: str) -> tuple[Reconciler, Metrics, FakeClock]:
    environ = {"TOLOKA_API_KEY": "k", "TOLOKA_APP_PROJECT_ID": "p",
               **{f"CONNECTOR_{k.upper()}": v for k, v in settings.items()}}  # fmt: skip
    metrics, clock = Metrics(), FakeClock()
    loaded = load_settings(environ=environ)
    limit = loaded.api.max_response_bytes
    rec = Reconciler(api, metrics, clock, loaded.uploader, response_limit_bytes=limit)
    return rec, metrics, clock


def test_a_lost_answer_finds_what_exists_pages_through_the_window_and_rechecks_the_rest() -> None:
    api = ListingApi([{"id": "a"}, {"text": "same"}, {"id": "b"}, {"text": "same"}, {"id": "x"}])
    rec, metrics, clock = reconciler(api, reconcile_clock_skew_seconds="10",
                                     reconcile_recheck_seconds="2")  # fmt: skip
    batch = records({"id": "a"}, {"text": "same"}, {"text": "same"}, {"text": "same"}, {"id": "c"})
    exclude: set[str] = set()
    found = rec.after_lost_answer(batch, since=clock.time(), exclude=exclude)
    assert found == {0: "item-0", 1: "item-1", 2: "item-3"}
    assert exclude == {"item-0", "item-1", "item-3"}
    assert len(api.requests) == 6  # 3 pages, then again after the recheck delay
    assert clock.waits == [2.0]
    low = api.requests[0]["created_gte"]
    assert low == "2023-11-14T22:13:10.000000"  # the fake clock's start minus 10 s of skew
    sample = metrics.sample
    assert sample("toloka_connector_reconciliations_total",
                  {"cause": "lost_answer", "outcome": "complete"}) == 1  # fmt: skip
    assert sample("toloka_connector_reconciled_items_total", {"result": "found"}) == 3
    assert sample("toloka_connector_reconciled_items_total", {"result": "sent"}) == 2


def test_everything_found_at_once_needs_no_recheck() -> None:
    api = ListingApi([{"id": "a"}])
    rec, _, clock = reconciler(api)
    assert rec.after_lost_answer(records({"id": "a"}), clock.time(), set()) == {0: "item-0"}
    assert len(api.requests) == 1
    assert clock.waits == []


def test_a_listing_that_keeps_failing_ends_in_at_least_once_after_the_timeout() -> None:
    api = ListingApi([{"id": "a"}], failures=1000)
    rec, metrics, clock = reconciler(api, reconcile_timeout_seconds="10")
    assert rec.after_lost_answer(records({"id": "a"}), clock.time(), set()) is None
    assert 5 <= len(api.requests) < 20
    assert sum(clock.waits) <= 10
    assert metrics.sample(
        "toloka_connector_reconciliations_total", {"cause": "lost_answer", "outcome": "failed"}
    ) == 1  # fmt: skip


def test_a_listing_that_fails_a_while_is_asked_again() -> None:
    api = ListingApi([{"id": "a"}], failures=3)
    rec, _, clock = reconciler(api)
    assert rec.after_lost_answer(records({"id": "a"}), clock.time(), set()) == {0: "item-0"}


def test_a_handover_lists_once_after_the_recheck_delay_for_the_records_below_the_end() -> None:
    api = ListingApi([{"id": "a"}, {"id": "b"}])
    rec, _, clock = reconciler(api, reconcile_recheck_seconds="3")
    rec.taken_over({0: (1, clock.time() - 60, 1)})
    batch = records({"id": "a"}, {"id": "b"})  # offsets 0 and 1
    assert rec.found_after_handover(batch) == {0: "item-0"}  # "b" is at the end: never sent
    assert clock.waits == [3.0]
    assert rec.found_after_handover(records({"id": "b"})) == {0: "item-1"}
    assert len(api.requests) == 1  # one listing for the whole hand-over
    stale = [PendingRecord(None, 0, 0, 2, orjson.dumps({"id": "a"}))]  # another assignment
    assert rec.found_after_handover(stale) == {}
    rec.forget([0])
    assert rec.found_after_handover(records({"id": "a"})) == {}


def test_give_up_ends_the_wait_for_a_handover_listing_without_listing() -> None:
    api = ListingApi([{"id": "a"}])
    rec, _, _ = reconciler(api)
    rec.taken_over({0: (1, 0.0, None)})
    rec.give_up()
    assert rec.found_after_handover(records({"id": "a"})) == {}
    assert api.requests == []


class LargeItemsApi(ListingApi):
    """`list_items` whose answers hold at most `fits` items, as the client raises it: a page of
    more is over CONNECTOR_API_MAX_RESPONSE_BYTES (an UnreadablePageError, cut)."""

    def __init__(self, inputs: list[dict[str, Any]], fits: int) -> None:
        super().__init__(inputs)
        self.fits = fits
        self.limits: list[int] = []

    def list_items(
        self,
        *,
        sort: str = "finished",
        after_id: str | None = None,
        limit: int = 100,
        filters: Mapping[str, str] | None = None,
    ) -> ItemPage:
        self.limits.append(limit)
        if limit > self.fits:
            raise UnreadablePageError(
                "list_items: HTTP 200: the response body is larger than 65536 bytes",
                body=b'{"content": [', complete=False, status=200, operation="list_items",
            )  # fmt: skip
        start = 0 if after_id is None else int(after_id.removeprefix("item-")) + 1
        self.requests.append(filters or {})
        page = self.items[start : start + limit]
        return ItemPage(content=page, has_more=start + limit < len(self.items))


@pytest.mark.parametrize("fits", [1, 3, 999])
def test_a_listing_too_large_for_the_response_limit_is_asked_for_with_fewer_items(
    fits: int,
) -> None:
    api = LargeItemsApi([{"id": str(n), "text": "x" * 100} for n in range(7)], fits=fits)
    rec, metrics, clock = reconciler(api)
    batch = records(*({"id": str(n)} for n in range(7)))
    found = rec.after_lost_answer(batch, since=clock.time(), exclude=set())
    assert found == {n: f"item-{n}" for n in range(7)}
    assert clock.waits == []  # a smaller page is asked for at once, not after a pause
    halvings = [1000, 500, 250, 125, 62, 31, 15, 7, 3, 1]
    first_fit = next(n for n, limit in enumerate(halvings) if limit <= fits)
    assert api.limits[: first_fit + 1] == halvings[: first_fit + 1]
    assert metrics.sample(
        "toloka_connector_reconciliations_total", {"cause": "lost_answer", "outcome": "complete"}
    ) == 1  # fmt: skip


def test_an_item_larger_than_the_response_limit_alone_fails_the_reconciliation() -> None:
    api = LargeItemsApi([{"id": "a"}], fits=0)
    rec, metrics, clock = reconciler(api, reconcile_timeout_seconds="10")
    assert rec.after_lost_answer(records({"id": "a"}), clock.time(), set()) is None
    assert api.limits[:10] == [1000, 500, 250, 125, 62, 31, 15, 7, 3, 1]
    assert set(api.limits[10:]) == {1}  # then asked again, as any failing request, until the end
    assert sum(clock.waits) <= 10
    assert metrics.sample(
        "toloka_connector_reconciliations_total", {"cause": "lost_answer", "outcome": "failed"}
    ) == 1  # fmt: skip
