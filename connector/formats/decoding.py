"""Input record bytes in Confluent's wire format → the item (a JSON object), with the writer's
schema from the registry.

- avro: confluent-kafka's AvroDeserializer without a reader schema (the writer's schema decides);
- json_schema: its JSONDeserializer, which also validates the value against the writer's schema;
- protobuf: the writer's schema (a serialized FileDescriptorProto) from the registry, the message
  that the record's message indexes name, read into JSON as `protobuf_schema.message_value` says
  (confluent-kafka's ProtobufDeserializer needs a compiled class, which a connector cannot have).
A record that cannot be decoded (not the wire format, an unknown schema id, bytes its schema does
not read) raises UndecodableError: the uploader dead-letters it as `invalid_schema`. A registry
that does not answer raises RegistryUnavailableError instead: no record is refused for that.
"""

from __future__ import annotations

import base64
import io
from collections.abc import Callable
from typing import Any

from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroDeserializer
from confluent_kafka.schema_registry.json_schema import JSONDeserializer
from confluent_kafka.schema_registry.serde import SchemaId
from google.protobuf import descriptor_pb2
from google.protobuf.message import Message

from connector.errors import RegistryUnavailableError
from connector.formats.protobuf_schema import message_class, message_value
from connector.schema_registry.client import not_found, registry_call

MAGIC_BYTE = 0
PROTOBUF_TYPE = "PROTOBUF"
RecordDecoder = Callable[[bytes], Any]
"""Record value → the decoded value (an item when it is a JSON object)."""


class UndecodableError(ValueError):
    """The record is not a value of its schema: its message is the dead letter's."""


def _guarded(decode: RecordDecoder) -> RecordDecoder:
    """`decode`, with the registry's silence told apart from bad bytes."""

    def guarded(value: bytes) -> Any:
        if not value or value[0] != MAGIC_BYTE:
            raise UndecodableError("not Confluent's wire format (no magic byte 0)")
        if len(value) < 5:
            raise UndecodableError("shorter than the wire format's 5-byte header")
        try:
            return registry_call(lambda: decode(value), "reading the writer's schema")
        except RegistryUnavailableError:
            raise
        except Exception as error:
            if not_found(error.__cause__ or error):
                raise UndecodableError(
                    f"schema id {int.from_bytes(value[1:5], 'big')} is not in the registry"
                ) from error
            raise UndecodableError(f"{type(error).__name__}: {error}") from error

    return guarded


_WRITER_SCHEMA_ONLY = {"subject.name.strategy": lambda _ctx, _record_name: None}
"""No subject: the writer's schema (by the record's id) is the one read with, never a subject's
latest version."""


def avro_decoder(client: SchemaRegistryClient) -> RecordDecoder:
    deserializer = AvroDeserializer(client, conf=_WRITER_SCHEMA_ONLY)
    return _guarded(lambda value: deserializer(value, None))


def json_schema_decoder(client: SchemaRegistryClient) -> RecordDecoder:
    deserializer = JSONDeserializer(None, schema_registry_client=client, conf=_WRITER_SCHEMA_ONLY)
    return _guarded(lambda value: deserializer(value, None))


class _ProtobufReader:
    """Messages by (schema id, message indexes), their classes built once."""

    def __init__(self, client: SchemaRegistryClient) -> None:
        self._client = client
        self._classes: dict[tuple[int, tuple[int, ...]], type[Message]] = {}

    def __call__(self, value: bytes) -> dict[str, Any]:
        schema_id = SchemaId(PROTOBUF_TYPE)
        payload = schema_id.from_bytes(io.BytesIO(value))
        if schema_id.id is None:
            raise UndecodableError("no schema id")
        key = (int(schema_id.id), tuple(schema_id.message_indexes or [0]))
        cls = self._classes.get(key)
        if cls is None:
            cls = self._classes[key] = self._class(*key)
        return message_value(cls.FromString(payload.read()))

    def _class(self, schema_id: int, indexes: tuple[int, ...]) -> type[Message]:
        schema = self._client.get_schema(schema_id, fmt="serialized")
        file = descriptor_pb2.FileDescriptorProto.FromString(
            base64.b64decode(schema.schema_str or "")
        )
        if schema.references:
            raise UndecodableError("Protobuf schemas with references are not supported")
        names: list[str] = []
        messages: Any = file.message_type
        for index in indexes:
            if not 0 <= index < len(messages):
                raise UndecodableError(f"message index {index} is not in schema {schema_id}")
            names.append(messages[index].name)
            messages = messages[index].nested_type
        full_name = ".".join([file.package, *names] if file.package else names)
        return message_class(file, full_name)


def protobuf_decoder(client: SchemaRegistryClient) -> RecordDecoder:
    return _guarded(_ProtobufReader(client))


DECODERS: dict[str, Callable[[SchemaRegistryClient], RecordDecoder]] = {
    "avro": avro_decoder,
    "json_schema": json_schema_decoder,
    "protobuf": protobuf_decoder,
}
