"""The output record as a Protobuf message built at run time (descriptor_pb2 → a message class),
and the reading of any message into the JSON value an item is.

The message (proto3, package `toloka.connector`):
```
message TolokaItem {
  string id = 1;
  optional string app_project_id = 2;  optional string status = 3;
  InputData input_data = 4;  OutputData output_data = 5;
  optional string errors = 6;  optional string created_at = 7;
  optional string started_at = 8;  optional string finished_at = 9;
  map<string, string> unmapped = 10;
  message InputData { ... }  message OutputData { ... }   // one field per spec field
}
```
A spec field's number derives from its name (crc32, within 1..65535 outside the reserved
19000-19999), so a field keeps its number whatever fields come and go; a collision takes the next
free number in name order. Scalars are `optional` (presence kept), arrays `repeated` (an absent
array reads as empty).
"""

from __future__ import annotations

import base64
import zlib
from collections.abc import Iterable, Mapping
from typing import Any

from google.protobuf import descriptor_pb2, descriptor_pool, json_format, message_factory
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message

from connector.formats.shape import DATA_FIELDS, UNMAPPED, FieldShape, ItemShape, UnencodableError

PACKAGE = "toloka.connector"
MESSAGE = "TolokaItem"
FILE_NAME = "toloka_item.proto"
_F = descriptor_pb2.FieldDescriptorProto
_TYPES = {
    "string": _F.TYPE_STRING,
    "integer": _F.TYPE_INT64,
    "float": _F.TYPE_DOUBLE,
    "boolean": _F.TYPE_BOOL,
    "json": _F.TYPE_STRING,
}
_MAX_NUMBER = 65_535
_RESERVED = range(19_000, 20_000)


def field_numbers(names: Iterable[str]) -> dict[str, int]:
    """A stable field number per name (crc32), collisions moved to the next free number."""
    taken: set[int] = set()
    numbers: dict[str, int] = {}
    for name in sorted(names):
        number = zlib.crc32(name.encode()) % _MAX_NUMBER + 1
        while number in taken or number in _RESERVED:
            number = number % _MAX_NUMBER + 1
        taken.add(number)
        numbers[name] = number
    return numbers


def _add_field(
    message: descriptor_pb2.DescriptorProto,
    name: str,
    number: int,
    field_type: int,
    *,
    repeated: bool = False,
    optional: bool = False,
    type_name: str = "",
) -> None:
    field = message.field.add(name=name, number=number, type=field_type)
    field.label = _F.LABEL_REPEATED if repeated else _F.LABEL_OPTIONAL
    if type_name:
        field.type_name = type_name
    if optional:  # proto3 `optional`: a synthetic oneof of its own
        field.proto3_optional = True
        field.oneof_index = len(message.oneof_decl)
        message.oneof_decl.add(name=f"_{name}")


def _data_message(name: str, fields: tuple[FieldShape, ...]) -> descriptor_pb2.DescriptorProto:
    message = descriptor_pb2.DescriptorProto(name=name)
    numbers = field_numbers(f.name for f in fields)
    for shape in fields:
        _add_field(
            message, shape.name, numbers[shape.name], _TYPES[shape.kind],
            repeated=shape.repeated, optional=not shape.repeated,
        )  # fmt: skip
    return message


def file_descriptor(shape: ItemShape) -> descriptor_pb2.FileDescriptorProto:
    file = descriptor_pb2.FileDescriptorProto(name=FILE_NAME, package=PACKAGE, syntax="proto3")
    item = file.message_type.add(name=MESSAGE)
    full = f".{PACKAGE}.{MESSAGE}"
    item.nested_type.append(_data_message("InputData", shape.input_fields))
    item.nested_type.append(_data_message("OutputData", shape.output_fields))
    entry = item.nested_type.add(name="UnmappedEntry")
    entry.options.map_entry = True
    _add_field(entry, "key", 1, _F.TYPE_STRING)
    _add_field(entry, "value", 2, _F.TYPE_STRING)
    _add_field(item, "id", 1, _F.TYPE_STRING)
    _add_field(item, "app_project_id", 2, _F.TYPE_STRING, optional=True)
    _add_field(item, "status", 3, _F.TYPE_STRING, optional=True)
    for number, (name, nested) in enumerate(
        zip(DATA_FIELDS, ("InputData", "OutputData"), strict=True), 4
    ):
        _add_field(item, name, number, _F.TYPE_MESSAGE, type_name=f"{full}.{nested}")
    for number, name in enumerate(("errors", "created_at", "started_at", "finished_at"), 6):
        _add_field(item, name, number, _F.TYPE_STRING, optional=True)
    _add_field(
        item, UNMAPPED, 10, _F.TYPE_MESSAGE, repeated=True, type_name=f"{full}.UnmappedEntry"
    )
    return file


def message_class(file: descriptor_pb2.FileDescriptorProto, name: str) -> type[Message]:
    """The class of message `name` (full name) of `file`, in a descriptor pool of its own."""
    pool = descriptor_pool.DescriptorPool()
    pool.Add(file)
    cls: type[Message] = message_factory.GetMessageClass(pool.FindMessageTypeByName(name))
    return cls


def item_message(cls: type[Message], record: Mapping[str, Any]) -> Message:
    """The message of a typed record (`ItemShape.record`)."""
    try:
        return json_format.ParseDict(record, cls(), ignore_unknown_fields=False)
    except json_format.ParseError as exc:
        raise UnencodableError(str(exc)) from exc


# --- reading any message ------------------------------------------------------------------------


def message_value(message: Message) -> dict[str, Any]:
    """A message as the JSON object an item is: fields without presence (proto3 scalars) with
    their value, default or not; fields with presence only when set; int64 as numbers (not the
    strings of Protobuf's JSON mapping); enums by name; bytes as base64 text."""
    descriptor: Descriptor = message.DESCRIPTOR
    value: dict[str, Any] = {}
    for field in descriptor.fields:
        if field.has_presence and not message.HasField(field.name):
            continue
        value[field.name] = _field_value(field, getattr(message, field.name))
    return value


def _field_value(field: FieldDescriptor, value: Any) -> Any:
    if field.message_type is not None and field.message_type.GetOptions().map_entry:
        value_field = field.message_type.fields_by_name["value"]
        return {str(k): _single(value_field, v) for k, v in value.items()}
    if _repeated(field):
        return [_single(field, element) for element in value]
    return _single(field, value)


def _repeated(field: FieldDescriptor) -> bool:
    # protobuf 6.31+ has `is_repeated` and deprecates `label`, which older versions only have.
    flag = getattr(field, "is_repeated", None)
    return bool(flag) if flag is not None else field.label == FieldDescriptor.LABEL_REPEATED


def _single(field: FieldDescriptor, value: Any) -> Any:
    if field.type == FieldDescriptor.TYPE_MESSAGE:
        return message_value(value)
    if field.type == FieldDescriptor.TYPE_ENUM:
        found = field.enum_type.values_by_number.get(value)
        return found.name if found is not None else value
    if field.type == FieldDescriptor.TYPE_BYTES:
        return base64.b64encode(value).decode()
    return value
