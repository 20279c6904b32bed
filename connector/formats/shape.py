"""The output record's shape, shared by the Avro and Protobuf schemas: which fields, which types.

The record holds the fields of the JSON result (`id`, `app_project_id`, `status`, `input_data`,
`output_data`, `errors`, `created_at`, `started_at`, `finished_at`); `input_data` and
`output_data` are records whose fields follow the app's `input_spec` and `output_spec`. What a
typed schema cannot hold is kept as JSON text, so nothing the API sent is lost:
- a field of type `json` (any JSON value), and `errors`, as JSON text;
- any field the schema has no place for (a field outside the specs, a name the schema language
  does not allow, another field of the item) in `unmapped`: a map from its path
  (`input_data.extra`, `priority`) to its JSON text.
Every field but `id` may be absent (null): the specs of an app change, items of an older spec
keep flowing, and a field with a null default is a compatible change in either direction.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from connector.toloka.models import FieldSpec
from connector.validation import ARRAY_PREFIX

TEXT_FIELDS = ("app_project_id", "status", "created_at", "started_at", "finished_at")
"""Item fields that the API sends as strings (or null)."""
JSON_TEXT_FIELDS = ("errors",)
DATA_FIELDS = ("input_data", "output_data")
UNMAPPED = "unmapped"

SCALARS = {
    "string": "string",
    "file": "string",
    "url": "string",
    "coordinates": "string",
    "integer": "integer",
    "float": "float",
    "boolean": "boolean",
}
"""Toloka field type → the shape's scalar kind; any other type (json, one the connector does not
know) is carried as JSON text."""

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


@dataclass(frozen=True)
class FieldShape:
    name: str
    kind: str
    """string | integer | float | boolean | json (JSON text)"""
    repeated: bool


def field_shape(name: str, toloka_type: str) -> FieldShape:
    repeated = toloka_type.startswith(ARRAY_PREFIX)
    element = toloka_type[len(ARRAY_PREFIX) :] if repeated else toloka_type
    return FieldShape(name, SCALARS.get(element, "json"), repeated)


def data_fields(spec: Mapping[str, FieldSpec]) -> tuple[FieldShape, ...]:
    """The fields of a spec that a schema can name, in name order (stable across spec changes)."""
    return tuple(
        field_shape(name, spec[name].type) for name in sorted(spec) if _NAME.fullmatch(name)
    )


class UnencodableError(ValueError):
    """An item that the schema cannot hold (a value of another type than its spec says)."""


def json_text(value: Any) -> str:
    return orjson.dumps(value).decode()


@dataclass(frozen=True)
class ItemShape:
    input_fields: tuple[FieldShape, ...]
    output_fields: tuple[FieldShape, ...]

    @classmethod
    def of(
        cls, input_spec: Mapping[str, FieldSpec], output_spec: Mapping[str, FieldSpec]
    ) -> ItemShape:
        return cls(data_fields(input_spec), data_fields(output_spec))

    def record(self, item: Mapping[str, Any]) -> dict[str, Any]:
        """`item` (the API's JSON) as the typed record: JSON text where the shape says so, the
        rest in `unmapped`. Null values are left out."""
        record: dict[str, Any] = {}
        unmapped: dict[str, str] = {}
        for key, value in item.items():
            if value is None:
                continue
            if key == "id" or (key in TEXT_FIELDS and isinstance(value, str)):
                record[key] = value
            elif key in JSON_TEXT_FIELDS:
                record[key] = json_text(value)
            elif key in DATA_FIELDS and isinstance(value, dict):
                fields = self.input_fields if key == "input_data" else self.output_fields
                record[key] = _data(key, value, fields, unmapped)
            else:
                unmapped[key] = json_text(value)
        if not isinstance(record.get("id"), str):
            raise UnencodableError("the item has no string id")
        record[UNMAPPED] = unmapped
        return record


def _data(
    path: str, data: Mapping[str, Any], fields: tuple[FieldShape, ...], unmapped: dict[str, str]
) -> dict[str, Any]:
    shapes = {shape.name: shape for shape in fields}
    out: dict[str, Any] = {}
    for name, value in data.items():
        shape = shapes.get(name)
        if shape is None:
            unmapped[f"{path}.{name}"] = json_text(value)
        elif value is not None:
            out[name] = _typed(f"{path}.{name}", shape, value)
    return out


def _typed(path: str, shape: FieldShape, value: Any) -> Any:
    if not shape.repeated:
        return _scalar(path, shape.kind, value)
    if not isinstance(value, list):
        raise UnencodableError(f"{path}: an array is expected")
    return [_scalar(f"{path}[{i}]", shape.kind, element) for i, element in enumerate(value)]


_EXPECTED: dict[str, tuple[type, ...]] = {
    "string": (str,),
    "integer": (int,),
    "float": (int, float),
    "boolean": (bool,),
}


def _scalar(path: str, kind: str, value: Any) -> Any:
    if kind == "json":
        return json_text(value)
    if isinstance(value, bool) and kind != "boolean":
        raise UnencodableError(f"{path}: {kind} expected, got a boolean")
    if not isinstance(value, _EXPECTED[kind]):
        raise UnencodableError(f"{path}: {kind} expected, got {type(value).__name__}")
    if kind == "float":
        return float(value)  # type: ignore[arg-type]  # an int or a float, checked above
    return value
