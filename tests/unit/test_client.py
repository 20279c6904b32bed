"""TolokaClient against httpx.MockTransport: no network, no real sleeping (FakeClock)."""

from __future__ import annotations

import email.utils
import gzip
import logging
import random
import zlib
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any

import httpx
import orjson
import pytest
from prometheus_client import CollectorRegistry
from pydantic import SecretStr

from connector.errors import (
    AuthenticationError,
    ClientRequestError,
    NotFoundError,
    PayloadTooLargeError,
    RateLimitedError,
    RedirectError,
    ResponseTooLargeError,
    ServerError,
    TolokaApiError,
    TransportError,
    UnexpectedResponseError,
    ValidationFailedError,
)
from connector.metrics import Metrics
from connector.toloka.client import TolokaClient
from connector.toloka.retry import RetryPolicy
from testkit.clocks import WALL_START, FakeClock

API_KEY = "sEcReT-kEy-0123456789"
BASE_URL = "https://toloka.test/api/app/v0"
PROJECT = "proj-1"
PREFIX = "/api/app/v0"

Handler = Callable[[httpx.Request], httpx.Response]
MakeClient = Callable[..., TolokaClient]


class Api:
    """A scripted server: answers with `responses` in turn (the last one repeats)."""

    def __init__(self, *responses: httpx.Response | Exception) -> None:
        self.responses = list(responses)
        self.requests: list[httpx.Request] = []
        self.on_request: Callable[[], None] | None = None

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        if self.on_request is not None:
            self.on_request()
        answer = self.responses.pop(0) if len(self.responses) > 1 else self.responses[0]
        if isinstance(answer, Exception):
            raise answer
        return answer


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def metrics() -> Metrics:
    return Metrics(CollectorRegistry())


@pytest.fixture
def make_client(clock: FakeClock, metrics: Metrics) -> Iterator[MakeClient]:
    clients: list[TolokaClient] = []

    def make(handler: Handler, **overrides: Any) -> TolokaClient:
        options: dict[str, Any] = {
            "retry": RetryPolicy(max_attempts=1),
            "transport": httpx.MockTransport(handler),
            "metrics": metrics,
            "clock": clock,
            "rng": random.Random(7),
        }
        options.update(overrides)
        client = TolokaClient(BASE_URL, SecretStr(API_KEY), PROJECT, **options)
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.close()


def json_response(status: int, body: Any, headers: dict[str, str] | None = None) -> httpx.Response:
    return httpx.Response(status, content=orjson.dumps(body), headers=headers)


def error_body(code: str, **extra: Any) -> dict[str, Any]:
    return {"request_id": "req-42", "code": code, "message": f"{code} happened", **extra}


def sample(metrics: Metrics, name: str, labels: dict[str, str]) -> float:
    value = metrics.sample(f"toloka_connector_{name}", labels)
    assert value is not None, f"{name} {labels} not exported"
    return value


def retries(metrics: Metrics, operation: str, cause: str) -> float:
    return sample(metrics, "api_retries_total", {"operation": operation, "cause": cause})


ITEM = {
    "id": "QlvdZj5d53QHj5Nvx9Vd",
    "app_project_id": PROJECT,
    "status": "COMPLETED",
    "input_data": {"id": "1", "text": "Kate likes dogs."},
    "output_data": {"result": ["OK"], "confidence": 0.9998542274},
    "errors": [],
    "created_at": "2021-10-03T09:49:14.028",
    "started_at": "2021-10-03T10:10:27.561182",
    "finished_at": "2021-10-03T11:24:46.818213",
}


# --- requests on the wire ------------------------------------------------------------------------


def test_bulk_create_posts_the_items_and_returns_ids_in_order(make_client: MakeClient) -> None:
    api = Api(json_response(200, ["id-a", "id-b"]))
    items = [{"id": "1", "text": "a"}, {"id": "2", "text": "b"}]

    result = make_client(api).bulk_create(items)

    assert result.ids == ["id-a", "id-b"]
    assert result.possibly_duplicated_attempts == 0
    (request,) = api.requests
    assert request.method == "POST"
    assert request.url.path == f"{PREFIX}/app-projects/{PROJECT}/items/bulk"
    assert request.headers["Content-Type"] == "application/json"
    assert request.headers["Authorization"] == f"ApiKey {API_KEY}"
    assert orjson.loads(request.content) == {"items": items}


