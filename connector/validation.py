"""Validation of task items against an app's `input_spec`, with the Apps API's own field codes.

The uploader runs it on its hot path (to dead-letter an item before the API rejects the whole
bulk request) and the simulator answers its 400 `VALIDATION_ERROR` with it, so both agree on
what "invalid" means. `ItemValidator` compiles one checker per field once per spec; checking an
item is then a loop over those checkers.

Rules (what the API documents, and the safe choice where it does not):
- a `required` field must be present and not null; an optional field may be absent or null;
- `string` and `file`: a JSON string (`file` carries a file URL or id as text);
- `url`: a string holding an absolute `http`/`https` URL with a host and no whitespace;
- `integer`: a JSON integer (booleans are not integers);
- `float`: a JSON number, integer or not (booleans are not numbers), finite;
- `boolean`: `true` or `false`;
- `json`: any JSON value;
- `coordinates`: a string `"<lat>,<lon>"` of two decimal numbers, latitude within ±90 and
  longitude within ±180, spaces around either number allowed (`"55.75, 37.62"`). The API does not
  document a code for this; `INVALID_COORDINATES` is ours;
- `array_<T>`: a list whose every element follows `T` (a null element counts as missing);
- a field type the validator does not know accepts any value: the API grows, and rejecting items
  the API would take is worse than letting the API answer for them;
- fields that are not in the spec are accepted and passed through unchanged (the API tolerates
  extra input fields, for example an `id` the client uses as its own key).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple

from connector.toloka.models import FieldSpec


class FieldProblem(NamedTuple):
    """Why one field of one item is invalid, as the API reports it."""

    field: str
    code: str
    message: str


Problem = tuple[str, str]
"""(code, message) for one field; the field name is added by the validator."""
Checker = Callable[[Any], Problem | None]

ARRAY_PREFIX = "array_"

_URL = re.compile(
    r"https?://"
    r"(?:[^\s/?#@]+@)?"  # userinfo
    r"(?:\[[0-9A-Fa-f:.]+\]|[^\s/?#@:\[\]]+)"  # host: IPv6 literal or name/IPv4
    r"(?::\d*)?"  # port
    r"(?:[/?#]\S*)?",  # path, query, fragment
    re.IGNORECASE,
)
_NUMBER = r"\s*([+-]?(?:\d+(?:\.\d*)?|\.\d+))\s*"
_COORDINATES = re.compile(_NUMBER + "," + _NUMBER)

_STRING_EXPECTED: Problem = ("STRING_EXPECTED", "a string is expected")
_INTEGER_EXPECTED: Problem = ("INTEGER_EXPECTED", "an integer is expected")
_FLOAT_EXPECTED: Problem = ("FLOAT_EXPECTED", "a finite number is expected")
_BOOLEAN_EXPECTED: Problem = ("BOOLEAN_EXPECTED", "a boolean is expected")
_ARRAY_EXPECTED: Problem = ("ARRAY_EXPECTED", "an array is expected")
_INVALID_URL: Problem = (
    "INVALID_URL_SYNTAX",
    "an absolute http or https URL with a host is expected",
)
_INVALID_COORDINATES: Problem = (
    "INVALID_COORDINATES",
    'coordinates "<latitude>,<longitude>" within ±90 and ±180 are expected',
)
_VALUE_REQUIRED: Problem = ("VALUE_REQUIRED", "a value is required")


def _check_string(value: Any) -> Problem | None:
    return None if isinstance(value, str) else _STRING_EXPECTED


def _check_url(value: Any) -> Problem | None:
    if not isinstance(value, str):
        return _STRING_EXPECTED
    return None if _URL.fullmatch(value) else _INVALID_URL


def _check_integer(value: Any) -> Problem | None:
    return None if isinstance(value, int) and not isinstance(value, bool) else _INTEGER_EXPECTED


def _check_float(value: Any) -> Problem | None:
    if isinstance(value, bool):
        return _FLOAT_EXPECTED
    if isinstance(value, int):
        return None
    return None if isinstance(value, float) and math.isfinite(value) else _FLOAT_EXPECTED


def _check_boolean(value: Any) -> Problem | None:
    return None if isinstance(value, bool) else _BOOLEAN_EXPECTED


def _check_coordinates(value: Any) -> Problem | None:
    if not isinstance(value, str):
        return _STRING_EXPECTED
    match = _COORDINATES.fullmatch(value)
    if match is None:
        return _INVALID_COORDINATES
    latitude, longitude = float(match[1]), float(match[2])
    if -90.0 <= latitude <= 90.0 and -180.0 <= longitude <= 180.0:
        return None
    return _INVALID_COORDINATES


_SCALAR_CHECKERS: dict[str, Checker | None] = {
    "string": _check_string,
    "file": _check_string,
    "url": _check_url,
    "integer": _check_integer,
    "float": _check_float,
    "boolean": _check_boolean,
    "coordinates": _check_coordinates,
    "json": None,  # any JSON value
}


def _array_checker(element: Checker | None) -> Checker:
    def check(value: Any) -> Problem | None:
        if not isinstance(value, list):
            return _ARRAY_EXPECTED
        for index, item in enumerate(value):
            if item is None:
                problem: Problem | None = _VALUE_REQUIRED
            else:
                problem = None if element is None else element(item)
            if problem is not None:
                return problem[0], f"element {index}: {problem[1]}"
        return None

    return check


_JSON_TYPES = (str, int, float, bool, list, dict)
"""The types of the non-null values a JSON document holds."""

_EXACT_TYPES: dict[str, type] = {"string": str, "file": str, "integer": int, "boolean": bool}
"""Types whose exact Python type alone proves a value valid, checked inline (the hot path)."""


def _valid_by_type(
    required: bool, exact_type: type | None, check: Checker | None
) -> frozenset[type]:
    """The types whose values always pass a field (`problems` checks the others): its exact
    type; None when optional; with no checker (any non-null value passes) the JSON types."""
    proven: set[type] = set(_JSON_TYPES) if check is None else set()
    if exact_type is not None:
        proven.add(exact_type)
    if not required:
        proven.add(type(None))
    return frozenset(proven)


def checker_for(field_type: str) -> Checker | None:
    """The checker of one spec type; None when every non-null value passes."""
    if field_type.startswith(ARRAY_PREFIX):
        return _array_checker(checker_for(field_type[len(ARRAY_PREFIX) :]))
    return _SCALAR_CHECKERS.get(field_type)


class ItemValidator:
    """Checks items against one `input_spec`. Build it once per spec, call `problems` per item
    (or `invalid_items` for many)."""

    __slots__ = ("_columns", "_fields")

    def __init__(self, input_spec: Mapping[str, FieldSpec]) -> None:
        self._fields: tuple[tuple[str, bool, type | None, Checker | None], ...] = tuple(
            (name, spec.required, _EXACT_TYPES.get(spec.type), checker_for(spec.type))
            for name, spec in input_spec.items()
        )
        self._columns: tuple[tuple[str, frozenset[type]], ...] = tuple(
            (name, _valid_by_type(required, exact_type, check))
            for name, required, exact_type, check in self._fields
            if required or check is not None  # else every value passes
        )

    def invalid_items(self, items: Sequence[Mapping[str, Any]]) -> dict[int, list[FieldProblem]]:
        """Index → `problems` of each invalid item of `items`. A field at a time over all the
        items: an item whose values all have a type that alone proves them valid (the usual
        case) is cleared by a list comprehension and set operations per field; the others get
        `problems`."""
        suspects: set[int] = set()
        for name, proven in self._columns:
            values = [item.get(name) for item in items]
            if set(map(type, values)) <= proven:
                continue
            suspects.update(index for index, value in enumerate(values)
                            if type(value) not in proven)  # fmt: skip
        found = {index: self.problems(items[index]) for index in sorted(suspects)}
        return {index: problems for index, problems in found.items() if problems}

    def problems(self, item: Mapping[str, Any]) -> list[FieldProblem]:
        """Every invalid field of `item`, in spec order; empty when the item is valid."""
        found: list[FieldProblem] = []
        for name, required, exact_type, check in self._fields:
            value = item.get(name)
            if value is None:
                if required:
                    found.append(FieldProblem(name, *_VALUE_REQUIRED))
            elif type(value) is exact_type:
                continue
            elif check is not None:
                problem = check(value)
                if problem is not None:
                    found.append(FieldProblem(name, *problem))
        return found
