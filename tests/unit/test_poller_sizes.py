"""Sizes the poller must live with (issue 11, items 2 and 3): page sizes that shrink and grow,
an item that can only partly be read, dead letters that keep as much as fits, record limits."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import httpx
import orjson
import pytest
from pydantic import SecretStr

from connector.cli import main
from connector.config import load_settings
from connector.errors import ConfigError, TolokaApiError, UnreadablePageError
from connector.kafka.limits import record_size
from connector.poller.dead_letters import dead_letter
from connector.poller.limits import RecordLimits
from connector.poller.publisher import OutputRecord, SizeRefusal
from connector.poller.unreadable import readable_item, single_entry
from connector.toloka.client import TolokaClient
from connector.toloka.page_size import GROW_AFTER, PageSizer
from connector.toloka.retry import RetryPolicy

# --- page sizes -----------------------------------------------------------------------------


def test_a_page_halves_down_to_one_item_then_says_so() -> None:
    sizer = PageSizer(1000, response_limit_bytes=64_000_000)
    sizes = []
    while sizer.shrink():
        sizes.append(sizer.size)
    assert sizes == [500, 250, 125, 62, 31, 15, 7, 3, 1]


def test_a_page_grows_back_after_readable_pages_while_results_are_small() -> None:
    sizer = PageSizer(40, response_limit_bytes=150_000)
    for _ in range(3):
        sizer.shrink()
    assert sizer.size == 5
    grown = []
    for _ in range(4 * GROW_AFTER):
        sizer.readable(items=sizer.size, result_bytes=sizer.size * 300)
        grown.append(sizer.size)
    assert grown[-1] == 40
    assert grown[GROW_AFTER - 2] == 5, "not before GROW_AFTER readable pages"


def test_a_page_does_not_grow_back_into_the_response_limit() -> None:
    sizer = PageSizer(40, response_limit_bytes=150_000)
    for _ in range(3):
        sizer.shrink()
    for _ in range(10 * GROW_AFTER):
        sizer.readable(items=5, result_bytes=5 * 20_000)  # 10 such results: 200 kB
    assert sizer.size == 5


# --- an item that cannot be read even alone -----------------------------------------------


def page_of(entry: bytes, has_more: bytes = b"true") -> bytes:
    return b'{"content":[' + entry + b'],"has_more":' + has_more + b"}"


ITEM = (
    b'{"id":"it-1","app_project_id":"p","status":"COMPLETED","input_data":{"id":"in-1",'
    b'"text":"t"},"output_data":{"mask":"' + b"m" * 5000 + b'"},"finished_at":'
    b'"2024-05-01T12:00:00.250"}'
)


def test_a_cut_entry_keeps_the_fields_that_ended_before_the_cut() -> None:
    body = page_of(ITEM)
    entry = single_entry(UnreadablePageError("too large", body=body[:300], complete=False))
    assert entry is not None
    assert entry.id == "it-1"
    assert entry.fields["input_data"] == {"id": "in-1", "text": "t"}
    assert "output_data" not in entry.fields
    assert entry.finished_at is None, "it came after the cut"
    assert entry.finished


def test_an_entry_with_bytes_that_are_not_utf8_is_read_with_replacements() -> None:
    body = page_of(ITEM[:-1] + b',"note":"\xff\xfe"}')
    error = UnreadablePageError("not JSON", body=body, complete=True)
    entry = single_entry(error)
    assert entry is not None
    assert entry.id == "it-1"
    assert entry.finished_at is not None
    assert entry.finished_at.microsecond == 250_000
    assert readable_item(error) is None, "never published in a repaired form"


def test_an_entry_that_is_fine_in_a_broken_page_is_taken_as_sent() -> None:
    error = UnreadablePageError("bad page", body=page_of(ITEM, b'"maybe"'), complete=True)
    item = readable_item(error)
    assert item is not None
    assert item.raw == orjson.loads(ITEM)


@pytest.mark.parametrize(
    "body",
    [b"<html>", b"", page_of(b'"just a string"'), page_of(b'{"status":"COMPLETED"}'),
     page_of(ITEM + b"," + ITEM), b'{"content":[{"id":'],
)  # fmt: skip
def test_an_entry_without_a_readable_id_cannot_be_passed(body: bytes) -> None:
    assert single_entry(UnreadablePageError("x", body=body, complete=body.endswith(b"}"))) is None


def test_an_unfinished_entry_is_not_taken_for_a_finished_one() -> None:
    unfinished = b'{"id":"u","status":"PROCESSING","finished_at":null,"input_data":[]}'
    entry = single_entry(UnreadablePageError("x", body=page_of(unfinished), complete=True))
    assert entry is not None
    assert not entry.finished


# --- dead letters ---------------------------------------------------------------------------


def fields_of(record: OutputRecord) -> dict[str, str]:
    return {name: value.decode() for name, value in record.headers if isinstance(value, bytes)}


def test_a_dead_letter_leaves_out_the_largest_fields_until_it_fits() -> None:
    item = orjson.loads(ITEM)
    letter = dead_letter(
        "result_too_large", "too large", item_id="it-1", app_project_id="p", key=b"in-1",
        fields=item, limit=1000,
    )  # fmt: skip
    assert record_size(letter.key, letter.value, letter.headers) <= 1000
    kept = orjson.loads(letter.value)
    assert kept["id"] == "it-1"
    assert kept["input_data"] == item["input_data"]
    assert "output_data" not in kept
    headers = fields_of(letter)
    assert headers["error-dropped-fields"] == "output_data"
    assert headers["error-reason"] == "result_too_large"
    assert headers["toloka-item-id"] == "it-1"
    assert headers["toloka-app-project-id"] == "p"


def test_a_dead_letter_that_fits_keeps_the_whole_item() -> None:
    letter = dead_letter(
        "result_too_large", "m", item_id="it-1", app_project_id="p", key=b"k",
        fields=orjson.loads(ITEM), limit=1_000_000,
    )  # fmt: skip
    assert orjson.loads(letter.value) == orjson.loads(ITEM)
    assert "error-dropped-fields" not in fields_of(letter)


def test_an_undecoded_item_keeps_its_first_bytes() -> None:
    raw = b"\xff" * 5000
    letter = dead_letter(
        "unreadable_result", "m", item_id="x", app_project_id="p", key=b"x", fields=None,
        raw=raw, limit=2000,
    )  # fmt: skip
    assert record_size(letter.key, letter.value, letter.headers) <= 2000
    assert raw.startswith(letter.value)
    assert len(letter.value) > 1500


# --- record limits --------------------------------------------------------------------------


def limits(kafka: Mapping[str, str], readable: Mapping[str, int]) -> RecordLimits:
    def read(topics: Sequence[str]) -> Mapping[str, int]:
        return {topic: readable[topic] for topic in topics if topic in readable}

    found = RecordLimits(kafka, ("out", "dlq", "state"), read)
    found.refresh()
    return found


def test_the_limit_is_the_lowest_of_the_producer_and_the_topic() -> None:
    known = limits({"message.max.bytes": "500000"}, {"out": 60_000})
    assert known.limit("out") == 60_000
    assert known.limit("dlq") == 500_000, "unreadable: the producer's limit"
    assert known.producer_config()["batch.size"] < 60_000, "batches fit the smallest topic"


def test_a_refusal_by_the_broker_first_makes_batches_of_one_then_teaches_the_limit() -> None:
    known = limits({}, {})
    record = OutputRecord(b"k", b"v" * 70_000, [])
    size = record_size(record.key, record.value, record.headers)
    assert size <= known.limit("out")
    refusal = SizeRefusal("out", record, by_broker=True)
    assert not known.learn([refusal]), "a batch may have held others"
    assert known.producer_config()["batch.num.messages"] == 1
    assert size <= known.limit("out")
    assert known.learn([refusal]), "refused by a producer of one-record batches"
    assert size > known.limit("out")
    assert known.limit("out") >= 60_000


# --- settings that must agree --------------------------------------------------------------

BASE = {"TOLOKA_API_KEY": "k", "TOLOKA_APP_PROJECT_ID": "p"}


@pytest.mark.parametrize(
    ("extra", "named"),
    [
        ({"KAFKA_SOCKET_TIMEOUT_MS": "70000"},
         "CONNECTOR_TRANSACTION_TIMEOUT_SECONDS, KAFKA_SOCKET_TIMEOUT_MS:"),
        ({"KAFKA_SOCKET_TIMEOUT_MS": "5000", "CONNECTOR_TRANSACTION_TIMEOUT_SECONDS": "4"},
         "CONNECTOR_TRANSACTION_TIMEOUT_SECONDS, KAFKA_SOCKET_TIMEOUT_MS:"),
        ({"KAFKA_DELIVERY_TIMEOUT_MS": "90000"},
         "CONNECTOR_TRANSACTION_TIMEOUT_SECONDS, KAFKA_DELIVERY_TIMEOUT_MS:"),
        ({"KAFKA_MESSAGE_TIMEOUT_MS": "61000"},
         "CONNECTOR_TRANSACTION_TIMEOUT_SECONDS, KAFKA_MESSAGE_TIMEOUT_MS:"),
    ],
)  # fmt: skip
def test_settings_the_poller_producer_cannot_start_with_are_one_line_naming_them(
    extra: dict[str, str], named: str
) -> None:
    with pytest.raises(ConfigError) as raised:
        load_settings(environ={**BASE, **extra})
    (problem,) = raised.value.problems
    assert problem.startswith(named)


def test_at_start_such_settings_exit_2_with_one_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Today the poller's producer fails when it is created, at take-over: exit 1."""
    for name, value in {**BASE, "KAFKA_SOCKET_TIMEOUT_MS": "70000"}.items():
        monkeypatch.setenv(name, value)
    assert main(["poll"]) == 2
    (line,) = capsys.readouterr().err.splitlines()
    assert line.startswith("CONNECTOR_TRANSACTION_TIMEOUT_SECONDS, KAFKA_SOCKET_TIMEOUT_MS: ")