def test_bulk_create_raw_sends_the_callers_bytes_unchanged(make_client: MakeClient) -> None:
    api = Api(json_response(200, ["x", "y", "z"]))
    body = b'{"items": [{"text": "1"}, {"text": "2"}, {"text": "3"}]}'

    result = make_client(api).bulk_create_raw(body, 3)

    assert result.ids == ["x", "y", "z"]
    assert api.requests[0].content == body


def test_list_items_sends_the_cursor_and_filters_as_query(make_client: MakeClient) -> None:
    api = Api(json_response(200, {"content": [], "has_more": False}))

    make_client(api).list_items(
        after_id="cursor-9",
        limit=500,
        filters={"status": "COMPLETED", "finished_gte": "2024-01-01"},
    )

    (request,) = api.requests
    assert request.method == "GET"
    assert request.url.path == f"{PREFIX}/app-projects/{PROJECT}/items"
    assert dict(request.url.params) == {
        "sort": "finished",
        "after_id": "cursor-9",
        "limit": "500",
        "status": "COMPLETED",
        "finished_gte": "2024-01-01",
    }


def test_list_items_leaves_out_an_absent_cursor(make_client: MakeClient) -> None:
    api = Api(json_response(200, {"content": [], "has_more": False}))
    make_client(api).list_items(sort="id", limit=10)
    assert dict(api.requests[0].url.params) == {"sort": "id", "limit": "10"}


def test_list_items_refuses_filters_that_shadow_its_arguments(make_client: MakeClient) -> None:
    api = Api(json_response(200, {"content": [], "has_more": False}))
    with pytest.raises(ValueError, match="after_id"):
        make_client(api).list_items(filters={"after_id": "x"})
    assert api.requests == []


def test_ids_in_paths_are_escaped(make_client: MakeClient) -> None:
    api = Api(json_response(200, {**ITEM, "id": "a/b?c"}))
    item = make_client(api).get_item("a/b?c")
    assert item.id == "a/b?c"
    escaped_path = f"{PREFIX}/app-projects/{PROJECT}/items/a%2Fb%3Fc"
    assert api.requests[0].url.raw_path.decode() == escaped_path


def test_get_project_and_get_app(make_client: MakeClient) -> None:
    project = {
        "id": PROJECT,
        "app_id": "app-7",
        "status": "READY",
        "created": "2024-05-01T10:00:00",
    }
    app = {
        "id": "app-7",
        "input_spec": {"text": {"type": "string", "required": True}},
        "output_spec": {"result": {"type": "array_string"}},
    }
    api = Api(json_response(200, project), json_response(200, app))
    client = make_client(api)

    got_project = client.get_project()
    got_app = client.get_app(got_project.app_id)

    assert [r.url.path for r in api.requests] == [
        f"{PREFIX}/app-projects/{PROJECT}",
        f"{PREFIX}/apps/app-7",
    ]
    assert got_project.status == "READY"
    assert got_app.input_spec["text"].required is True


def test_ping_makes_one_attempt_whatever_the_policy(
    make_client: MakeClient, clock: FakeClock
) -> None:
    api = Api(json_response(503, error_body("REMOTE_SERVICE_UNAVAILABLE")))
    client = make_client(api, retry=RetryPolicy(max_attempts=None))
    with pytest.raises(ServerError):
        client.ping()
    assert len(api.requests) == 1
    assert clock.waits == []


def test_concurrent_calls_from_threads_each_get_their_own_answer(make_client: MakeClient) -> None:
    def echo_ids(request: httpx.Request) -> httpx.Response:
        items = orjson.loads(request.content)["items"]
        return json_response(200, [f"id-{item['n']}" for item in items])

    client = make_client(httpx.MockTransport(echo_ids).handle_request, max_connections=8)

    def upload(n: int) -> list[str]:
        return client.bulk_create([{"n": n}, {"n": n + 1000}]).ids

    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(upload, range(64)))
    assert results == [[f"id-{n}", f"id-{n + 1000}"] for n in range(64)]


