"""A small HTTP/1.1 server on asyncio protocols: keep-alive, pipelining, `Expect: 100-continue`,
Content-Length bodies, one write per response (TCP_NODELAY set, so no delayed-ACK stalls).

Chunked request bodies are refused with 411 (clients that send JSON send a Content-Length).
The handler is synchronous; a response can ask to be delayed (latency) or to reset the
connection (fault injection), and responses on one connection always leave in request order.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass
from email.utils import formatdate
from http import HTTPStatus

from connector.simulator.responses import Response

logger = logging.getLogger(__name__)

MAX_HEAD_BYTES = 64 * 1024
MAX_BODY_BYTES = 256 * 1024 * 1024


@dataclass(slots=True)
class Request:
    method: str
    target: str
    headers: dict[str, str]  # names lower-cased
    body: bytes


Handler = Callable[[Request], Response]


class _ParsedHead:
    __slots__ = ("body_length", "head_length", "keep_alive", "request")

    def __init__(self, request: Request, head_length: int, body_length: int, keep_alive: bool):
        self.request = request
        self.head_length = head_length
        self.body_length = body_length
        self.keep_alive = keep_alive


class _BadRequestError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class _DateHeader:
    """`Date:` changes once a second; format it once a second."""

    def __init__(self) -> None:
        self._second = 0
        self._value = ""

    def value(self) -> str:
        second = int(time.time())
        if second != self._second:
            self._second, self._value = second, formatdate(second, usegmt=True)
        return self._value


_DATE = _DateHeader()
_REASONS = {status.value: status.phrase for status in HTTPStatus}


def encode_response(response: Response, keep_alive: bool) -> bytes:
    reason = _REASONS.get(response.status, "Unknown")
    extra = "".join(f"{name}: {value}\r\n" for name, value in response.headers)
    head = (
        f"HTTP/1.1 {response.status} {reason}\r\n"
        f"Date: {_DATE.value()}\r\nServer: toloka-simulator\r\n"
        f"Content-Type: {response.content_type}\r\nContent-Length: {len(response.body)}\r\n"
        f"{extra}Connection: {'keep-alive' if keep_alive else 'close'}\r\n\r\n"
    )
    return head.encode("latin-1") + response.body


class HttpProtocol(asyncio.Protocol):
    def __init__(self, handler: Handler) -> None:
        self._handler = handler
        self._transport: asyncio.Transport | None = None
        self._buffer = bytearray()
        self._head: _ParsedHead | None = None
        self._continue_sent = False
        self._waiting: asyncio.TimerHandle | None = None  # a delayed response is pending

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def connection_lost(self, exc: Exception | None) -> None:
        self._transport = None
        if self._waiting is not None:
            self._waiting.cancel()

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        if self._waiting is None:
            self._serve_buffered()

    def _serve_buffered(self) -> None:
        while self._transport is not None and self._waiting is None:
            try:
                head = self._read_request()
            except _BadRequestError as error:
                message = str(error).encode()
                self._send(Response(error.status, message, content_type="text/plain"), False)
                return
            if head is None:
                return
            try:
                response = self._handler(head.request)
            except Exception:  # a simulator bug: answer like a server would, keep serving
                logger.exception(
                    "simulator failed on %s %s", head.request.method, head.request.target
                )
                response = Response(500, b"internal simulator error", content_type="text/plain")
            if response.delay > 0:
                loop = asyncio.get_running_loop()
                self._waiting = loop.call_later(
                    response.delay, self._send_delayed, response, head.keep_alive
                )
                return
            self._send(response, head.keep_alive)

    def _send_delayed(self, response: Response, keep_alive: bool) -> None:
        self._waiting = None
        self._send(response, keep_alive)
        self._serve_buffered()

    def _send(self, response: Response, keep_alive: bool) -> None:
        transport = self._transport
        if transport is None:
            return
        if response.reset:
            sock = transport.get_extra_info("socket")
            if sock is not None:  # linger 0: close() sends RST instead of FIN
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            transport.abort()
            self._transport = None
            return
        transport.write(encode_response(response, keep_alive))
        if not keep_alive:
            transport.close()
            self._transport = None

    def _read_request(self) -> _ParsedHead | None:
        """The next complete request in the buffer, None while it is incomplete."""
        head = self._head
        if head is None:
            head = self._head = self._parse_head()
            if head is None:
                return None
        end = head.head_length + head.body_length
        if len(self._buffer) < end:
            if not self._continue_sent and head.request.headers.get("expect") == "100-continue":
                self._continue_sent = True
                assert self._transport is not None
                self._transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")
            return None
        head.request.body = bytes(self._buffer[head.head_length : end])
        del self._buffer[:end]
        self._head = None
        self._continue_sent = False
        return head

    def _parse_head(self) -> _ParsedHead | None:
        end = self._buffer.find(b"\r\n\r\n")
        if end < 0:
            if len(self._buffer) > MAX_HEAD_BYTES:
                raise _BadRequestError(431, "request head too large")
            return None
        lines = self._buffer[:end].decode("latin-1").split("\r\n")
        parts = lines[0].split(" ")
        if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
            raise _BadRequestError(400, "malformed request line")
        method, target, version = parts
        headers: dict[str, str] = {}
        for line in lines[1:]:
            name, colon, value = line.partition(":")
            if not colon:
                raise _BadRequestError(400, "malformed header line")
            headers[name.strip().lower()] = value.strip()
        if headers.get("transfer-encoding", "identity").lower() != "identity":
            raise _BadRequestError(411, "send the body with a Content-Length")
        try:
            length = int(headers.get("content-length", "0"))
        except ValueError:
            raise _BadRequestError(400, "malformed Content-Length") from None
        if not 0 <= length <= MAX_BODY_BYTES:
            raise _BadRequestError(413, "body too large")
        connection = headers.get("connection", "").lower()
        if version == "HTTP/1.0":
            keep_alive = "keep-alive" in connection
        else:
            keep_alive = "close" not in connection
        return _ParsedHead(Request(method, target, headers, b""), end + 4, length, keep_alive)


async def start_server(handler: Handler, host: str, port: int) -> asyncio.Server:
    loop = asyncio.get_running_loop()
    return await loop.create_server(
        lambda: HttpProtocol(handler), host, port, backlog=1024, reuse_address=True
    )
