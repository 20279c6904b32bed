"""Resource limits: what is too big is refused early and clearly, never allowed to exhaust memory.

- an input record far above `CONNECTOR_MAX_RECORD_BYTES` is dead-lettered `too_large` without
  being parsed (unit: the parser is never called; integration: a real `upload` process);
- a listing page far above the `limit` asked for is refused with a clear error;
- a response body beyond a sane cap is refused while it streams in, not read whole.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import orjson
import pytest
from confluent_kafka import Producer
from pydantic import SecretStr

from connector.contract.dead_letters import TOO_LARGE
from connector.errors import TolokaApiError
from connector.toloka.client import TolokaClient
from connector.toloka.models import FieldSpec
from connector.toloka.retry import RetryPolicy
from connector.uploader import decode
from connector.validation import ItemValidator
from testkit.brokers import ControllableBroker
from testkit.kafka import headers_of
from testkit.processes import ConnectorProcess
from testkit.waiting import wait_for
from tests.fixtures.brokers import NewTopic, ReadTopic
from tests.fixtures.simulator import SimulatorHandle

MiB = 1024 * 1024
VALIDATOR = ItemValidator({"text": FieldSpec(type="string", required=True)})


def test_a_record_far_above_the_limit_is_too_large_without_being_parsed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def no_parsing(_value: bytes) -> object:
        raise AssertionError("the record was parsed")

    monkeypatch.setattr("connector.uploader.decode.orjson.loads", no_parsing)
    monkeypatch.setattr("connector.uploader.decode.json.loads", no_parsing)
    refusal = decode.decode_item(b"[" * (8 * MiB), 1024, VALIDATOR)
    assert isinstance(refusal, decode.Refusal)
    assert refusal.reason == TOO_LARGE
    assert str(8 * MiB) in refusal.message
    assert "1024" in refusal.message


@pytest.mark.integration
def test_a_real_uploader_dead_letters_a_huge_record_too_large_and_goes_on(
    kafka_broker: ControllableBroker,
    simulator: SimulatorHandle,
    new_topic: NewTopic,
    read_topic: ReadTopic,
    tmp_path: Path,
) -> None:
    topic, dlq = new_topic(1), new_topic(1)
    huge = b"{" * (900 * 1024)  # invalid JSON too: only a record never parsed is too_large
    producer = Producer({"bootstrap.servers": kafka_broker.bootstrap_servers})
    producer.produce(topic, value=huge, headers=[("n", b"0")])
    producer.produce(topic, value=orjson.dumps({"id": "after-huge", "text": "t"}))
    assert producer.flush(30) == 0
    environ = {
        "TOLOKA_API_KEY": simulator.api_key,
        "TOLOKA_BASE_URL": simulator.base_url,
        "TOLOKA_APP_PROJECT_ID": simulator.project_id,
        "KAFKA_BOOTSTRAP_SERVERS": kafka_broker.bootstrap_servers,
        "CONNECTOR_INPUT_TOPIC": topic,
        "CONNECTOR_DLQ_TOPIC": dlq,
        "CONNECTOR_GROUP_ID": f"limits-{uuid.uuid4().hex[:8]}",
        "CONNECTOR_MAX_RECORD_BYTES": "1024",
    }
    process = ConnectorProcess(["upload"], environ, tmp_path / "upload.log")
    try:
        wait_for(lambda: simulator.creates("after-huge") == 1, "the next record uploaded", 60)
        # The dead letter is acknowledged before its offset is committed, not before the next
        # record's upload: wait for it too.
        wait_for(lambda: len(read_topic(dlq)) >= 1, "the dead letter", 60)
        letters = read_topic(dlq)
    finally:
        assert process.terminate() == 0, process.output()[-3000:]
    assert len(letters) == 1
    headers = headers_of(letters[0])
    assert headers["error-reason"] == "too_large"
    assert str(len(huge)) in headers["error-message"]
    assert letters[0].value() == huge


# --- the API client ----------------------------------------------------------------------------


def client_for(handler: httpx.MockTransport) -> TolokaClient:
    return TolokaClient(
        "https://api.invalid/api/app/v0",
        SecretStr("limits-key"),
        "proj",
        retry=RetryPolicy(max_attempts=1),
        transport=handler,
    )


def item(n: int) -> dict[str, object]:
    return {"id": f"i{n:06d}", "status": "COMPLETED", "finished_at": "2024-01-01T00:00:00"}


def test_a_page_far_above_the_asked_limit_is_refused_with_a_clear_error() -> None:
    def oversized(request: httpx.Request) -> httpx.Response:
        asked = int(request.url.params["limit"])
        return httpx.Response(
            200, json={"content": [item(n) for n in range(asked * 100)], "has_more": True}
        )

    with (
        client_for(httpx.MockTransport(oversized)) as client,
        pytest.raises(TolokaApiError, match=r"limit|asked|more than"),
    ):
        client.list_items(limit=10)


class EndlessBody(httpx.SyncByteStream):
    """A body that streams `total` bytes lazily and counts what was pulled; it refuses to give
    more than `guard` bytes (past any sane cap), so a client without a cap fails here instead of
    exhausting the test's memory."""

    def __init__(self, total: int, guard: int) -> None:
        self.total = total
        self.guard = guard
        self.pulled = 0

    def __iter__(self) -> Iterator[bytes]:
        chunk = b" " * MiB
        yield b'{"content": ['
        while self.pulled < self.total:
            if self.pulled >= self.guard:
                raise MemoryError(f"the client read {self.pulled} bytes of a body and went on")
            self.pulled += len(chunk)
            yield chunk


@pytest.mark.parametrize("declared", [False, True])
def test_a_response_body_beyond_a_sane_cap_is_refused_while_it_streams(declared: bool) -> None:
    body = EndlessBody(total=16 * 1024 * MiB, guard=96 * MiB)

    def endless(_request: httpx.Request) -> httpx.Response:
        headers = {"Content-Type": "application/json"}
        if declared:
            headers["Content-Length"] = str(body.total)
        return httpx.Response(200, headers=headers, stream=body)

    with (
        client_for(httpx.MockTransport(endless)) as client,
        pytest.raises(TolokaApiError, match=r"bytes|large|cap"),
    ):
        client.list_items(limit=10)
    assert body.pulled <= 96 * MiB
