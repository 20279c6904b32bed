"""Routing on a shared input topic: each pipeline takes the records its header names; a record
no pipeline takes is dead-lettered once, by the first pipeline reading the topic."""

from __future__ import annotations

from typing import Any

import pytest

from connector.contract.dead_letters import UNROUTED
from connector.uploader.decode import Refusal
from connector.uploader.routing import HeaderRouter, routed_group_id

PROJECTS = ["texts", "captions"]


class Record:
    def __init__(self, headers: Any) -> None:
        self._headers = headers

    def headers(self) -> Any:
        return self._headers


def header(value: bytes | None) -> list[tuple[str, bytes | None]]:
    return [("trace", b"x"), ("toloka-app-project-id", value)]


@pytest.mark.parametrize(
    ("headers", "texts", "captions"),
    [
        (header(b"texts"), True, False),
        (header(b"captions"), False, True),
        ({"toloka-app-project-id": "captions"}, False, True),  # headers as produce takes them
        ([*header(b"texts"), *header(b"captions")], False, True),  # the last one counts
    ],
)
def test_each_pipeline_takes_the_records_its_header_names(
    headers: Any, texts: bool, captions: bool
) -> None:
    routers = [HeaderRouter.for_topic(PROJECTS, project) for project in PROJECTS]
    assert [router.route(Record(headers)) for router in routers] == [texts, captions]  # type: ignore[arg-type]


@pytest.mark.parametrize("headers", [None, [], header(None), header(b"videos"), [("x", b"texts")]])
def test_a_record_no_pipeline_takes_is_dead_lettered_by_the_first_only(headers: Any) -> None:
    first, second = (HeaderRouter.for_topic(PROJECTS, project) for project in PROJECTS)
    refusal = first.route(Record(headers))  # type: ignore[arg-type]
    assert isinstance(refusal, Refusal)
    assert refusal.reason == UNROUTED
    assert "captions, texts" in refusal.message
    assert second.route(Record(headers)) is False  # type: ignore[arg-type]


def test_a_routed_pipeline_has_a_consumer_group_of_its_own() -> None:
    assert routed_group_id("toloka-connector", "texts") == "toloka-connector.texts"
