"""ItemValidator: the Apps API's input_spec rules and field codes."""

from __future__ import annotations

import math
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from connector.toloka.models import FieldSpec
from connector.validation import FieldProblem, ItemValidator


def validator(**fields: str | tuple[str, bool]) -> ItemValidator:
    """validator(text="string") is optional; validator(text=("string", True)) is required."""
    spec = {}
    for name, value in fields.items():
        field_type, required = value if isinstance(value, tuple) else (value, False)
        spec[name] = FieldSpec(type=field_type, required=required)
    return ItemValidator(spec)


def codes(check: ItemValidator, item: dict[str, Any]) -> dict[str, str]:
    return {problem.field: problem.code for problem in check.problems(item)}


def test_a_valid_item_has_no_problems() -> None:
    check = validator(id="string", text=("string", True))
    assert check.problems({"id": "1", "text": "Kate likes dogs."}) == []


@pytest.mark.parametrize("item", [{}, {"text": None}], ids=["absent", "null"])
def test_a_required_field_must_be_present_and_not_null(item: dict[str, Any]) -> None:
    problems = validator(text=("string", True)).problems(item)
    assert [(problem.field, problem.code) for problem in problems] == [("text", "VALUE_REQUIRED")]
    assert isinstance(problems[0], FieldProblem)
    assert problems[0].message


@pytest.mark.parametrize("item", [{}, {"id": None}], ids=["absent", "null"])
def test_an_optional_field_may_be_absent_or_null(item: dict[str, Any]) -> None:
    assert validator(id="string").problems(item) == []


def test_every_bad_field_is_reported_in_spec_order() -> None:
    check = validator(a=("string", True), b="integer", c="url")
    item = {"b": "7", "c": "not a url"}
    assert [problem.field for problem in check.problems(item)] == ["a", "b", "c"]


def test_fields_outside_the_spec_pass_through() -> None:
    assert validator(text=("string", True)).problems({"text": "x", "extra": [1, {"y": 2}]}) == []


@pytest.mark.parametrize(
    ("field_type", "good", "bad", "code"),
    [
        ("string", ["", "text", "ünï"], [1, 1.5, True, [], {}], "STRING_EXPECTED"),
        ("file", ["https://x/y.png", "file-id"], [3, {}], "STRING_EXPECTED"),
        ("integer", [0, -3, 2**70], [1.0, "1", True, False, []], "INTEGER_EXPECTED"),
        (
            "float",
            [0, 1.5, -2, 1e300],
            ["1.5", True, math.inf, -math.inf, math.nan],
            "FLOAT_EXPECTED",
        ),
        ("boolean", [True, False], [0, 1, "true", []], "BOOLEAN_EXPECTED"),
        ("array_string", [[], ["a", "b"]], ["a", {"a": 1}, 3], "ARRAY_EXPECTED"),
        ("array_integer", [[1, 2]], [[1, "2"], [1.5], [True]], "INTEGER_EXPECTED"),
        ("array_array_string", [[["a"], []]], [[["a", 1]]], "STRING_EXPECTED"),
    ],
)
def test_types(field_type: str, good: list[Any], bad: list[Any], code: str) -> None:
    check = validator(value=(field_type, True))
    for value in good:
        assert check.problems({"value": value}) == [], value
    for value in bad:
        assert codes(check, {"value": value}) == {"value": code}, value


def test_a_null_array_element_counts_as_missing() -> None:
    problems = validator(tags="array_string").problems({"tags": ["a", None]})
    assert [(problem.code, "element 1" in problem.message) for problem in problems] == [
        ("VALUE_REQUIRED", True)
    ]


@pytest.mark.parametrize(
    "url",
    [
        "https://example.com/dogs_1.jpg",
        "http://example.com",
        "HTTPS://EXAMPLE.COM/a?b=c#d",
        "https://user:pw@example.com:8443/x",
        "http://127.0.0.1:8080/img.png",
        "http://[::1]/x",
        "https://пример.рф/картинка.jpg",
    ],
)
def test_absolute_http_urls_with_a_host_are_valid(url: str) -> None:
    assert validator(u=("url", True)).problems({"u": url}) == []


@pytest.mark.parametrize(
    "url",
    [
        "example.com/x.jpg",
        "/relative/path.jpg",
        "ftp://example.com/x",
        "https://",
        "https:///path",
        "https://exa mple.com/x",
        "https://example.com/a b",
        "javascript:alert(1)",
        "",
    ],
)
def test_other_urls_are_invalid_url_syntax(url: str) -> None:
    assert codes(validator(u=("url", True)), {"u": url}) == {"u": "INVALID_URL_SYNTAX"}


def test_a_url_must_be_a_string() -> None:
    assert codes(validator(u="url"), {"u": 5}) == {"u": "STRING_EXPECTED"}


@pytest.mark.parametrize("value", ["55.75,37.62", " -90 , 180 ", "0,0", "12.5, -0.1", "+1.,.5"])
def test_coordinates_lat_lon(value: str) -> None:
    assert validator(at=("coordinates", True)).problems({"at": value}) == []


@pytest.mark.parametrize("value", ["91,0", "0,181", "55.75", "a,b", "1,2,3", "", "1;2"])
def test_bad_coordinates(value: str) -> None:
    assert codes(validator(at="coordinates"), {"at": value}) == {"at": "INVALID_COORDINATES"}


def test_coordinates_must_be_a_string() -> None:
    assert codes(validator(at="coordinates"), {"at": [55.7, 37.6]}) == {"at": "STRING_EXPECTED"}


@given(
    st.recursive(
        st.booleans() | st.floats() | st.integers() | st.text(),
        lambda inner: st.lists(inner) | st.dictionaries(st.text(), inner),
    )
)
def test_json_accepts_any_value(value: Any) -> None:
    assert validator(payload=("json", True)).problems({"payload": value}) == []


@given(st.text() | st.integers() | st.lists(st.integers()) | st.booleans())
def test_an_unknown_type_accepts_any_value(value: Any) -> None:
    assert validator(v=("hologram", True)).problems({"v": value}) == []


@given(st.dictionaries(st.sampled_from(["id", "text", "other"]), st.text() | st.integers()))
def test_problems_agree_with_the_rules_for_any_item(item: dict[str, Any]) -> None:
    found = codes(validator(id="string", text=("string", True)), item)
    expected = {}
    if not isinstance(item.get("id", ""), str):
        expected["id"] = "STRING_EXPECTED"
    if "text" not in item:
        expected["text"] = "VALUE_REQUIRED"
    elif not isinstance(item["text"], str):
        expected["text"] = "STRING_EXPECTED"
    assert found == expected
