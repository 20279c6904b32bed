"""Routing to the pipelines' lanes: a plain pipeline's topic is its own; on a shared topic each
pipeline takes the records its header names, and a record none of them takes is dead-lettered
once, by the first pipeline reading the topic."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from connector.config import load_settings
from connector.contract.dead_letters import UNROUTED
from connector.uploader.role import consumer_config
from connector.uploader.routing import Reader, input_routes, route_runs, routed_group_id

PROJECTS = ["texts", "captions"]


class Record:
    def __init__(self, headers: Any) -> None:
        self._headers = headers

    def headers(self) -> Any:
        return self._headers


def header(value: bytes | None) -> list[tuple[str, bytes | None]]:
    return [("trace", b"x"), ("toloka-app-project-id", value)]


SHARED = input_routes(
    [Reader("shared.in", "texts", True, "texts lane"),
     Reader("shared.in", "captions", True, "captions lane"),
     Reader("images.in", "images", False, "images lane")]
)  # fmt: skip


@pytest.mark.parametrize(
    ("headers", "lane"),
    [
        (header(b"texts"), "texts lane"),
        (header(b"captions"), "captions lane"),
        ({"toloka-app-project-id": "captions"}, "captions lane"),  # headers as produce takes them
        ([*header(b"texts"), *header(b"captions")], "captions lane"),  # the last one counts
    ],
)
def test_each_pipeline_takes_the_records_its_header_names(headers: Any, lane: str) -> None:
    assert SHARED["shared.in"](Record(headers)) == (lane, None)  # type: ignore[arg-type]


@pytest.mark.parametrize("headers", [None, [], header(None), header(b"videos"), [("x", b"texts")]])
def test_a_record_no_pipeline_takes_is_dead_lettered_by_the_first(headers: Any) -> None:
    lane, refusal = SHARED["shared.in"](Record(headers))  # type: ignore[arg-type]
    assert lane == "texts lane"
    assert refusal is not None
    assert refusal.reason == UNROUTED
    assert "captions, texts" in refusal.message


@pytest.mark.parametrize("headers", [None, header(b"texts"), header(b"videos")])
def test_a_plain_pipeline_takes_every_record_of_its_topic(headers: Any) -> None:
    assert SHARED["images.in"](Record(headers)) == ("images lane", None)  # type: ignore[arg-type]


def test_a_pipeline_routing_alone_on_its_topic_dead_letters_records_naming_another_project() -> (
    None
):
    """`route_by_header` is the pipeline's own choice: alone on its topic it still routes."""
    route = input_routes([Reader("texts.in", "texts", True, "texts lane")])["texts.in"]
    assert route(Record(header(b"texts"))) == ("texts lane", None)  # type: ignore[arg-type]
    lane, refusal = route(Record(header(b"captions")))  # type: ignore[arg-type]
    assert lane == "texts lane"
    assert refusal is not None
    assert refusal.reason == UNROUTED


record_headers = st.sampled_from(
    [header(b"texts"), header(b"captions"), header(b"videos"), None,
     {"toloka-app-project-id": "texts"}]
)  # fmt: skip


@given(st.lists(record_headers, max_size=20), st.sampled_from(["shared.in", "images.in"]))
def test_runs_of_records_go_where_each_record_goes(headers: list[Any], topic: str) -> None:
    """`route_runs` (the loop's form: a consume() call's records of one partition at once)
    covers the records in order, each run going where the route sends each of its records."""
    records = [Record(h) for h in headers]
    route = SHARED[topic]
    runs = list(route_runs(route, records))  # type: ignore[arg-type]
    assert [index for *_, first, end in runs for index in range(first, end)] == list(
        range(len(records))
    )
    for lane, refusal, first, end in runs:
        for record in records[first:end]:
            expected_lane, expected_refusal = route(record)  # type: ignore[arg-type]
            assert (lane, refusal) == (expected_lane, expected_refusal)
            if refusal is not None:
                assert end == first + 1  # each refused record has its own refusal


def test_the_groups_routed_pipelines_read_in_before_are_named_by_project() -> None:
    assert routed_group_id("toloka-connector", "texts") == "toloka-connector.texts"


@pytest.mark.parametrize("route_by_header", ["false", "true"])
def test_the_uploaders_consumer_is_in_the_one_group_whatever_the_routing(
    route_by_header: str,
) -> None:
    settings = load_settings(
        environ={
            "TOLOKA_API_KEY": "secret-key-123",
            "TOLOKA_APP_PROJECT_ID": "texts",
            "CONNECTOR_ROUTE_BY_HEADER": route_by_header,
        }
    )
    assert consumer_config(settings, lambda _stats: None)["group.id"] == "toloka-connector"
