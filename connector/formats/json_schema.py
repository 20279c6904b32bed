"""The output record's JSON Schema (draft-07, as Confluent's serializer validates): the item as
the API sends it, its `input_data`/`output_data` properties typed by the specs; every other
property allowed, so the JSON result and this one carry the same document."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from connector.formats.shape import field_shape
from connector.toloka.models import FieldSpec

_TYPES: dict[str, dict[str, Any]] = {
    "string": {"type": "string"},
    "integer": {"type": "integer"},
    "float": {"type": "number"},
    "boolean": {"type": "boolean"},
    "json": {},
}
TITLE = "TolokaItem"


def _property(toloka_type: str) -> dict[str, Any]:
    shape = field_shape("", toloka_type)
    scalar = _TYPES[shape.kind]
    typed = {"type": "array", "items": scalar} if shape.repeated else scalar
    return {"anyOf": [{"type": "null"}, typed]} if typed else {}


def _data(spec: Mapping[str, FieldSpec]) -> dict[str, Any]:
    return {
        "anyOf": [
            {"type": "null"},
            {
                "type": "object",
                "properties": {name: _property(spec[name].type) for name in sorted(spec)},
            },
        ]
    }


def json_schema(
    input_spec: Mapping[str, FieldSpec], output_spec: Mapping[str, FieldSpec]
) -> dict[str, Any]:
    nullable_text = {"type": ["null", "string"]}
    return {
        "$schema": "http://json-schema.org/draft-07/schema#",
        "title": TITLE,
        "type": "object",
        "required": ["id"],
        "properties": {
            "id": {"type": "string"},
            "app_project_id": nullable_text,
            "status": nullable_text,
            "input_data": _data(input_spec),
            "output_data": _data(output_spec),
            "created_at": nullable_text,
            "started_at": nullable_text,
            "finished_at": nullable_text,
        },
    }