# --- the listing's answer as the client hands it over ----------------------------------------


def client_answering(status: int, body: bytes) -> TolokaClient:
    return TolokaClient(
        "https://api.invalid/api/app/v0",
        SecretStr("key"),
        "proj",
        retry=RetryPolicy(max_attempts=1),
        max_response_bytes=2048,
        transport=httpx.MockTransport(lambda _request: httpx.Response(status, content=body)),
    )


def test_a_listing_over_the_size_limit_is_an_unreadable_page_with_its_head() -> None:
    body = page_of(ITEM)
    with client_answering(200, body) as client, pytest.raises(UnreadablePageError) as raised:
        client.list_items(limit=1)
    assert not raised.value.complete
    assert body.startswith(raised.value.body)
    assert len(raised.value.body) >= 2048


def test_an_undecodable_listing_is_an_unreadable_page_with_its_whole_body() -> None:
    body = page_of(b'{"id":"x","finished_at":"yesterday"}')
    with client_answering(200, body) as client, pytest.raises(UnreadablePageError) as raised:
        client.list_items(limit=1)
    assert raised.value.complete
    assert raised.value.body == body


def test_an_oversized_error_page_is_no_unreadable_page() -> None:
    with (
        client_answering(502, b"<html>" + b"x" * 5000) as client,
        pytest.raises(TolokaApiError) as raised,
    ):
        client.list_items(limit=1)
    assert not isinstance(raised.value, UnreadablePageError), "a smaller page would not help"
