"""Hostile Apps API answers at the client seam (`httpx.MockTransport` under a real TolokaClient),
driving the real poller loop over fake Kafka (tests/unit/poller_fakes.py).

Whatever the listing returns — bodies that are no JSON, wrong shapes, missing fields, unknown
statuses, a 400 for an `after_id` the API no longer knows, pages larger than asked — the poller
must log a clear error and try again: never raise out of its loop (the process would exit, be
restarted, read the same answer and exit again: a crash loop), never move its cursor onto
something it neither published nor dead-lettered (an item that cannot be read even alone,
again and again, is dead-lettered as `unreadable_result` and passed).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import httpx
import orjson
import pytest
from pydantic import SecretStr

from connector.lifecycle import Heartbeat
from connector.metrics import Metrics
from connector.poller.loop import PollerLoop
from connector.toloka.client import TolokaClient
from connector.toloka.retry import RetryPolicy
from testkit.clocks import FakeClock
from tests.unit.poller_fakes import (
    RESPONSE_LIMIT_BYTES,
    T0,
    FakeKafka,
    FakeProducer,
    FakeStateStore,
    api_time,
    finished_item,
    poller_settings,
    producer_factory,
)

PAGE = 3
Answer = Callable[[httpx.Request], httpx.Response]


def item(n: int, **extra: Any) -> dict[str, Any]:
    raw = finished_item(f"i{n:03d}", T0 - 100 + n)
    raw.update(extra)
    return raw


GOOD = [item(n) for n in range(5)]


def honest(request: httpx.Request) -> httpx.Response:
    """Pages of GOOD in (finished_at, id) order after `after_id`, at most `limit` long."""
    after = request.url.params.get("after_id")
    limit = int(request.url.params.get("limit", "100"))
    ids = [raw["id"] for raw in GOOD]
    start = ids.index(after) + 1 if after in ids else 0
    chunk = GOOD[start : start + limit]
    return httpx.Response(200, json={"content": chunk, "has_more": start + limit < len(GOOD)})


class HostileApi:
    """Answers the first listings with `hostile` answers, then honestly."""

    def __init__(self, hostile: list[Answer]) -> None:
        self.hostile = list(hostile)
        self.listings = 0

    def __call__(self, request: httpx.Request) -> httpx.Response:
        if not request.url.path.endswith("/items"):
            return httpx.Response(404, json={"code": "DOES_NOT_EXIST", "message": "no"})
        self.listings += 1
        if self.hostile:
            return self.hostile.pop(0)(request)
        return honest(request)


def answer(status: int, body: bytes | str, content_type: str = "application/json") -> Answer:
    data = body.encode() if isinstance(body, str) else body
    return lambda _request: httpx.Response(status, content=data,
                                           headers={"Content-Type": content_type})  # fmt: skip


def page(content: Any, has_more: Any = False) -> Answer:
    return answer(200, orjson.dumps({"content": content, "has_more": has_more}))


UNKNOWN_AFTER_ID = answer(
    400,
    orjson.dumps(
        {
            "request_id": "r-1",
            "code": "VALIDATION_ERROR",
            "message": "Validation failed",
            "payload": {"after_id": {"code": "VALUE_NOT_ALLOWED", "message": "unknown id"}},
        }
    ),
)


class Run:
    def __init__(self, api: HostileApi, *, stop_after: float = 120.0) -> None:
        self.clock = FakeClock(stop_at=T0 + stop_after)
        self.kafka = FakeKafka(transactional=True)
        self.producers: list[FakeProducer] = []
        self.client = TolokaClient(
            "https://api.invalid/api/app/v0",
            SecretStr("hostile-key"),
            "proj",
            retry=RetryPolicy(max_attempts=2, base_delay_seconds=0.1, max_delay_seconds=0.5),
            transport=httpx.MockTransport(api),
            clock=self.clock,
        )
        self.loop = PollerLoop(
            poller_settings(page_size=PAGE, late_window_seconds=0.0),
            "proj",
            source=self.client,
            producer_factory=producer_factory(self.kafka, self.producers),
            store=FakeStateStore(self.kafka, clock=self.clock),
            clock=self.clock,
            metrics=Metrics(),
            heartbeat=Heartbeat("poller", self.clock),
            instance_id="A",
            response_limit_bytes=RESPONSE_LIMIT_BYTES,
        )

    def run(self) -> None:
        with self.client:
            self.loop.run(self.clock.stop)

    def published(self) -> list[str]:
        return self.kafka.published_ids("out")

    def dead_lettered(self) -> list[str]:
        return self.kafka.published_ids("toloka.items.dlq")

    def cursor_after_id(self) -> str | None:
        state = FakeStateStore(self.kafka, clock=self.clock).read().poller_state()
        return None if state is None else state.cursor.after_id


@pytest.fixture
def warnings(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    caplog.set_level(logging.WARNING)
    return caplog


def test_unknown_statuses_fields_and_timestamp_forms_are_published_as_sent() -> None:
    odd = [
        item(0, status="SOMETHING_NEW", extra_field={"x": [1, 2]}),
        item(1, status="ARCHIVE", finished_at=api_time(T0 - 99) + "Z"),
        item(2, status="COMPLETED", output_data=None, errors=None, started_at=None),
        {**item(3), "finished_at": api_time(T0 - 97)[:19]},  # no fraction digits
    ]
    run = Run(HostileApi([page(odd)]), stop_after=20)
    run.run()
    assert run.published()[:4] == ["i000", "i001", "i002", "i003"]
    assert run.published() == sorted(set(run.published()))


HOSTILE_BODIES: dict[str, Answer] = {
    "not json": answer(200, "{not json"),
    "html": answer(200, "<html><body>gateway</body></html>", "text/html"),
    "empty body": answer(200, b""),
    "a bare array": answer(200, "[]"),
    "content not a list": page("oops"),
    "an item without id": page([{"status": "COMPLETED", "finished_at": api_time(T0)}]),
    "an id that is no string": page([{**item(0), "id": {"x": 1}}]),
    "finished_at that is no date": page([{**item(0), "finished_at": "yesterday"}]),
    "has_more that is no boolean": page([item(0)], has_more="maybe"),
    "items that are no objects": page([1, "two", None]),
    "null body": answer(200, "null"),
    "an unknown after_id (400)": UNKNOWN_AFTER_ID,
}
CURSOR_CASES = {
    **HOSTILE_BODIES,
    "a 404 from a proxy": answer(404, "<html>nf</html>", "text/html"),
}


@pytest.mark.parametrize("name", sorted(HOSTILE_BODIES))
def test_a_hostile_listing_is_retried_with_a_clear_error_never_raised(
    name: str, warnings: pytest.LogCaptureFixture
) -> None:
    hostile = HOSTILE_BODIES[name]
    run = Run(HostileApi([hostile, hostile, hostile]), stop_after=120)
    run.run()
    assert run.published() == [raw["id"] for raw in GOOD], "published once the API is sane"
    assert run.cursor_after_id() == GOOD[-1]["id"]
    assert any("list" in record.getMessage() for record in warnings.records)


@pytest.mark.parametrize(
    "name",
    [*sorted(CURSOR_CASES), "a page larger than asked"],
)
def test_a_hostile_listing_never_moves_the_cursor(name: str) -> None:
    """Whatever the loop does with the answer, the stored cursor never moves past what was
    published or dead-lettered, and nothing unknown is published."""
    hostile = page(GOOD) if name == "a page larger than asked" else CURSOR_CASES[name]
    run = Run(HostileApi([honest, hostile]), stop_after=60)
    run.run()
    published = run.published()
    passed = published + run.dead_lettered()
    assert passed == [raw["id"] for raw in GOOD][: len(passed)]
    assert len(set(passed)) == len(passed)
    after = run.cursor_after_id()
    assert after is None or after in passed


# --- the uploader's side: a bulk create answered 200 with a body that is no id list -----------


class BulkApi:
    """Creates the items of every bulk request (a 2xx means they exist), answering the first
    `garbled` requests with `body` instead of the id list."""

    def __init__(self, garbled: int, body: bytes) -> None:
        self.garbled = garbled
        self.body = body
        self.created: list[str] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        items = orjson.loads(request.content)["items"]
        ids = [f"item-{len(self.created) + n}" for n in range(len(items))]
        self.created.extend(str(it["id"]) for it in items)
        if self.garbled:
            self.garbled -= 1
            return httpx.Response(200, content=self.body)
        return httpx.Response(200, json=ids)


class _Record:
    def __init__(self, n: int) -> None:
        self.n = n

    def headers(self) -> list[tuple[str, bytes]]:
        return []

    def key(self) -> bytes:
        return b"k"

    def value(self) -> bytes:
        return b"{}"

    def topic(self) -> str:
        return "in"

    def partition(self) -> int:
        return 0

    def offset(self) -> int:
        return self.n

    def timestamp(self) -> tuple[int, int]:
        return (1, 1_000)


@pytest.mark.parametrize(
    "body", [b"{not json", b'{"ids": []}', b'["only-one"]', b"<html/>", b"", b'["a", "a"]']
)
def test_a_garbled_bulk_answer_is_sent_again_flagged_never_dead_lettered(body: bytes) -> None:
    from connector.clock import SystemClock  # noqa: PLC0415
    from connector.uploader.batcher import Batch, PendingRecord, request_body  # noqa: PLC0415
    from connector.uploader.upload import BatchUploader  # noqa: PLC0415

    api = BulkApi(garbled=1, body=body)
    client = TolokaClient(
        "https://api.invalid/api/app/v0",
        SecretStr("hostile-key"),
        "proj",
        retry=RetryPolicy(max_attempts=3, base_delay_seconds=0.01, max_delay_seconds=0.01),
        transport=httpx.MockTransport(api),
    )
    records = [
        PendingRecord(_Record(n), 0, n, 1, orjson.dumps({"id": f"r{n}", "text": "t"}))
        for n in range(8)
    ]
    batch = Batch(records=records, body_bytes=len(request_body(records)))
    metrics = Metrics()
    uploader = BatchUploader(
        client, metrics, SystemClock(),
        outage_backoff=RetryPolicy(base_delay_seconds=0.01, max_delay_seconds=0.01),
    )  # fmt: skip
    with client:
        outcome = uploader.upload(batch)
    assert outcome.rejected == [], "items the API took must not be dead-lettered"
    assert len(outcome.uploaded) == 8
    # Only the answer listing the new ids confirms them; the garbled one may have created them
    # too (this API did), which the possible-duplicates counter says.
    assert sorted(api.created) == sorted(f"r{n}" for n in range(8) for _ in range(2))
    duplicates = metrics.sample("toloka_connector_possible_duplicate_uploads_total")
    assert duplicates == 8
