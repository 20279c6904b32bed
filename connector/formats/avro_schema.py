"""The output record's Avro schema, from the item shape (docs/formats.md has the mapping)."""

from __future__ import annotations

from typing import Any

from connector.formats.shape import (
    DATA_FIELDS,
    JSON_TEXT_FIELDS,
    TEXT_FIELDS,
    UNMAPPED,
    FieldShape,
    ItemShape,
)

NAMESPACE = "toloka.connector"
RECORD_NAME = "TolokaItem"
_TYPES = {
    "string": "string",
    "integer": "long",
    "float": "double",
    "boolean": "boolean",
    "json": "string",
}


def _nullable(name: str, avro_type: Any) -> dict[str, Any]:
    return {"name": name, "type": ["null", avro_type], "default": None}


def _field(shape: FieldShape) -> dict[str, Any]:
    scalar = _TYPES[shape.kind]
    return _nullable(shape.name, {"type": "array", "items": scalar} if shape.repeated else scalar)


def avro_schema(shape: ItemShape) -> dict[str, Any]:
    data = dict(zip(DATA_FIELDS, (shape.input_fields, shape.output_fields), strict=True))
    fields: list[dict[str, Any]] = [{"name": "id", "type": "string"}]
    for name in ("app_project_id", "status"):
        fields.append(_nullable(name, "string"))
    for name, record_name in (("input_data", "InputData"), ("output_data", "OutputData")):
        record = {"type": "record", "name": record_name, "fields": [_field(f) for f in data[name]]}
        fields.append(_nullable(name, record))
    fields += [_nullable(name, "string") for name in JSON_TEXT_FIELDS]
    fields += [_nullable(name, "string") for name in TEXT_FIELDS[2:]]
    fields.append({"name": UNMAPPED, "type": {"type": "map", "values": "string"}, "default": {}})
    return {"type": "record", "name": RECORD_NAME, "namespace": NAMESPACE, "fields": fields}
