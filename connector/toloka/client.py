"""Synchronous client of the Toloka Apps API for one app project.

Thread-safe: the uploader calls it from a thread pool, so all calls share one `httpx.Client`
whose connection pool is sized for the requests in flight, and every call keeps its retry state
on its own stack. Retryable failures (429, 408, 5xx, transport errors) are retried by the
`RetryPolicy`; everything else raises at once (see `connector.errors`).

The API key goes into the `Authorization` header and nowhere else: not into repr, logs or error
messages (error excerpts mask it in case a server echoes it).
"""

from __future__ import annotations

import logging
import random
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Self, TypeVar
from urllib.parse import quote

import httpx
import orjson
from pydantic import SecretStr

from connector import __version__
from connector.clock import Clock, SystemClock
from connector.errors import (
    ResponseTooLargeError,
    RetryableApiError,
    TolokaApiError,
    UnexpectedResponseError,
    UnreadablePageError,
)
from connector.metrics import Metrics
from connector.settings_groups import DEFAULT_MAX_RESPONSE_BYTES
from connector.toloka.availability import ApiAvailability
from connector.toloka.models import App, AppProject, Item, ItemPage
from connector.toloka.pacing import Pacing
from connector.toloka.responses import (
    ModelT,
    decode_items,
    decode_json,
    decode_model,
    error_for_status,
    error_for_transport_failure,
    retry_cause,
    status_class,
)
from connector.toloka.retry import SINGLE_ATTEMPT, RetryPolicy, call_with_retries

T = TypeVar("T")

logger = logging.getLogger(__name__)

_LISTING_PARAMETERS = frozenset({"sort", "after_id", "limit"})
_FRAMING_HEADERS = frozenset({"content-encoding", "content-length", "transfer-encoding"})


class _NotRepeated(Exception):  # noqa: N818 - a carrier, not an error of the tree
    """Carries an error out of the retry loop without a retry (see `bulk_create_raw`)."""

    def __init__(self, error: RetryableApiError) -> None:
        super().__init__(str(error))
        self.error = error


@dataclass(frozen=True)
class Timeouts:
    """Seconds allowed for each phase of one request (one attempt, not the whole retry)."""

    connect: float = 5.0
    read: float = 30.0
    write: float = 30.0
    pool: float = 30.0
    """Waiting for a free pooled connection when every one is busy."""


@dataclass(frozen=True)
class BulkCreateResult:
    ids: list[str]
    """The new item ids, in the order of the items in the request."""
    possibly_duplicated_attempts: int
    """Earlier attempts of this request whose outcome was lost (a timeout or reset after the
    request was sent, a 5xx from a gateway) before the one that succeeded. Each may have created
    the whole batch too: the uploader counts `possibly_duplicated_attempts * len(ids)` items as
    possible duplicates."""


