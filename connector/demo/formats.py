"""`demo --format avro|protobuf|json_schema`: the demo's samples written as a producer with its
own registry schema writes them, and the results read back with the registry, through the
registry simulator (`connector.devtools.registry`) that the demo starts beside the broker.

The producer's schema is its own (`DemoTask`: `id`, `text`), not the connector's: the uploader
reads each record with its writer's schema. Samples malformed as bytes (bad JSON, not an object)
are left as they are: in a registry format they are records without the wire format, dead
letters `invalid_schema`; the sample without `text` is encoded and is an `invalid_item`.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any

import orjson
from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroSerializer
from confluent_kafka.schema_registry.json_schema import JSONSerializer
from confluent_kafka.schema_registry.protobuf import ProtobufSerializer
from confluent_kafka.serialization import MessageField, SerializationContext
from google.protobuf import descriptor_pb2, json_format

from connector.contract.dead_letters import INVALID_SCHEMA
from connector.demo.samples import SampleRecord
from connector.formats.decoding import DECODERS
from connector.formats.protobuf_schema import message_class

DEMO_TASK_AVRO = {
    "type": "record",
    "name": "DemoTask",
    "namespace": "demo.producer",
    "fields": [
        {"name": "id", "type": "string"},
        {"name": "text", "type": ["null", "string"], "default": None},
    ],
}
DEMO_TASK_JSON_SCHEMA = {
    "type": "object",
    "properties": {"id": {"type": "string"}, "text": {"type": "string"}},
    "required": ["id"],
}
Serialize = Callable[[dict[str, Any]], bytes]


def _demo_task_message() -> Any:
    """`message DemoTask { string id = 1; optional string text = 2; }`"""
    file = descriptor_pb2.FileDescriptorProto(
        name="demo_task.proto", package="demo", syntax="proto3"
    )
    task = file.message_type.add(name="DemoTask")
    field_type = descriptor_pb2.FieldDescriptorProto
    task.field.add(name="id", number=1, type=field_type.TYPE_STRING)
    text = task.field.add(name="text", number=2, type=field_type.TYPE_STRING)
    text.proto3_optional = True
    text.oneof_index = 0
    task.oneof_decl.add(name="_text")
    return message_class(file, "demo.DemoTask")


def sample_serializer(value_format: str, registry_url: str, topic: str) -> Serialize:
    client = SchemaRegistryClient({"url": registry_url})
    context = SerializationContext(topic, MessageField.VALUE)
    if value_format == "avro":
        avro = AvroSerializer(client, json.dumps(DEMO_TASK_AVRO))
        return lambda task: bytes(avro(task, context))
    if value_format == "json_schema":
        js = JSONSerializer(json.dumps(DEMO_TASK_JSON_SCHEMA), client)
        return lambda task: bytes(js(task, context))
    cls = _demo_task_message()
    proto = ProtobufSerializer(cls, client, {"use.deprecated.format": False})
    return lambda task: bytes(proto(json_format.ParseDict(task, cls()), context))


def encoded_samples(
    records: Sequence[SampleRecord], value_format: str, registry_url: str, topic: str
) -> list[SampleRecord]:
    """The samples in `value_format`, each with the dead-letter reason it should now get."""
    serialize = sample_serializer(value_format, registry_url, topic)
    encoded = []
    for record in records:
        try:
            task = orjson.loads(record.value)
        except orjson.JSONDecodeError:
            task = None
        if not isinstance(task, dict):
            encoded.append(replace(record, expected=INVALID_SCHEMA))
            continue
        fields = {name: task[name] for name in ("id", "text") if name in task}
        encoded.append(replace(record, value=serialize(fields)))
    return encoded


def result_decoder(value_format: str, registry_url: str) -> Callable[[bytes], Any]:
    """Results of `value_format` as the JSON value they hold (decoded with the registry)."""
    if value_format == "json":
        return orjson.loads
    return DECODERS[value_format](SchemaRegistryClient({"url": registry_url}))
