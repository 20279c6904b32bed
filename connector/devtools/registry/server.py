"""The registry simulator's HTTP side: the registry's REST paths on a threaded stdlib server.

Paths served (the registry's public API): `GET /subjects`, `GET|DELETE /subjects/{s}`,
`POST /subjects/{s}` (look a schema up), `GET /subjects/{s}/versions`, `POST /subjects/{s}/versions`
(register), `GET /subjects/{s}/versions/{v|latest}`, `GET /subjects/{s}/versions/{v}/schema`,
`GET /schemas/ids/{id}`, `GET /schemas/ids/{id}/schema`, `GET|PUT /config`, `GET|PUT
/config/{s}`, `POST /compatibility/subjects/{s}/versions[/{v}]`, `GET /schemas/types`. Errors are
`{"error_code", "message"}` with the registry's codes. With `user_info` every request needs that
HTTP basic auth (401, 40101 otherwise); with a certificate it serves HTTPS.
"""

from __future__ import annotations

import base64
import contextlib
import hmac
import json
import socket
import ssl
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from connector.devtools.registry.store import RegistryError, RegistryState

CONTENT_TYPE = "application/vnd.schemaregistry.v1+json"


def _route(state: RegistryState, method: str, parts: list[str], body: Any) -> Any:
    match method, parts:
        case "GET", ["subjects"]:
            return state.subject_names()
        case "GET", ["schemas", "types"]:
            return ["AVRO", "JSON", "PROTOBUF"]
        case "GET", ["schemas", "ids", schema_id]:
            return state.schema(_number(schema_id)).body()
        case "GET", ["schemas", "ids", schema_id, "schema"]:
            return json.loads(state.schema(_number(schema_id)).text)
        case "GET", ["subjects", subject, "versions"]:
            return state.versions(subject)
        case "GET", ["subjects", subject, "versions", version]:
            return state.version(subject, version)
        case "GET", ["subjects", subject, "versions", version, "schema"]:
            return json.loads(state.version(subject, version)["schema"])
        case "POST", ["subjects", subject, "versions"]:
            return {"id": state.register(subject, _object(body))}
        case "POST", ["subjects", subject]:
            return state.lookup(subject, _object(body))
        case "DELETE", ["subjects", subject]:
            return state.delete(subject)
        case "GET", ["config"]:
            return {"compatibilityLevel": state.get_level(None)}
        case "GET", ["config", subject]:
            return {"compatibilityLevel": state.get_level(subject)}
        case "PUT", ["config"]:
            return {"compatibility": state.set_level(None, _object(body).get("compatibility"))}
        case "PUT", ["config", subject]:
            level = state.set_level(subject, _object(body).get("compatibility"))
            return {"compatibility": level}
        case "POST", ["compatibility", "subjects", subject, "versions"]:
            return {"is_compatible": state.test_compatibility(subject, None, _object(body))}
        case "POST", ["compatibility", "subjects", subject, "versions", version]:
            return {"is_compatible": state.test_compatibility(subject, version, _object(body))}
    raise RegistryError(404, 404, "HTTP 404 Not Found")


def _number(text: str) -> int:
    if not text.isdigit():
        raise RegistryError(404, 40403, "Schema not found")
    return int(text)


def _object(body: Any) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise RegistryError(422, 42201, "Invalid schema: the body is not a JSON object")
    return body


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        return  # quiet: tests read the state, not the access log

    def do_GET(self) -> None:
        self._serve("GET")

    def do_POST(self) -> None:
        self._serve("POST")

    def do_PUT(self) -> None:
        self._serve("PUT")

    def do_DELETE(self) -> None:
        self._serve("DELETE")

    def _serve(self, method: str) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        self.server.requests.append(f"{method} {urlsplit(self.path).path}")
        try:
            if self.server.unavailable:
                raise RegistryError(503, 50301, "Service Unavailable")
            if not self._authorized():
                raise RegistryError(401, 40101, "Unauthorized")
            body = json.loads(raw) if raw else None
            parts = [unquote(p) for p in urlsplit(self.path).path.split("/") if p]
            status, answer = 200, _route(self.server.state, method, parts, body)
        except RegistryError as error:
            status, answer = (
                error.status,
                {"error_code": error.error_code, "message": error.message},
            )
        except json.JSONDecodeError:
            status, answer = 400, {"error_code": 400, "message": "the body is not JSON"}
        data = json.dumps(answer).encode()
        self.send_response(status)
        self.send_header("Content-Type", CONTENT_TYPE)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _authorized(self) -> bool:
        expected = self.server.user_info
        if expected is None:
            return True
        given = self.headers.get("Authorization", "")
        wanted = "Basic " + base64.b64encode(expected.encode()).decode()
        return hmac.compare_digest(given.encode(), wanted.encode())


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], state: RegistryState, user_info: str | None):
        super().__init__(address, _Handler)
        self.state = state
        self.user_info = user_info
        self.requests: list[str] = []
        """`METHOD /path` of every request served, for tests that count round trips."""
        self.unavailable = False
        """Answer every request 503, as a registry that is restarting behind its balancer."""
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._connections_lock:
            self._connections.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self._connections_lock:
            self._connections.discard(request)
        super().shutdown_request(request)

    def drop_connections(self) -> None:
        """Close the open client connections, as a registry's restart does (a kept-alive
        connection would otherwise go on being served after `shutdown`)."""
        with self._connections_lock:
            open_now = list(self._connections)
        for connection in open_now:
            with contextlib.suppress(OSError):  # closed by its client meanwhile
                connection.shutdown(socket.SHUT_RDWR)


class RegistrySimulator:
    """The simulator on a free loopback port, served from a thread of its own until `stop`."""

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        user_info: str | None = None,
        certificate: tuple[Path, Path] | None = None,
        state: RegistryState | None = None,
    ) -> None:
        """`user_info` ("user:password") requires basic auth; `certificate` (PEM certificate
        and key files) serves HTTPS; `state`: the schemas of a simulator stopped before (a
        registry restarted on its storage), else none."""
        self.state = state or RegistryState()
        self._server = _Server((host, port), self.state, user_info)
        scheme = "http"
        if certificate is not None:
            context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            context.load_cert_chain(str(certificate[0]), str(certificate[1]))
            self._server.socket = context.wrap_socket(self._server.socket, server_side=True)
            scheme = "https"
        bound_host, bound_port = self._server.server_address[:2]
        self.url = f"{scheme}://{bound_host!s}:{bound_port}"
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="registry-simulator", daemon=True
        )

    @property
    def requests(self) -> list[str]:
        return self._server.requests

    @property
    def unavailable(self) -> bool:
        """While True every request is answered 503 (an outage)."""
        return self._server.unavailable

    @unavailable.setter
    def unavailable(self, value: bool) -> None:
        self._server.unavailable = value

    def start(self) -> RegistrySimulator:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._server.drop_connections()
        self._thread.join()

    def __enter__(self) -> RegistrySimulator:
        return self.start()

    def __exit__(self, *_exc: object) -> None:
        self.stop()