class TolokaClient:
    """The Apps API calls the connector makes, for the app project `app_project_id`.

    `retry` applies to every call except `ping`; `RetryPolicy(max_attempts=None)` retries
    forever (with `stop_retrying` to end it at shutdown). `transport`, `clock` and `rng` are seams
    for tests.
    """

    def __init__(
        self,
        base_url: str,
        api_key: SecretStr,
        app_project_id: str,
        *,
        timeouts: Timeouts | None = None,
        retry: RetryPolicy | None = None,
        max_connections: int = 10,
        max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES,
        verify_tls: bool = True,
        transport: httpx.BaseTransport | None = None,
        metrics: Metrics | None = None,
        availability: ApiAvailability | None = None,
        clock: Clock | None = None,
        rng: random.Random | None = None,
        pacing: Pacing | None = None,
    ) -> None:
        url = httpx.URL(base_url)
        if url.scheme not in {"http", "https"} or not url.host:
            raise ValueError(f"base_url must be an http(s) URL, got {base_url!r}")
        if max_connections < 1:
            raise ValueError("max_connections must be at least 1")
        timeouts = timeouts or Timeouts()
        self._base_url = base_url
        self._app_project_id = app_project_id
        self._project_path = f"/app-projects/{quote(app_project_id, safe='')}"
        self._secret = api_key.get_secret_value()
        self._retry = retry or RetryPolicy()
        self._max_response_bytes = max_response_bytes
        self._metrics = metrics
        self._clock: Clock = clock or SystemClock()
        self._availability = availability or ApiAvailability(metrics, self._clock)
        self._rng = rng or random.Random()  # noqa: S311 - jitter, not cryptography
        self._stop_retrying = threading.Event()
        self._pacing = pacing
        self._http = httpx.Client(
            base_url=url,
            headers={
                "Authorization": f"ApiKey {self._secret}",
                "Accept": "application/json",
                "User-Agent": f"toloka-kafka-connector/{__version__}",
            },
            timeout=httpx.Timeout(
                connect=timeouts.connect,
                read=timeouts.read,
                write=timeouts.write,
                pool=timeouts.pool,
            ),
            limits=httpx.Limits(
                max_connections=max_connections, max_keepalive_connections=max_connections
            ),
            verify=verify_tls,
            transport=transport,
            follow_redirects=False,
        )

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(base_url={self._base_url!r}, "
            f"app_project_id={self._app_project_id!r})"
        )

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        """End waits between retries, then release the connections."""
        self.stop_retrying()
        self._http.close()

    def stop_retrying(self) -> None:
        """From now on, calls give up instead of waiting to retry (a wait in progress ends at
        once) and raise their last error. For shutdown under an unbounded policy."""
        self._stop_retrying.set()

    # --- the API ---------------------------------------------------------------------------

    def bulk_create(self, items: Sequence[Mapping[str, Any]]) -> BulkCreateResult:
        """Create `items` (objects following the app's `input_spec`) in one request."""
        body = orjson.dumps({"items": [dict(item) for item in items]})
        return self.bulk_create_raw(body, len(items))

    def bulk_create_raw(
        self, body: bytes, count: int, *, retry_ambiguous: bool = True
    ) -> BulkCreateResult:
        """Like `bulk_create` for a body the caller serialised already: the UTF-8 JSON object
        `{"items": [...]}` holding `count` items. With `retry_ambiguous` false, an attempt whose
        outcome is unknown (`may_have_been_applied`) is not repeated but raised at once, for the
        caller to find out what it created before sending anything again."""
        request = self._http.build_request(
            "POST",
            f"{self._project_path}/items/bulk",
            content=body,
            headers={"Content-Type": "application/json"},
        )

        def attempt() -> list[str]:
            try:
                response = self._exchange("bulk_create", request, idempotent=False)
            except RetryableApiError as error:
                if error.may_have_been_applied and not retry_ambiguous:
                    raise _NotRepeated(error) from error
                raise
            return self._created_ids(response, count)

        try:
            ids, ambiguous_attempts = self._call("bulk_create", attempt, self._retry)
        except _NotRepeated as stopped:
            raise stopped.error from None
        return BulkCreateResult(ids=ids, possibly_duplicated_attempts=ambiguous_attempts)

    def list_items(
        self,
        *,
        sort: str = "finished",
        after_id: str | None = None,
        limit: int = 100,
        filters: Mapping[str, str] | None = None,
    ) -> ItemPage:
        """One page of the project's items. `filters` holds further query parameters (`status`,
        `finished_gte`, …). Each item keeps the object the API sent in `Item.raw`."""
        params = dict(filters or {})
        clashing = _LISTING_PARAMETERS & params.keys()
        if clashing:
            raise ValueError(f"pass {sorted(clashing)} as arguments, not in filters")
        params["sort"] = sort
        params["limit"] = str(limit)
        if after_id is not None:
            params["after_id"] = after_id
        request = self._http.build_request("GET", f"{self._project_path}/items", params=params)

        def attempt() -> ItemPage:
            try:
                response = self._exchange("list_items", request, idempotent=True)
            except ResponseTooLargeError as error:
                if error.status is None or not 200 <= error.status < 300:
                    raise
                raise UnreadablePageError(
                    error.message, body=error.head, complete=False, status=error.status,
                    operation="list_items",
                ) from error  # fmt: skip
            try:
                return decode_items(
                    ItemPage.from_api, "ItemPage", response, operation="list_items",
                    secret=self._secret,
                )  # fmt: skip
            except UnexpectedResponseError as error:
                raise UnreadablePageError(
                    error.message, body=response.content, complete=True,
                    status=response.status_code, operation="list_items",
                ) from error  # fmt: skip

        page, _ = self._call("list_items", attempt, self._retry)
        if len(page.content) > limit:
            # Whoever answers does not follow the API: its pages cannot be trusted to page.
            raise UnexpectedResponseError(
                f"the listing returned {len(page.content)} items for limit={limit}",
                operation="list_items",
            )
        return page

    def get_item(self, item_id: str) -> Item:
        path = f"{self._project_path}/items/{quote(item_id, safe='')}"
        request = self._http.build_request("GET", path)

        def attempt() -> Item:
            response = self._exchange("get_item", request, idempotent=True)
            return decode_items(
                Item.from_api, "Item", response, operation="get_item", secret=self._secret
            )

        item, _ = self._call("get_item", attempt, self._retry)
        return item

    def get_project(self) -> AppProject:
        return self._get("get_project", self._project_path, AppProject)

    def get_app(self, app_id: str) -> App:
        return self._get("get_app", f"/apps/{quote(app_id, safe='')}", App)

    def ping(self) -> AppProject:
        """Cheap reachability probe for readiness: one `get_project` attempt, no retries, so a
        probe answers within the request timeouts."""
        return self._get("get_project", self._project_path, AppProject, policy=SINGLE_ATTEMPT)

    # --- plumbing --------------------------------------------------------------------------

    def _get(
        self,
        operation: str,
        path: str,
        model: type[ModelT],
        params: Mapping[str, str] | None = None,
        *,
        policy: RetryPolicy | None = None,
    ) -> ModelT:
        request = self._http.build_request("GET", path, params=params)

        def attempt() -> ModelT:
            response = self._exchange(operation, request, idempotent=True)
            return decode_model(model, response, operation=operation, secret=self._secret)

        result, _ = self._call(operation, attempt, policy or self._retry)
        return result

    def _call(self, operation: str, attempt: Callable[[], T], policy: RetryPolicy) -> tuple[T, int]:
        """Run `attempt` under `policy`; also return how many failed attempts may have taken
        effect. A final error is flagged `may_have_been_applied` if any attempt may have."""
        ambiguous_attempts = 0

        def before_retry(error: RetryableApiError, attempt_number: int, delay: float) -> None:
            nonlocal ambiguous_attempts
            if error.may_have_been_applied:
                ambiguous_attempts += 1
            cause = retry_cause(error)
            if self._metrics is not None:
                self._metrics.api_retries.labels(operation, cause).inc()
            # During an outage the availability tracker says so once when it begins and once
            # when it ends; a line per attempt (per request in flight) would flood the log.
            level = logging.WARNING if self._availability.up else logging.DEBUG
            logger.log(
                level, "Toloka API %s attempt %d failed (%s), retrying in %.2fs: %s",
                operation, attempt_number, cause, delay, error,
            )  # fmt: skip

        try:
            result = call_with_retries(
                attempt,
                policy=policy,
                clock=self._clock,
                rng=self._rng,
                stop=self._stop_retrying,
                on_retry=before_retry,
            )
        except TolokaApiError as error:
            if ambiguous_attempts:
                error.may_have_been_applied = True
            raise
        return result, ambiguous_attempts

    def _exchange(
        self, operation: str, request: httpx.Request, *, idempotent: bool
    ) -> httpx.Response:
        """One round trip: the 2xx response read whole, or the error it maps to. The status
        decides what the answer is; the body's size only decides whether it could be read.
        With `pacing`, the request waits while a 429's Retry-After runs (a stop ends the wait:
        a drain's first attempts still go) and its answer adapts the in-flight limit."""
        pacing = self._pacing
        generation = 0
        if pacing is not None:
            pacing.gate.wait(self._stop_retrying)
            generation = 0 if pacing.limit is None else pacing.limit.sent()
        started = self._clock.monotonic()
        try:
            response, complete = self._receive(request)
        except httpx.RequestError as failure:
            self._observe(operation, "transport_error", started, answered=False)
            raise error_for_transport_failure(
                failure, operation=operation, idempotent=idempotent, secret=self._secret
            ) from failure
        self._observe(operation, status_class(response.status_code), started, answered=True)
        logger.debug("%s %s -> %d", request.method, request.url.path, response.status_code)
        if not response.is_success:
            error = error_for_status(
                response,
                operation=operation,
                idempotent=idempotent,
                now=self._clock.time(),
                secret=self._secret,
                cut_at=None if complete else self._max_response_bytes,
            )
            if pacing is not None and response.status_code == 429:
                self._throttled(pacing, generation, error)
            raise error
        if pacing is not None and pacing.limit is not None:
            pacing.limit.succeeded()
        if not complete:
            raise ResponseTooLargeError(
                f"the response body is larger than {self._max_response_bytes} bytes "
                "(CONNECTOR_API_MAX_RESPONSE_BYTES)",
                head=response.content[: ResponseTooLargeError.HEAD_BYTES],
                status=response.status_code,
                operation=operation,
                may_have_been_applied=not idempotent,
            )
        return response

    def _throttled(self, pacing: Pacing, generation: int, error: TolokaApiError) -> None:
        """A 429: fewer requests in flight and, when it says for how long, none at all until
        its Retry-After ran out (capped like a retry's delay)."""
        if pacing.limit is not None:
            pacing.limit.throttled(generation)
        if isinstance(error, RetryableApiError) and error.retry_after is not None:
            pacing.gate.pause(min(error.retry_after, self._retry.max_delay_seconds))

    def _receive(self, request: httpx.Request) -> tuple[httpx.Response, bool]:
        """Send `request` and read at most `max_response_bytes` of the answer's (decoded) body,
        never more into memory; return the response and whether its body was read whole. Of a
        body declared larger than that, only the head is read (`ResponseTooLargeError.HEAD_BYTES`
        at most), for the error to quote."""
        limit = self._max_response_bytes
        streamed = self._http.send(request, stream=True)
        body = bytearray()
        try:
            declared = streamed.headers.get("Content-Length", "")
            complete = not (declared.isdigit() and int(declared) > limit)
            keep = limit if complete else min(limit, ResponseTooLargeError.HEAD_BYTES)
            for chunk in streamed.iter_bytes():
                body += chunk
                if len(body) > keep or (not complete and len(body) == keep):
                    complete = False
                    del body[keep:]
                    break
        finally:
            streamed.close()
        # The body is decoded already: the framing headers of the wire no longer describe it.
        headers = [
            (name, value)
            for name, value in streamed.headers.multi_items()
            if name.lower() not in _FRAMING_HEADERS
        ]
        response = httpx.Response(
            streamed.status_code, headers=headers, content=bytes(body), request=request
        )
        return response, complete

    def _observe(self, operation: str, label: str, started: float, *, answered: bool) -> None:
        self._availability.observe(answered and label != "5xx", operation, label)
        if self._metrics is None:
            return
        elapsed = self._clock.monotonic() - started
        self._metrics.api_request_duration.labels(operation, label).observe(elapsed)

    def _created_ids(self, response: httpx.Response, count: int) -> list[str]:
        """The ids of the created items. Only an answer listing one new id per item sent
        confirms the upload; any other 2xx may or may not have created them (flagged so)."""
        data = decode_json(response, operation="bulk_create", applied=True, secret=self._secret)
        # Whole-list checks in C (map, set): a per-id generator cost ~1 µs per item uploaded.
        if not isinstance(data, list) or set(map(type, data)) - {str} or "" in data:
            problem = "is not a JSON array of id strings"
        elif len(data) != count:
            problem = f"holds {len(data)} ids for {count} items"
        elif len(distinct := set(data)) != count:
            problem = f"holds {count - len(distinct)} repeated ids"
        else:
            return data
        raise UnexpectedResponseError(
            f"bulk create response {problem}",
            status=response.status_code,
            operation="bulk_create",
            may_have_been_applied=True,
        )
