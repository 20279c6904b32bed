"""Turning what came back from the Apps API (a response or a transport failure) into either a
decoded body or an error of the tree in `connector.errors`.

Bodies are untrusted: error pages from gateways are HTML, success bodies may have a shape the API
does not document. Whatever ends up in an error message is a short excerpt with the API key
masked, never a whole body (bulk bodies carry the users' item data).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import httpx
import orjson
from pydantic import BaseModel, ValidationError

from connector.errors import (
    AuthenticationError,
    ClientRequestError,
    ItemFormatError,
    NotFoundError,
    PayloadTooLargeError,
    RateLimitedError,
    RedirectError,
    RetryableApiError,
    ServerError,
    TolokaApiError,
    TransportError,
    UnexpectedResponseError,
    ValidationFailedError,
)
from connector.toloka.models import ApiErrorBody
from connector.toloka.retry import parse_retry_after

ModelT = TypeVar("ModelT", bound=BaseModel)
WireT = TypeVar("WireT")

EXCERPT_CHARS = 200

_NOT_SENT = (
    httpx.ConnectError,
    httpx.ConnectTimeout,
    httpx.PoolTimeout,
    # A failed write leaves the body incomplete, so the server cannot have acted on it.
    httpx.WriteError,
    httpx.WriteTimeout,
    httpx.LocalProtocolError,
    httpx.UnsupportedProtocol,
)
"""Transport failures that happen before a complete request reached the server. Any other failure
(read timeout, connection reset while waiting, a garbled response) may follow a request the
server carried out."""


def excerpt(text: str, secret: str) -> str:
    """At most EXCERPT_CHARS of `text` on one line, with `secret` masked."""
    one_line = " ".join(text.split())
    if secret:
        one_line = one_line.replace(secret, "***")
    if len(one_line) > EXCERPT_CHARS:
        return one_line[:EXCERPT_CHARS] + "…"
    return one_line


def masked(value: Any, secret: str) -> Any:
    """`value` (a decoded JSON value) with `secret` masked in every string, at any depth: error
    payloads end up in logs and dead-letter headers, and a server may echo the key."""
    if not secret:
        return value
    if isinstance(value, str):
        return value.replace(secret, "***")
    if isinstance(value, dict):
        return {masked(k, secret): masked(v, secret) for k, v in value.items()}
    if isinstance(value, list):
        return [masked(item, secret) for item in value]
    return value


def status_class(status: int) -> str:
    return f"{status // 100}xx"


def retry_cause(error: RetryableApiError) -> str:
    """The `cause` label of a retry: a timeout (on our side, or a 408 from the server) is told
    apart from other transport failures and other server errors."""
    if isinstance(error, RateLimitedError):
        return "rate_limited"
    if error.status == 408 or isinstance(error.__cause__, httpx.TimeoutException):
        return "timeout"
    if isinstance(error, TransportError):
        return "transport_error"
    return "server_error"


def error_for_transport_failure(
    failure: httpx.RequestError, *, operation: str, idempotent: bool, secret: str
) -> TransportError:
    """The error for a request that got no usable response (raise it `from failure`)."""
    detail = excerpt(str(failure), secret) or "no detail"
    return TransportError(
        f"{type(failure).__name__}: {detail}",
        operation=operation,
        may_have_been_applied=not idempotent and not isinstance(failure, _NOT_SENT),
    )


def error_for_status(
    response: httpx.Response,
    *,
    operation: str,
    idempotent: bool,
    now: float,
    secret: str,
    cut_at: int | None = None,
) -> TolokaApiError:
    """The error for a response whose status is not 2xx. The status alone decides the kind;
    `cut_at` says the body was larger than that many bytes and only its start was read (an
    error body is then neither parsed nor trusted, only quoted)."""
    status = response.status_code
    body = ApiErrorBody() if cut_at is not None else _error_body(response)
    if cut_at is not None:
        message = (
            f"{response.reason_phrase or 'no reason given'}, with a body larger than {cut_at} "
            f"bytes (CONNECTOR_API_MAX_RESPONSE_BYTES), not read"
        )
    elif body.message:
        message = excerpt(body.message, secret)
    else:
        message = _body_excerpt(response, secret)
    context: dict[str, Any] = {
        "status": status,
        "code": body.code,
        "request_id": body.request_id,
        "payload": masked(body.payload, secret),
        "operation": operation,
    }
    if status == 429:
        retry_after = parse_retry_after(response.headers.get("Retry-After"), now)
        return RateLimitedError(message, retry_after=retry_after, **context)
    if 500 <= status < 600 or status == 408:
        retry_after = parse_retry_after(response.headers.get("Retry-After"), now)
        # A 5xx may come from a gateway that gave up after passing the request on; only 503
        # says the request was turned away. 408 means the server never got all of it.
        applied = not idempotent and status not in {408, 503}
        return ServerError(
            message, retry_after=retry_after, may_have_been_applied=applied, **context
        )
    if status == 400 and body.code == "VALIDATION_ERROR":
        return ValidationFailedError(message, **context)
    if status in {401, 403}:
        return AuthenticationError(message, **context)
    if status == 404:
        return NotFoundError(message, **context)
    if status == 413:
        return PayloadTooLargeError(message, **context)
    if 400 <= status < 500:
        return ClientRequestError(message, **context)
    if 300 <= status < 400:
        # The API documents no redirect. Only "303 See Other" says a request was carried out
        # (its result is elsewhere); every other one turns the request away.
        applied = not idempotent and status == 303
        return RedirectError(
            f"redirected to {_location(response, secret)}, which is never followed (the API key "
            f"would go along): check TOLOKA_BASE_URL",
            may_have_been_applied=applied,
            **context,
        )
    # 1xx as a final answer, or a status outside HTTP's range: nothing the API sends.
    return UnexpectedResponseError(message, may_have_been_applied=not idempotent, **context)


def _location(response: httpx.Response, secret: str) -> str:
    """Where a redirect points, without its query (which may carry tokens)."""
    location = response.headers.get("Location")
    if not location:
        return "nowhere (no Location header)"
    try:
        target = response.request.url.join(location)
    except (httpx.InvalidURL, RuntimeError):
        return "an unreadable Location"
    return excerpt(str(target.copy_with(query=None, fragment=None)), secret)


def decode_json(response: httpx.Response, *, operation: str, applied: bool, secret: str) -> Any:
    """The JSON value of a 2xx body. `applied` says whether the request took effect (a 2xx to a
    POST did), so that the caller knows even when the body is unreadable."""
    try:
        return orjson.loads(response.content)
    except orjson.JSONDecodeError:
        raise UnexpectedResponseError(
            f"body is not JSON: {_body_excerpt(response, secret)}",
            status=response.status_code,
            operation=operation,
            may_have_been_applied=applied,
        ) from None


def decode_model(
    model: type[ModelT], response: httpx.Response, *, operation: str, secret: str
) -> ModelT:
    """A 2xx body of a GET validated into `model` (which keeps unknown fields)."""
    data = decode_json(response, operation=operation, applied=False, secret=secret)
    try:
        return model.model_validate(data)
    except ValidationError as invalid:
        raise UnexpectedResponseError(
            f"body is not a valid {model.__name__}: {_summarise(invalid)}",
            status=response.status_code,
            operation=operation,
        ) from None


def decode_items(
    read: Callable[[Any], WireT], what: str, response: httpx.Response, *, operation: str,
    secret: str,
) -> WireT:  # fmt: skip
    """A 2xx body of a GET holding items, read by `read` (`Item.from_api`, `ItemPage.from_api`:
    plain objects, not models, see `connector.toloka.models.Item`)."""
    data = decode_json(response, operation=operation, applied=False, secret=secret)
    try:
        return read(data)
    except ItemFormatError as invalid:
        raise UnexpectedResponseError(
            f"body is not a valid {what}: {invalid}",
            status=response.status_code,
            operation=operation,
        ) from None


def _summarise(invalid: ValidationError) -> str:
    # pydantic's own str() quotes the offending input, which may be item data.
    errors = invalid.errors(include_input=False, include_url=False)
    first = errors[0]
    location = ".".join(str(part) for part in first["loc"]) or "body"
    more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    return f"{location}: {first['msg']}{more}"


def _error_body(response: httpx.Response) -> ApiErrorBody:
    try:
        return ApiErrorBody.model_validate(orjson.loads(response.content))
    except (orjson.JSONDecodeError, ValidationError):
        return ApiErrorBody()


def _body_excerpt(response: httpx.Response, secret: str) -> str:
    text = excerpt(response.content.decode("utf-8", errors="replace"), secret)
    return text or f"empty body ({response.reason_phrase or 'no reason given'})"
