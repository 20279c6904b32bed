"""The real TolokaClient against the simulator over TCP, when something that is not the API
answers: a redirect, or an error page larger than CONNECTOR_API_MAX_RESPONSE_BYTES.

A response is classified by its status first: only a 2xx is a success, and only when its whole
body is read and has the documented shape. A redirect is an error of its own (never followed:
the API key would go along); an oversized 4xx/5xx is the error its status names (a 502 is
retried like any 502); an oversized 2xx is an unusable success, flagged as possibly applied for
a POST.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest
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
    UnreadablePageError,
)
from connector.toloka.client import TolokaClient
from connector.toloka.retry import RetryPolicy
from tests.fixtures.simulator import SimulatorHandle

pytestmark = pytest.mark.integration

MAX_RESPONSE_BYTES = 64 * 1024
PAGE_BYTES = 4 * 1024 * 1024
ATTEMPTS = 3

Operation = Callable[[TolokaClient], Any]
OPERATIONS: dict[str, Operation] = {
    "bulk_create": lambda client: client.bulk_create([{"id": "a", "text": "x"},
                                                      {"id": "b", "text": "y"}]),
    "list_items": lambda client: client.list_items(limit=10),
    "get_project": lambda client: client.get_project(),
}  # fmt: skip


class Listener:
    """A TCP port that records every connection made to it: where redirects point, so that a
    client following one would be seen."""

    def __init__(self) -> None:
        self._socket = socket.create_server(("127.0.0.1", 0))
        self._socket.settimeout(0.1)
        self.port = self._socket.getsockname()[1]
        self.connections = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                connection, _ = self._socket.accept()
            except TimeoutError:
                continue
            self.connections += 1
            connection.close()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self._socket.close()


@pytest.fixture
def listener() -> Iterator[Listener]:
    opened = Listener()
    yield opened
    opened.close()


@pytest.fixture
def client(simulator: SimulatorHandle) -> Iterator[TolokaClient]:
    retry = RetryPolicy(max_attempts=ATTEMPTS, base_delay_seconds=0.01, max_delay_seconds=0.01)
    with TolokaClient(
        simulator.base_url,
        SecretStr(simulator.api_key),
        simulator.project_id,
        retry=retry,
        max_response_bytes=MAX_RESPONSE_BYTES,
    ) as opened:
        yield opened


def api_requests(simulator: SimulatorHandle) -> int:
    return sum(simulator.stats()["requests_by_status"].values())


@pytest.mark.parametrize("operation", OPERATIONS)
@pytest.mark.parametrize("status", [300, 301, 302, 303, 304, 305, 307, 308])
def test_a_redirect_is_never_a_success_and_never_followed(
    simulator: SimulatorHandle,
    client: TolokaClient,
    listener: Listener,
    operation: str,
    status: int,
) -> None:
    simulator.set_knobs(redirect_ratio=1.0, redirect_status=status,
                        redirect_location=f"http://127.0.0.1:{listener.port}")  # fmt: skip
    with pytest.raises(RedirectError) as raised:
        OPERATIONS[operation](client)
    error = raised.value
    assert error.status == status
    assert error.operation == operation
    assert f"127.0.0.1:{listener.port}" in str(error)  # where it pointed
    assert "TOLOKA_BASE_URL" in str(error)
    assert simulator.api_key not in str(error)
    # Only a 303 ("see other": the request was handled) to a POST may have created the items.
    assert error.may_have_been_applied is (operation == "bulk_create" and status == 303)
    assert api_requests(simulator) == 1, "a redirect is not retried: the same one would come"
    assert listener.connections == 0, "the redirect was followed, with the API key"
    assert simulator.stats()["items_created"] == 0


ERROR_PAGE_CLASSES: dict[int, type[TolokaApiError]] = {
    400: ClientRequestError,
    401: AuthenticationError,
    403: AuthenticationError,
    404: NotFoundError,
    413: PayloadTooLargeError,
    429: RateLimitedError,
    500: ServerError,
    502: ServerError,
    503: ServerError,
    504: ServerError,
}


@pytest.mark.parametrize("operation", OPERATIONS)
@pytest.mark.parametrize("status", sorted(ERROR_PAGE_CLASSES))
def test_an_oversized_error_page_is_the_error_its_status_names(
    simulator: SimulatorHandle, client: TolokaClient, operation: str, status: int
) -> None:
    simulator.set_knobs(oversized_page_ratio=1.0, oversized_page_status=status,
                        oversized_page_bytes=PAGE_BYTES)  # fmt: skip
    with pytest.raises(TolokaApiError) as raised:
        OPERATIONS[operation](client)
    error = raised.value
    assert type(error) is ERROR_PAGE_CLASSES[status]
    assert error.status == status
    assert f"larger than {MAX_RESPONSE_BYTES}" in str(error)
    assert len(str(error)) < 400
    retried = isinstance(error, ServerError | RateLimitedError)
    assert api_requests(simulator) == (ATTEMPTS if retried else 1)
    assert simulator.stats()["items_created"] == 0


@pytest.mark.parametrize("operation", OPERATIONS)
def test_an_oversized_success_is_unusable_and_flagged_when_it_may_have_created_items(
    simulator: SimulatorHandle, client: TolokaClient, operation: str
) -> None:
    simulator.set_knobs(oversized_page_ratio=1.0, oversized_page_status=200,
                        oversized_page_bytes=PAGE_BYTES)  # fmt: skip
    # The listing hands the poller what it read, for a smaller page or a dead letter to follow.
    expected = UnreadablePageError if operation == "list_items" else ResponseTooLargeError
    with pytest.raises(expected) as raised:
        OPERATIONS[operation](client)
    error = raised.value
    assert error.status == 200
    assert not isinstance(error, UnreadablePageError) or not error.complete
    assert "CONNECTOR_API_MAX_RESPONSE_BYTES" in str(error)
    assert error.may_have_been_applied is (operation == "bulk_create")
    assert api_requests(simulator) == 1


def test_an_error_page_within_the_limit_still_shows_its_text(
    simulator: SimulatorHandle, client: TolokaClient
) -> None:
    simulator.set_knobs(oversized_page_ratio=1.0, oversized_page_status=502,
                        oversized_page_bytes=MAX_RESPONSE_BYTES // 2)  # fmt: skip
    with pytest.raises(ServerError) as raised:
        client.get_project()
    assert "<h1>502</h1>" in str(raised.value)
    assert "larger than" not in str(raised.value)
