"""One batch through the API: rejected items by index, halving, 413, outages, shutdown."""

from __future__ import annotations

from collections.abc import Callable

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from connector.errors import (
    AuthenticationError,
    ClientRequestError,
    PayloadTooLargeError,
    RateLimitedError,
    RedirectError,
    ResponseTooLargeError,
    ServerError,
    TolokaApiError,
    UnexpectedResponseError,
    ValidationFailedError,
)
from connector.metrics import Metrics
from connector.outstanding import OutstandingItems
from connector.toloka.client import BulkCreateResult
from connector.toloka.retry import RetryPolicy
from connector.uploader.batcher import Batch, PendingRecord, request_body
from connector.uploader.upload import BatchOutcome, BatchUploader, rejected_items
from testkit.clocks import WALL_START, FakeClock


class TimestampedMessage:
    def __init__(self, milliseconds: int) -> None:
        self.milliseconds = milliseconds

    def timestamp(self) -> tuple[int, int]:
        return (1, self.milliseconds)


Script = Callable[[list[dict[str, object]]], BulkCreateResult | TolokaApiError]


class ScriptedApi:
    """A bulk endpoint that answers each request with `script(items)` and records requests."""

    def __init__(self, script: Script) -> None:
        self.script = script
        self.requests: list[list[dict[str, object]]] = []
        self.created: list[dict[str, object]] = []
        self.stopped = False

    def bulk_create_raw(
        self, body: bytes, count: int, *, retry_ambiguous: bool = True
    ) -> BulkCreateResult:
        items = orjson.loads(body)["items"]
        assert len(items) == count
        self.requests.append(items)
        answer = self.script(items)
        if isinstance(answer, TolokaApiError):
            raise answer
        self.created.extend(items)
        return answer

    def stop_retrying(self) -> None:
        self.stopped = True


def created(items: list[dict[str, object]], duplicated_attempts: int = 0) -> BulkCreateResult:
    return BulkCreateResult([f"item-{item['n']}" for item in items], duplicated_attempts)


def batch_of(count: int, bad: set[int] = frozenset()) -> Batch:  # type: ignore[assignment]
    records = [
        PendingRecord(TimestampedMessage(1_000_000 + n), n % 3, n, 1,
                      orjson.dumps({"n": n, "text": "bad" if n in bad else "ok"}))
        for n in range(count)
    ]  # fmt: skip
    return Batch(records=records, body_bytes=len(request_body(records)))


def uploader(
    api: ScriptedApi, clock: FakeClock | None = None, outstanding: OutstandingItems | None = None
) -> tuple[BatchUploader, Metrics]:
    metrics = Metrics()
    return BatchUploader(
        api, metrics, clock or FakeClock(WALL_START + 100, 100.0),
        outage_backoff=RetryPolicy(max_attempts=None, base_delay_seconds=0.5,
                                   max_delay_seconds=4.0),
        outstanding=outstanding,
    ), metrics  # fmt: skip


def offsets(records: list[PendingRecord]) -> list[int]:
    return [record.offset for record in records]


def rejecting(name_indexes: bool, status: int = 400) -> Script:
    """Refuses any request holding a "bad" item, naming them by index or not at all."""

    def answer(items: list[dict[str, object]]) -> BulkCreateResult | TolokaApiError:
        bad = [i for i, item in enumerate(items) if item["text"] == "bad"]
        if not bad:
            return created(items)
        if status == 413:
            return PayloadTooLargeError("too large", status=413)
        payload = {f"input_data.{i}.text": {"code": "VALUE_NOT_ALLOWED", "message": "no"}
                   for i in bad} if name_indexes else {}  # fmt: skip
        if status == 400 and name_indexes:
            return ValidationFailedError(
                "Validation failed", status=400, code="VALIDATION_ERROR",
                request_id="req-7", payload=payload,
            )  # fmt: skip
        return ClientRequestError("bad request", status=400, request_id="req-8")

    return answer


def sample(metrics: Metrics, name: str, labels: dict[str, str] | None = None) -> float:
    value = metrics.sample(f"toloka_connector_{name}", labels or {})
    return 0.0 if value is None else value


def test_a_good_batch_is_created_in_one_request_and_recorded_as_outstanding() -> None:
    api = ScriptedApi(created)
    outstanding = OutstandingItems()
    upload, metrics = uploader(api, outstanding=outstanding)
    outcome = upload.upload(batch_of(5))
    assert offsets(outcome.uploaded) == [0, 1, 2, 3, 4]
    assert outcome.rejected == []
    assert outcome.abandoned == []
    assert len(api.requests) == 1
    assert sample(metrics, "items_uploaded_total") == 5
    assert outstanding.take("item-3") == 1000.003


def test_items_named_by_index_are_rejected_and_the_rest_re_sent_at_once() -> None:
    api = ScriptedApi(rejecting(name_indexes=True))
    upload, _ = uploader(api)
    outcome = upload.upload(batch_of(10, bad={2, 7}))
    assert offsets([r.record for r in outcome.rejected]) == [2, 7]
    assert all(r.refusal.reason == "rejected" for r in outcome.rejected)
    assert outcome.rejected[0].refusal.message == "text: VALUE_NOT_ALLOWED: no"
    assert {r.request_id for r in outcome.rejected} == {"req-7"}
    assert sorted(offsets(outcome.uploaded)) == [0, 1, 3, 4, 5, 6, 8, 9]
    assert [len(request) for request in api.requests] == [10, 8]