@pytest.mark.parametrize("base_url", ["ftp://toloka.test/api", "toloka.test/api/app/v0", ""])
def test_base_url_must_be_http(base_url: str) -> None:
    with pytest.raises(ValueError, match="base_url"):
        TolokaClient(base_url, SecretStr(API_KEY), PROJECT)


# --- parsing what came back ----------------------------------------------------------------------


def test_items_keep_the_raw_object_exactly_as_sent(make_client: MakeClient) -> None:
    odd = {
        **ITEM,
        "id": "odd",
        "status": "SOME_FUTURE_STATUS",
        "brand_new_field": {"nested": [1, 2.5, None]},
        "batch_id": None,
    }
    page_body = {"content": [ITEM, odd], "has_more": True, "next_thing": 1}
    api = Api(json_response(200, page_body))

    page = make_client(api).list_items()

    assert page.has_more is True
    assert [item.raw for item in page.content] == [ITEM, odd]
    assert list(page.content[1].raw) == list(odd)  # key order too
    assert page.content[1].status == "SOME_FUTURE_STATUS"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2021-10-03T11:24:46.818", datetime(2021, 10, 3, 11, 24, 46, 818000, UTC)),
        ("2021-10-03T11:24:46.818213", datetime(2021, 10, 3, 11, 24, 46, 818213, UTC)),
        ("2021-10-03T11:24:46.818Z", datetime(2021, 10, 3, 11, 24, 46, 818000, UTC)),
        ("2021-10-03T11:24:46.818213Z", datetime(2021, 10, 3, 11, 24, 46, 818213, UTC)),
        ("2021-10-03T11:24:46", datetime(2021, 10, 3, 11, 24, 46, 0, UTC)),
    ],
)
def test_datetimes_in_every_form_become_aware_utc(
    make_client: MakeClient, text: str, expected: datetime
) -> None:
    api = Api(json_response(200, {"content": [{**ITEM, "finished_at": text}]}))
    (item,) = make_client(api).list_items().content
    assert item.finished_at == expected
    assert item.raw["finished_at"] == text


def test_unset_and_null_times_are_both_none(make_client: MakeClient) -> None:
    new_item = {"id": "n1", "status": "NEW", "input_data": {"text": "x"}, "started_at": None}
    api = Api(json_response(200, {"content": [new_item], "has_more": False}))
    (item,) = make_client(api).list_items().content
    assert item.started_at is None
    assert item.finished_at is None
    assert item.raw == new_item


@pytest.mark.parametrize(
    "body",
    [
        [ITEM],  # the bare array the OpenAPI file claims, not the object the API sends
        {"content": "nope"},
        {"content": [{"status": "COMPLETED", "input_data": {"text": "Kate's private note"}}]},
    ],
)
def test_a_page_of_the_wrong_shape_is_unexpected(make_client: MakeClient, body: Any) -> None:
    api = Api(json_response(200, body))
    with pytest.raises(UnexpectedResponseError) as raised:
        make_client(api).list_items()
    assert raised.value.operation == "list_items"
    assert raised.value.may_have_been_applied is False
    assert "private note" not in str(raised.value)  # pydantic would quote the input


def test_a_success_body_that_is_not_json_is_unexpected(make_client: MakeClient) -> None:
    api = Api(httpx.Response(200, text="<html>maintenance</html>"))
    with pytest.raises(UnexpectedResponseError, match="maintenance"):
        make_client(api).get_project()


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        (orjson.dumps(["only-one"]), "1 ids for 2 items"),
        (orjson.dumps({"ids": ["a", "b"]}), "not a JSON array"),
        (orjson.dumps(["a", 2]), "not a JSON array"),
        (orjson.dumps(["a", ""]), "not a JSON array"),
        (orjson.dumps(["a", "a"]), "1 repeated ids"),
        (orjson.dumps(["a", "b", "c"]), "3 ids for 2 items"),
        (b"created!", "not JSON"),
        (b"", "not JSON"),
        (b"<html><body>Welcome to the proxy</body></html>", "not JSON"),
    ],
)
@pytest.mark.parametrize("status", [200, 201, 202, 204])
def test_a_bulk_answer_of_the_wrong_shape_is_unexpected_but_applied(
    make_client: MakeClient, body: bytes, problem: str, status: int
) -> None:
    api = Api(httpx.Response(status, content=body))
    with pytest.raises(UnexpectedResponseError, match=problem) as raised:
        make_client(api).bulk_create([{"text": "a"}, {"text": "b"}])
    assert raised.value.may_have_been_applied is True


