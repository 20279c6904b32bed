"""Whether a new schema may follow the ones a subject holds, per compatibility level.

The levels are the registry's (`BACKWARD` by default): BACKWARD means a reader of the new schema
can read data of the latest one, FORWARD the other way round, FULL both; the `_TRANSITIVE`
variants check every version instead of the latest; NONE checks nothing.

What "can read" means per schema type:
- AVRO: Avro's own schema resolution (the `avro` package's reader/writer compatibility checker),
  which is what the registry applies;
- JSON: a subset of the registry's rules for the open content model: a reader may not require a
  property the writer does not, and a property both declare must keep its type;
- PROTOBUF: a field number both declare must keep its type and label (a subset of the wire rules).
Anything the simulator cannot parse is refused with 42201 before these run.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Sequence
from typing import Any

from avro.compatibility import ReaderWriterCompatibilityChecker, SchemaCompatibilityType
from avro.schema import Schema as AvroSchema
from avro.schema import parse as parse_avro
from google.protobuf import descriptor_pb2

LEVELS = (
    "NONE",
    "BACKWARD",
    "BACKWARD_TRANSITIVE",
    "FORWARD",
    "FORWARD_TRANSITIVE",
    "FULL",
    "FULL_TRANSITIVE",
)


class InvalidSchemaError(ValueError):
    """The schema text does not parse as its type (the registry's 42201)."""


def parse(schema_type: str, text: str) -> Any:
    """The parsed schema; raises InvalidSchemaError."""
    try:
        if schema_type == "AVRO":
            return parse_avro(text)
        if schema_type == "JSON":
            parsed = json.loads(text)
            if not isinstance(parsed, dict | bool):
                raise InvalidSchemaError("a JSON Schema is an object or a boolean")
            return parsed
        if schema_type == "PROTOBUF":
            # Confluent's clients register a base64 FileDescriptorProto; .proto text is not parsed.
            return descriptor_pb2.FileDescriptorProto.FromString(base64.b64decode(text))
    except InvalidSchemaError:
        raise
    except Exception as exc:
        raise InvalidSchemaError(f"invalid {schema_type} schema: {exc}") from exc
    raise InvalidSchemaError(f"unknown schema type {schema_type}")


def _can_read(schema_type: str, reader: Any, writer: Any) -> bool:
    if schema_type == "AVRO":
        return _avro_can_read(reader, writer)
    if schema_type == "JSON":
        return _json_can_read(reader, writer)
    return _protobuf_can_read(reader, writer)


def _avro_can_read(reader: AvroSchema, writer: AvroSchema) -> bool:
    checker = ReaderWriterCompatibilityChecker()  # type: ignore[no-untyped-call]
    result = checker.get_compatibility(reader, writer)
    return bool(result.compatibility is SchemaCompatibilityType.compatible)


def _json_can_read(reader: Any, writer: Any) -> bool:
    if not isinstance(reader, dict) or not isinstance(writer, dict):
        return reader == writer or reader is True
    if reader.get("type") != writer.get("type"):
        return not reader.get("type")
    newly_required = set(reader.get("required", ())) - set(writer.get("required", ()))
    if newly_required:
        return False
    reader_props, writer_props = reader.get("properties", {}), writer.get("properties", {})
    return all(
        _json_can_read(reader_props[name], writer_props[name])
        for name in reader_props.keys() & writer_props.keys()
    ) and _json_can_read(reader.get("items", True), writer.get("items", True))


def _protobuf_fields(
    message: descriptor_pb2.DescriptorProto, prefix: str
) -> dict[tuple[str, int], tuple[int, int, str]]:
    fields = {(prefix, f.number): (f.type, f.label, f.type_name) for f in message.field}
    for nested in message.nested_type:
        fields.update(_protobuf_fields(nested, f"{prefix}.{nested.name}"))
    return fields


def _protobuf_can_read(
    reader: descriptor_pb2.FileDescriptorProto, writer: descriptor_pb2.FileDescriptorProto
) -> bool:
    ours: dict[tuple[str, int], tuple[int, int, str]] = {}
    theirs: dict[tuple[str, int], tuple[int, int, str]] = {}
    for message in reader.message_type:
        ours.update(_protobuf_fields(message, message.name))
    for message in writer.message_type:
        theirs.update(_protobuf_fields(message, message.name))
    return all(ours[key] == theirs[key] for key in ours.keys() & theirs.keys())


def compatible(level: str, schema_type: str, new: Any, previous: Sequence[Any]) -> bool:
    """Whether `new` may follow `previous` (oldest first, all of `schema_type`) under `level`."""
    if level == "NONE" or not previous:
        return True
    against = previous if level.endswith("_TRANSITIVE") else previous[-1:]
    backward = level.startswith(("BACKWARD", "FULL"))
    forward = level.startswith(("FORWARD", "FULL"))
    return all(
        (not backward or _can_read(schema_type, new, old))
        and (not forward or _can_read(schema_type, old, new))
        for old in against
    )
