"""Routing on a shared input topic: each pipeline takes the records its header names; a record
no pipeline takes is dead-lettered once, by the first pipeline reading the topic."""

from __future__ import annotations

from typing import Any

import pytest

from connector.config import load_settings
from connector.contract.dead_letters import UNROUTED
from connector.uploader.decode import Refusal
from connector.uploader.role import consumer_config
from connector.uploader.routing import HeaderRouter, input_routers, routed_group_id

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


def test_a_pipeline_routing_alone_on_its_topic_dead_letters_records_naming_another_project() -> (
    None
):
    """`route_by_header` is the pipeline's own choice: alone on its topic it still routes."""
    [router] = input_routers([("texts.in", "texts", True)]).values()
    assert router.route(Record(header(b"texts"))) is True  # type: ignore[arg-type]
    refusal = router.route(Record(header(b"captions")))  # type: ignore[arg-type]
    assert isinstance(refusal, Refusal)
    assert refusal.reason == UNROUTED


def test_only_the_pipelines_that_set_route_by_header_route() -> None:
    routers = input_routers([("texts.in", "texts", False), ("captions.in", "captions", True)])
    assert list(routers) == ["captions"]


def test_a_second_pipeline_on_a_routed_topic_changes_nothing_for_the_first() -> None:
    alone = input_routers([("shared.in", "texts", True)])
    together = input_routers([("shared.in", "texts", True), ("shared.in", "captions", True)])
    assert alone["texts"] == HeaderRouter("texts", frozenset({"texts"}), dead_letters_unrouted=True)
    assert together["texts"].dead_letters_unrouted
    assert together["captions"].route(Record(header(b"texts"))) is False  # type: ignore[arg-type]
    assert together["texts"].sharing == frozenset(PROJECTS)


@pytest.mark.parametrize(
    ("route_by_header", "group"),
    [("false", "toloka-connector"), ("true", "toloka-connector.texts")],
)
def test_the_uploaders_consumer_group_follows_its_route_by_header_alone(
    route_by_header: str, group: str
) -> None:
    """However many pipelines read the topic: adding one never moves another to a new group."""
    settings = load_settings(
        environ={
            "TOLOKA_API_KEY": "secret-key-123",
            "TOLOKA_APP_PROJECT_ID": "texts",
            "CONNECTOR_ROUTE_BY_HEADER": route_by_header,
        }
    )
    assert consumer_config(settings, lambda _stats: None)["group.id"] == group
