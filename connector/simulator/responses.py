"""Response values and the API's error bodies."""

from __future__ import annotations

import functools
import uuid
from dataclasses import dataclass
from html import escape
from typing import Any

import orjson

JSON = "application/json"


@dataclass(slots=True)
class Response:
    status: int
    body: bytes = b""
    content_type: str = JSON
    headers: tuple[tuple[str, str], ...] = ()
    delay: float = 0.0
    """Seconds to wait before sending (latency knob)."""
    reset: bool = False
    """Reset the connection instead of answering."""


def json_response(value: Any, status: int = 200) -> Response:
    return Response(status, orjson.dumps(value))


def api_error(
    status: int,
    code: str,
    message: str,
    payload: dict[str, Any] | None = None,
    headers: tuple[tuple[str, str], ...] = (),
) -> Response:
    """`{"request_id", "code", "message", "payload"?}` as the API sends it."""
    body: dict[str, Any] = {"request_id": str(uuid.uuid4()), "code": code, "message": message}
    if payload is not None:
        body["payload"] = payload
    return Response(status, orjson.dumps(body), headers=headers)


def field_errors(problems: dict[str, tuple[str, str]]) -> dict[str, Any]:
    """A VALIDATION_ERROR payload: `{"<key>": {"code": …, "message": …}}`."""
    return {key: {"code": code, "message": message} for key, (code, message) in problems.items()}


BAD_GATEWAY_HTML = (
    b"<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n"
    b"<center><h1>502 Bad Gateway</h1></center>\r\n<hr><center>nginx</center>\r\n"
    b"</body>\r\n</html>\r\n"
)


def redirect_page(location: str) -> bytes:
    """The small HTML body proxies send with a redirect."""
    return f'<html><body>Moved: <a href="{escape(location)}">here</a></body></html>'.encode()


@functools.lru_cache(maxsize=4)
def oversized_page(status: int, size: int) -> bytes:
    """An HTML page of exactly `size` bytes (as far as `size` allows), like a proxy's error or
    login page padded with inline assets; built once per (status, size)."""
    head = f"<html><head><title>{status}</title></head><body><h1>{status}</h1><!--".encode()
    tail = b"--></body></html>\r\n"
    filler = max(size - len(head) - len(tail), 0)
    return (head + b"x" * filler + tail)[:size]