@pytest.mark.parametrize("encoding", ["gzip", "deflate"])
def test_a_compressed_answer_is_read_like_any_other(make_client: MakeClient, encoding: str) -> None:
    compress = gzip.compress if encoding == "gzip" else zlib.compress
    project = {"id": PROJECT, "app_id": "app-1", "name": "p", "status": "READY"}
    api = Api(httpx.Response(200, content=compress(orjson.dumps(project)),
                             headers={"Content-Encoding": encoding}))  # fmt: skip
    assert make_client(api).get_project().app_id == "app-1"


class StreamedBody(httpx.SyncByteStream):
    """A body sent without Content-Length, counting what the client pulled."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.pulled = 0

    def __iter__(self) -> Iterator[bytes]:
        while self.pulled < self.size:
            self.pulled += 4096
            yield b"x" * 4096


@pytest.mark.parametrize(
    ("status", "error_type"),
    [(200, ResponseTooLargeError), (404, NotFoundError), (502, ServerError),
     (301, RedirectError), (400, ClientRequestError)],
)  # fmt: skip
@pytest.mark.parametrize("declared", [False, True])
def test_an_oversized_body_is_cut_and_the_status_decides_the_error(
    make_client: MakeClient, status: int, error_type: type[TolokaApiError], declared: bool
) -> None:
    body = StreamedBody(1024 * 1024)
    headers = {"Content-Length": str(body.size)} if declared else {}
    api = Api(httpx.Response(status, stream=body, headers=headers))
    with pytest.raises(TolokaApiError) as raised:
        make_client(api, max_response_bytes=64 * 1024).bulk_create([{"text": "a"}])
    assert type(raised.value) is error_type
    assert raised.value.status == status
    assert body.pulled <= 64 * 1024 + 4096, "read on past the limit"
    if isinstance(raised.value, ResponseTooLargeError):
        assert raised.value.head == b"x" * 64 * 1024  # what was read, for the caller to use


# --- errors --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "code", "error_type"),
    [
        (400, "VALIDATION_ERROR", ValidationFailedError),
        (400, "BAD_REQUEST", ClientRequestError),
        (401, "AUTHENTICATION_ERROR", AuthenticationError),
        (403, "ACCESS_DENIED", AuthenticationError),
        (404, "DOES_NOT_EXIST", NotFoundError),
        (409, "CONFLICT_STATE", ClientRequestError),
        (413, "TOO_MANY_ITEMS", PayloadTooLargeError),
        (415, "UNSUPPORTED_MEDIA_TYPE", ClientRequestError),
        (429, "TOO_MANY_REQUESTS", RateLimitedError),
        (408, "REQUEST_TIMEOUT", ServerError),
        (500, "INTERNAL_ERROR", ServerError),
        (502, "BAD_GATEWAY", ServerError),
        (503, "REMOTE_SERVICE_UNAVAILABLE", ServerError),
        (504, "GATEWAY_TIMEOUT", ServerError),
        (101, "SWITCHING", UnexpectedResponseError),
        (199, "ODD", UnexpectedResponseError),
        (600, "ODD", UnexpectedResponseError),
    ],
)
def test_statuses_map_onto_the_error_tree(
    make_client: MakeClient, status: int, code: str, error_type: type[TolokaApiError]
) -> None:
    api = Api(json_response(status, error_body(code)))
    with pytest.raises(TolokaApiError) as raised:
        make_client(api).get_project()
    error = raised.value
    assert type(error) is error_type
    assert (error.status, error.code, error.request_id) == (status, code, "req-42")
    assert error.operation == "get_project"
    assert f"{code} happened" in str(error)


@pytest.mark.parametrize(
    ("location", "shown"),
    [
        (f"https://login.example/sso?next=/x&key={API_KEY}", "https://login.example/sso,"),
        ("/api/app/v1/app-projects/proj-1", "https://toloka.test/api/app/v1/app-projects/proj-1,"),
        (None, "nowhere (no Location header)"),
    ],
)
def test_a_redirect_says_where_it_pointed_without_query_or_key(
    make_client: MakeClient, location: str | None, shown: str
) -> None:
    headers = {"Location": location} if location else {}
    api = Api(httpx.Response(302, headers=headers, text=f"<a href='{location}'>moved</a>"))
    with pytest.raises(RedirectError) as raised:
        make_client(api).get_project()
    message = str(raised.value)
    assert f"redirected to {shown}" in message
    assert "TOLOKA_BASE_URL" in message
    assert API_KEY not in message
    assert "next=" not in message
    assert len(api.requests) == 1


@pytest.mark.parametrize(("status", "applied"), [(301, False), (302, False), (303, True),
                                                 (307, False), (308, False)])  # fmt: skip
def test_only_a_see_other_redirect_may_have_created_the_items(
    make_client: MakeClient, status: int, applied: bool
) -> None:
    api = Api(httpx.Response(status, headers={"Location": "https://elsewhere.test/"}))
    with pytest.raises(RedirectError) as raised:
        make_client(api).bulk_create([{"text": "a"}])
    assert raised.value.may_have_been_applied is applied


def test_validation_errors_carry_the_per_item_field_map(make_client: MakeClient) -> None:
    payload = {
        "input_data.0.image_url": {"code": "VALUE_REQUIRED", "message": "required"},
        "input_data.2.image_url": {"code": "INVALID_URL_SYNTAX", "message": "bad url"},
    }
    api = Api(json_response(400, error_body("VALIDATION_ERROR", payload=payload)))
    with pytest.raises(ValidationFailedError) as raised:
        make_client(api).bulk_create([{"image_url": ""}, {"image_url": "ok"}, {"image_url": "x"}])
    assert raised.value.payload == payload
    assert raised.value.may_have_been_applied is False


def test_an_html_gateway_page_gives_a_short_readable_message(make_client: MakeClient) -> None:
    page = (
        "<html>\n<head><title>502 Bad Gateway</title></head>\n<body>\n"
        + "<center><h1>502 Bad Gateway</h1></center>\n" * 200
        + "</body></html>"
    )
    api = Api(httpx.Response(502, text=page, headers={"Content-Type": "text/html"}))
    with pytest.raises(ServerError) as raised:
        make_client(api).get_project()
    message = str(raised.value)
    assert "502 Bad Gateway" in message
    assert "\n" not in message
    assert len(message) < 300
    assert raised.value.request_id is None


@pytest.mark.parametrize("body", [b"", b"\xff\xfe not utf-8", b'["a list"]', b'{"payload": 5}'])
def test_odd_error_bodies_never_crash_the_mapping(make_client: MakeClient, body: bytes) -> None:
    api = Api(httpx.Response(500, content=body))
    with pytest.raises(ServerError) as raised:
        make_client(api).get_project()
    assert raised.value.status == 500
    assert str(raised.value)


@pytest.mark.parametrize(
    ("failure", "cause"),
    [
        (httpx.ConnectError("refused"), "transport_error"),
        (httpx.ReadTimeout("slow"), "timeout"),
        (httpx.RemoteProtocolError("Server disconnected"), "transport_error"),
    ],
)
def test_transport_failures_are_transport_errors(
    make_client: MakeClient, metrics: Metrics, failure: Exception, cause: str
) -> None:
    api = Api(failure, json_response(200, {"id": PROJECT, "app_id": "a"}))
    client = make_client(api, retry=RetryPolicy(max_attempts=2))
    client.get_project()
    assert retries(metrics, "get_project", cause) == 1

    with pytest.raises(TransportError) as raised:
        make_client(Api(failure)).get_project()
    assert raised.value.status is None
    assert type(failure).__name__ in str(raised.value)


# --- retries -------------------------------------------------------------------------------------


def test_retry_after_seconds_is_honoured(make_client: MakeClient, clock: FakeClock) -> None:
    api = Api(
        json_response(429, error_body("TOO_MANY_REQUESTS"), {"Retry-After": "7"}),
        json_response(200, ["id-1"]),
    )
    client = make_client(api, retry=RetryPolicy(max_attempts=3, max_delay_seconds=60))
    assert client.bulk_create([{"text": "a"}]).ids == ["id-1"]
    assert clock.waits == [7.0]


def test_retry_after_http_date_is_honoured(make_client: MakeClient, clock: FakeClock) -> None:
    header = email.utils.formatdate(WALL_START + 12, usegmt=True)
    api = Api(
        json_response(503, error_body("REMOTE_SERVICE_UNAVAILABLE"), {"Retry-After": header}),
        json_response(200, {"id": PROJECT, "app_id": "a"}),
    )
    client = make_client(api, retry=RetryPolicy(max_attempts=3, max_delay_seconds=60))
    client.get_project()
    assert clock.waits == [pytest.approx(12.0)]


def test_retry_after_is_capped_by_the_policy(make_client: MakeClient, clock: FakeClock) -> None:
    api = Api(
        json_response(429, error_body("TOO_MANY_REQUESTS"), {"Retry-After": "3600"}),
        json_response(200, ["id-1"]),
    )
    client = make_client(api, retry=RetryPolicy(max_attempts=2, max_delay_seconds=20))
    client.bulk_create([{"text": "a"}])
    assert clock.waits == [20.0]


def test_backoff_without_retry_after_is_jittered_inside_the_envelope(
    make_client: MakeClient, clock: FakeClock
) -> None:
    policy = RetryPolicy(max_attempts=None, base_delay_seconds=1.0, max_delay_seconds=8.0)
    busy = json_response(503, error_body("REMOTE_SERVICE_UNAVAILABLE"))
    api = Api(*[busy] * 30, json_response(200, {"id": PROJECT, "app_id": "a"}))
    make_client(api, retry=policy).get_project()

    assert len(clock.waits) == 30
    for retry_number, delay in enumerate(clock.waits, start=1):
        assert 0.0 <= delay <= policy.backoff_envelope(retry_number)
    late = clock.waits[5:]  # envelope already at the cap
    assert len(set(late)) == len(late), "delays must be random, not the envelope itself"


def test_an_exhausted_budget_raises_the_last_error(make_client: MakeClient) -> None:
    failures = [error_body("INTERNAL_ERROR") | {"request_id": f"r{n}"} for n in range(1, 6)]
    api = Api(*[json_response(500, body) for body in failures])
    client = make_client(api, retry=RetryPolicy(max_attempts=3))
    with pytest.raises(ServerError) as raised:
        client.get_project()
    assert len(api.requests) == 3
    assert raised.value.request_id == "r3"


def test_fatal_errors_are_not_retried(make_client: MakeClient, clock: FakeClock) -> None:
    api = Api(json_response(404, error_body("DOES_NOT_EXIST")))
    with pytest.raises(NotFoundError):
        make_client(api, retry=RetryPolicy(max_attempts=5)).get_project()
    assert len(api.requests) == 1
    assert clock.waits == []


def test_stop_retrying_ends_an_unbounded_retry(make_client: MakeClient, clock: FakeClock) -> None:
    api = Api(json_response(503, error_body("REMOTE_SERVICE_UNAVAILABLE")))
    client = make_client(api, retry=RetryPolicy(max_attempts=None))
    clock.on_wait = lambda: client.stop_retrying() if len(clock.waits) == 3 else None
    with pytest.raises(ServerError):
        client.get_project()
    assert len(api.requests) == 3


# --- possibly applied POSTs ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("failure", "applied"),
    [
        (httpx.ReadTimeout("no answer"), True),
        (httpx.ReadError("connection reset by peer"), True),
        (httpx.RemoteProtocolError("Server disconnected without sending a response"), True),
        (httpx.ConnectError("refused"), False),
        (httpx.ConnectTimeout("no route"), False),
        (httpx.PoolTimeout("pool busy"), False),
        (httpx.WriteTimeout("stalled upload"), False),
    ],
)
def test_a_post_without_an_answer_is_flagged_when_it_may_have_arrived(
    make_client: MakeClient, failure: Exception, applied: bool
) -> None:
    with pytest.raises(TransportError) as raised:
        make_client(Api(failure)).bulk_create([{"text": "a"}])
    assert raised.value.may_have_been_applied is applied


@pytest.mark.parametrize(
    ("status", "applied"),
    [(500, True), (502, True), (504, True), (503, False), (408, False), (429, False)],
)
def test_a_post_answered_by_a_5xx_is_flagged_unless_it_was_refused(
    make_client: MakeClient, status: int, applied: bool
) -> None:
    with pytest.raises(TolokaApiError) as raised:
        make_client(Api(httpx.Response(status, text="oops"))).bulk_create([{"text": "a"}])
    assert raised.value.may_have_been_applied is applied


def test_gets_are_never_flagged(make_client: MakeClient) -> None:
    with pytest.raises(TransportError) as raised:
        make_client(Api(httpx.ReadTimeout("no answer"))).get_project()
    assert raised.value.may_have_been_applied is False


def test_a_successful_bulk_counts_the_attempts_that_may_have_duplicated(
    make_client: MakeClient,
) -> None:
    api = Api(
        httpx.ReadTimeout("no answer"),
        httpx.Response(502, text="<html>502 Bad Gateway</html>"),
        httpx.Response(503, text="busy"),
        httpx.ConnectError("refused"),
        json_response(200, ["id-1"]),
    )
    result = make_client(api, retry=RetryPolicy(max_attempts=None)).bulk_create([{"text": "a"}])
    assert result.ids == ["id-1"]
    assert result.possibly_duplicated_attempts == 2  # the timeout and the 502


def test_a_final_error_is_flagged_when_an_earlier_attempt_may_have_applied(
    make_client: MakeClient,
) -> None:
    api = Api(httpx.ReadTimeout("no answer"), httpx.Response(503, text="busy"))
    client = make_client(api, retry=RetryPolicy(max_attempts=2))
    with pytest.raises(ServerError) as raised:
        client.bulk_create([{"text": "a"}])
    assert raised.value.status == 503
    assert raised.value.may_have_been_applied is True


@pytest.mark.parametrize(
    "ambiguous",
    [httpx.ReadTimeout("no answer"), httpx.Response(502, text="<html>502</html>"),
     httpx.Response(500, text="oops")],
)  # fmt: skip
def test_an_ambiguous_bulk_attempt_is_raised_at_once_when_the_caller_reconciles(
    make_client: MakeClient, ambiguous: httpx.Response | Exception
) -> None:
    api = Api(httpx.Response(503, text="busy"), ambiguous, json_response(200, ["id-1"]))
    client = make_client(api, retry=RetryPolicy(max_attempts=None))
    body = b'{"items":[{"text":"a"}]}'
    with pytest.raises((ServerError, TransportError)) as raised:
        client.bulk_create_raw(body, 1, retry_ambiguous=False)
    assert raised.value.may_have_been_applied is True
    assert len(api.requests) == 2  # the 503 was not applied: retried; the ambiguous one not
    assert client.bulk_create_raw(body, 1, retry_ambiguous=False).ids == ["id-1"]


# --- metrics and logs ----------------------------------------------------------------------------


def test_each_attempt_is_timed_by_status_class(
    make_client: MakeClient, metrics: Metrics, clock: FakeClock
) -> None:
    api = Api(
        httpx.ConnectError("refused"),
        httpx.Response(503, text="busy"),
        json_response(404, error_body("DOES_NOT_EXIST")),
    )
    api.on_request = lambda: clock.advance(0.25)
    with pytest.raises(NotFoundError):
        make_client(api, retry=RetryPolicy(max_attempts=5)).get_item("x")

    for status_class in ("transport_error", "5xx", "4xx"):
        labels = {"operation": "get_item", "status_class": status_class}
        assert sample(metrics, "api_request_duration_seconds_count", labels) == 1
        assert sample(metrics, "api_request_duration_seconds_sum", labels) == pytest.approx(0.25)
    labels = {"operation": "get_item", "status_class": "2xx"}
    assert sample(metrics, "api_request_duration_seconds_count", labels) == 0


def test_retries_are_counted_by_cause(make_client: MakeClient, metrics: Metrics) -> None:
    api = Api(
        httpx.Response(429, text="slow down"),
        httpx.Response(503, text="busy"),
        httpx.Response(408, text="too slow"),
        httpx.ReadTimeout("no answer"),
        httpx.ConnectError("refused"),
        httpx.Response(502, text="bad gateway"),
        json_response(200, ["id-1"]),
    )
    make_client(api, retry=RetryPolicy(max_attempts=None)).bulk_create([{"text": "a"}])
    assert retries(metrics, "bulk_create", "rate_limited") == 1
    assert retries(metrics, "bulk_create", "server_error") == 2
    assert retries(metrics, "bulk_create", "timeout") == 2
    assert retries(metrics, "bulk_create", "transport_error") == 1


def test_api_up_and_one_log_line_per_outage_change(
    make_client: MakeClient, metrics: Metrics, caplog: pytest.LogCaptureFixture
) -> None:
    api = Api(
        httpx.ConnectError("refused"),
        httpx.Response(500, text="oops"),
        json_response(404, error_body("DOES_NOT_EXIST")),
    )
    client = make_client(api)
    caplog.set_level(logging.INFO)
    with pytest.raises(TransportError):
        client.get_project()
    assert sample(metrics, "api_up", {}) == 0
    with pytest.raises(ServerError):
        client.get_project()
    assert sample(metrics, "api_up", {}) == 0
    with pytest.raises(NotFoundError):
        client.get_project()  # an answer below 500: the API is back, even if it says no
    assert sample(metrics, "api_up", {}) == 1
    changes = [r.getMessage() for r in caplog.records if getattr(r, "event", "") == "state_change"]
    assert len(changes) == 2
    assert changes[0].startswith("toloka-api: up -> down (outage began: get_project")
    assert changes[1].startswith("toloka-api: down -> up (outage ended after")


def test_works_without_metrics(make_client: MakeClient) -> None:
    api = Api(httpx.Response(503, text="busy"), json_response(200, ["id-1"]))
    client = make_client(api, metrics=None, retry=RetryPolicy(max_attempts=2))
    assert client.bulk_create([{"text": "a"}]).ids == ["id-1"]


def test_each_retry_is_logged_with_operation_cause_attempt_and_delay(
    make_client: MakeClient, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    api = Api(
        json_response(429, error_body("TOO_MANY_REQUESTS"), {"Retry-After": "4"}),
        json_response(200, ["id-1"]),
    )
    with caplog.at_level(logging.INFO, logger="connector"):
        make_client(api, retry=RetryPolicy(max_attempts=2)).bulk_create([{"text": "hush"}])
    (record,) = [r for r in caplog.records if r.levelno >= logging.INFO]
    assert record.levelno == logging.WARNING
    message = record.getMessage()
    for part in ("bulk_create", "rate_limited", "attempt 1", "4.00s"):
        assert part in message
    assert "hush" not in message


# --- the key never leaks -------------------------------------------------------------------------


def test_the_api_key_never_leaks(make_client: MakeClient, caplog: pytest.LogCaptureFixture) -> None:
    echo = f"<html>bad header Authorization: ApiKey {API_KEY}</html>"
    answers: list[httpx.Response | Exception] = [
        httpx.Response(status, text=echo) for status in (400, 401, 404, 413, 429, 500, 502, 302)
    ]
    answers += [
        json_response(401, {"code": "AUTHENTICATION_ERROR", "message": f"bad key {API_KEY}"}),
        httpx.ReadTimeout(f"timed out sending ApiKey {API_KEY}"),
        httpx.ConnectError("refused"),
        httpx.Response(200, text=echo),
    ]
    seen: list[str] = []
    with caplog.at_level(logging.DEBUG):
        for answer in answers:
            api = Api(httpx.Response(503, text=echo), answer)
            client = make_client(api, retry=RetryPolicy(max_attempts=2))
            seen += [repr(client), str(client)]
            for call in (client.get_project, lambda c=client: c.bulk_create([{"t": 1}])):
                with pytest.raises(TolokaApiError) as raised:
                    call()
                seen += [str(raised.value), repr(raised.value), raised.value.message]
    seen += [record.getMessage() for record in caplog.records]
    assert len(seen) > 4 * len(answers)
    assert caplog.records, "the retries should have been logged"
    leaks = [text for text in seen if API_KEY in text]
    assert leaks == []