@pytest.mark.parametrize("status", [400, 413])
def test_a_refusal_naming_no_item_is_split_in_halves_until_the_bad_ones_are_alone(
    status: int,
) -> None:
    api = ScriptedApi(rejecting(name_indexes=False, status=status))
    upload, _ = uploader(api)
    outcome = upload.upload(batch_of(16, bad={5}))
    assert offsets([r.record for r in outcome.rejected]) == [5]
    assert outcome.rejected[0].refusal.reason == ("too_large" if status == 413 else "rejected")
    assert sorted(offsets(outcome.uploaded)) == [n for n in range(16) if n != 5]
    # 16 → 8+8 → 4+4 → 2+2 → 1+1: one bad item costs 2·log2(16)+1 requests.
    assert len(api.requests) == 9
    assert sorted(int(str(item["n"])) for item in api.created) == sorted(offsets(outcome.uploaded))


def test_index_outside_the_request_counts_as_no_index() -> None:
    assert rejected_items({"input_data.9.text": {"code": "X"}, "other": 1}, count=3) == {}
    assert rejected_items({"input_data.1": "missing", "input_data.1.a": {"code": "C",
                           "message": "m"}}, count=3) == {1: "item: missing; a: C: m"}  # fmt: skip


@settings(max_examples=60, deadline=None)
@given(
    st.integers(1, 40).flatmap(
        lambda n: st.tuples(st.just(n), st.sets(st.integers(0, n - 1)), st.booleans())
    )
)
def test_every_good_item_is_created_once_and_every_bad_one_rejected(
    case: tuple[int, set[int], bool],
) -> None:
    count, bad, name_indexes = case
    api = ScriptedApi(rejecting(name_indexes))
    upload, _ = uploader(api)
    outcome = upload.upload(batch_of(count, bad))
    assert sorted(offsets([r.record for r in outcome.rejected])) == sorted(bad)
    good = [n for n in range(count) if n not in bad]
    assert sorted(offsets(outcome.uploaded)) == good
    assert sorted(int(str(item["n"])) for item in api.created) == good
    assert len(api.requests) <= 2 * count  # no request loop


def test_an_outage_is_waited_out_with_backoff_and_flagged_on_the_batch() -> None:
    failures = [RateLimitedError("slow down", status=429, retry_after=3.0),
                ServerError("bad gateway", status=502, may_have_been_applied=True),
                AuthenticationError("key revoked", status=401)]  # fmt: skip
    api = ScriptedApi(lambda items: failures.pop(0) if failures else created(items, 1))
    clock = FakeClock(WALL_START + 100, 100.0)
    batch = batch_of(4)
    flags: list[bool] = []
    clock.on_wait = lambda: flags.append(batch.retrying)
    upload, metrics = uploader(api, clock)
    outcome = upload.upload(batch)
    assert offsets(outcome.uploaded) == [0, 1, 2, 3]
    assert flags == [True, True, True]
    assert not batch.retrying
    assert clock.waits[0] == 3.0  # Retry-After honoured
    assert all(wait <= 4.0 for wait in clock.waits)
    # 4 items after the ambiguous 502, 4 more for the client's own ambiguous attempt.
    assert sample(metrics, "possible_duplicate_uploads_total") == 8


def test_an_endless_outage_never_gives_up_by_itself_but_ends_on_shutdown() -> None:
    api = ScriptedApi(lambda _items: ServerError("unavailable", status=503))
    clock = FakeClock(WALL_START + 100, 100.0)
    upload, _ = uploader(api, clock)
    clock.on_wait = lambda: upload.give_up() if len(clock.waits) == 500 else None
    outcome = upload.upload(batch_of(3))
    assert offsets(outcome.abandoned) == [0, 1, 2]
    assert outcome.uploaded == []
    assert len(api.requests) == 500
    assert api.stopped
    assert max(clock.waits) <= 4.0


def test_rejections_before_a_shutdown_are_kept_and_the_rest_abandoned() -> None:
    first = rejecting(name_indexes=True)
    answers = iter([first])

    def answer(items: list[dict[str, object]]) -> BulkCreateResult | TolokaApiError:
        return next(answers, lambda _items: ServerError("down", status=500))(items)

    api = ScriptedApi(answer)
    clock = FakeClock(WALL_START + 100, 100.0)
    upload, _ = uploader(api, clock)
    clock.on_wait = upload.give_up
    outcome: BatchOutcome = upload.upload(batch_of(4, bad={0}))
    assert offsets([r.record for r in outcome.rejected]) == [0]
    assert offsets(outcome.abandoned) == [1, 2, 3]


@pytest.mark.parametrize(
    "answer",
    [
        UnexpectedResponseError("not an array", status=201, may_have_been_applied=True),
        ResponseTooLargeError("too large", status=200, may_have_been_applied=True),
        RedirectError("redirected", status=302),
    ],
    ids=["unreadable-2xx", "oversized-2xx", "redirect"],
)
def test_an_answer_listing_no_created_items_is_never_taken_as_created(
    answer: TolokaApiError,
) -> None:
    answers: list[TolokaApiError] = [answer, answer]
    api = ScriptedApi(lambda items: answers.pop(0) if answers else created(items))
    clock = FakeClock(WALL_START + 100, 100.0)
    batch = batch_of(2)
    flags: list[bool] = []
    clock.on_wait = lambda: flags.append(batch.retrying)
    upload, metrics = uploader(api, clock)
    outcome = upload.upload(batch)
    assert offsets(outcome.uploaded) == [0, 1]
    assert outcome.rejected == []
    assert len(api.requests) == 3, "sent again until an answer listed the created items"
    assert flags == [True, True]  # waited out like an outage: partitions pause meanwhile
    assert sample(metrics, "items_uploaded_total") == 2
    # A 2xx may have created the items each time: counted; a redirect turned them away.
    expected = 4 if answer.may_have_been_applied else 0
    assert sample(metrics, "possible_duplicate_uploads_total") == expected
