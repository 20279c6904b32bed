"""Items read from listing pages without a model per item: the fields the connector relies on are
checked, with an error that names the field and the item's place (never the value), and the
object the API sent is kept whole."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from connector.errors import ItemFormatError
from connector.toloka.models import Item, ItemPage

GOOD: dict[str, Any] = {
    "id": "QlvdZj5d53QHj5Nvx9Vd",
    "app_project_id": "proj",
    "status": "COMPLETED",
    "input_data": {"id": "1", "text": "Kate likes dogs."},
    "output_data": {"result": ["OK"], "confidence": 0.99},
    "errors": [],
    "created_at": "2021-10-03T09:49:14.028",
    "started_at": None,
    "finished_at": "2021-10-03T11:24:46.818213",
    "something_new": {"the API": "grows"},
}


def test_a_good_item_is_read_and_its_object_kept_whole() -> None:
    page = ItemPage.from_api({"content": [GOOD], "has_more": True})
    (item,) = page.content
    assert page.has_more
    assert item.raw is GOOD
    assert (item.id, item.status, item.app_project_id) == (GOOD["id"], "COMPLETED", "proj")
    assert item.input_data == GOOD["input_data"]
    assert item.finished_at == datetime(2021, 10, 3, 11, 24, 46, 818213, tzinfo=UTC)
    assert item.created_at == datetime(2021, 10, 3, 9, 49, 14, 28000, tzinfo=UTC)
    assert item.started_at is None


@pytest.mark.parametrize(
    ("field", "value", "problem"),
    [
        ("id", None, "id is missing or not a string"),
        ("id", 17, "id is missing or not a string"),
        ("status", 3, "status is not a string"),
        ("app_project_id", ["p"], "app_project_id is not a string"),
        ("input_data", "secret text", "input_data is not an object"),
        ("input_data", None, "input_data is not an object"),
        ("output_data", [1], "output_data is not an object"),
        ("errors", "boom", "errors is not a list"),
        ("finished_at", "secret text", "finished_at is not a datetime"),
        ("created_at", {"t": 1}, "created_at is not a datetime"),
    ],
)
def test_a_malformed_field_is_named_with_the_items_place_not_its_value(
    field: str, value: Any, problem: str
) -> None:
    bad = {**GOOD, field: value}
    with pytest.raises(ItemFormatError) as raised:
        ItemPage.from_api({"content": [GOOD, bad], "has_more": False})
    assert str(raised.value) == f"content.1: {problem}"
    assert "secret" not in str(raised.value)


@pytest.mark.parametrize(
    ("page", "problem"),
    [
        ([GOOD], "the page is not a JSON object"),
        ({"content": GOOD}, "content is not a list"),
        ({"content": [], "has_more": "yes"}, "has_more is not a boolean"),
        ({"content": ["an id"]}, "content.0: an item is not a JSON object"),
    ],
)
def test_a_malformed_page_is_named(page: Any, problem: str) -> None:
    with pytest.raises(ItemFormatError, match=f"^{problem}$"):
        ItemPage.from_api(page)


@pytest.mark.parametrize(
    "value",
    ["2021-10-03T11:24:46Z", "2021-10-03T14:24:46+03:00", "2021-10-03T11:24:46", 1633260286],
)
def test_datetimes_in_any_form_pydantic_accepts_become_aware_utc(value: Any) -> None:
    item = Item.from_api({"id": "a", "finished_at": value})
    assert item.finished_at == datetime(2021, 10, 3, 11, 24, 46, tzinfo=UTC)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2021-10-03T11:24:46.818213", datetime(2021, 10, 3, 11, 24, 46, 818213, tzinfo=UTC)),
        ("2021-10-03", datetime(2021, 10, 3, tzinfo=UTC)),  # an offset appended is dropped
        ("2021-10-03T11", datetime(2021, 10, 3, 11, tzinfo=UTC)),
    ],
)
def test_a_datetime_without_offset_is_utc(value: str, expected: datetime) -> None:
    # (A naive datetime never equals an aware one.)
    assert Item.from_api({"id": "a", "finished_at": value}).finished_at == expected


def test_absent_optional_fields_take_their_defaults() -> None:
    item = Item.from_api({"id": "a"})
    assert (item.status, item.input_data, item.output_data, item.finished_at) == (
        None, {}, None, None,
    )  # fmt: skip
    assert not item.is_finished
