"""A finished item (the API's JSON object) → the output record's value in Confluent's wire
format, with confluent-kafka's own serializers and a schema derived from the app's specs.

`result_encoder` derives the schema, then registers it under the output subject by encoding a
first item (a registry that refuses it, as incompatible with the subject's earlier versions, or
does not answer raises SchemaRegistryError there, before anything is published). After that the
serializers use the registry client's cache: encoding a result makes no request.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Mapping
from typing import Any

from confluent_kafka.schema_registry import Schema, SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroSerializer
from confluent_kafka.schema_registry.json_schema import JSONSerializer
from confluent_kafka.schema_registry.protobuf import ProtobufSerializer
from confluent_kafka.serialization import MessageField, SerializationContext

from connector.errors import RegistryUnavailableError, SchemaRegistryError
from connector.formats.avro_schema import avro_schema
from connector.formats.json_schema import json_schema
from connector.formats.protobuf_schema import (
    MESSAGE,
    PACKAGE,
    file_descriptor,
    item_message,
    message_class,
)
from connector.formats.shape import ItemShape, UnencodableError
from connector.schema_registry.client import registry_call
from connector.toloka.models import FieldSpec

Encode = Callable[[Mapping[str, Any]], bytes]
"""An item → the record value; raises UnencodableError for an item its schema cannot hold."""

Specs = tuple[Mapping[str, FieldSpec], Mapping[str, FieldSpec]]
"""The app's (input_spec, output_spec)."""


def output_subject(topic: str, configured: str) -> str:
    """The subject of the output schema: the configured one, else `<topic>-value`."""
    return configured or f"{topic}-value"


def _serializer_config(subject: str) -> dict[str, Any]:
    return {
        "auto.register.schemas": True,
        "subject.name.strategy": lambda _ctx, _record_name: subject,
    }


def _avro(client: SchemaRegistryClient, specs: Specs, subject: str) -> Callable[[Any, Any], Any]:
    shape = ItemShape.of(*specs)
    serializer = AvroSerializer(
        client, json.dumps(avro_schema(shape)), conf=_serializer_config(subject)
    )
    return lambda item, ctx: serializer(shape.record(item), ctx)


def _json_schema(
    client: SchemaRegistryClient, specs: Specs, subject: str
) -> Callable[[Any, Any], Any]:
    serializer = JSONSerializer(
        json.dumps(json_schema(*specs)), client, conf=_serializer_config(subject)
    )
    return lambda item, ctx: serializer(dict(item), ctx)


def _protobuf(
    client: SchemaRegistryClient, specs: Specs, subject: str
) -> Callable[[Any, Any], Any]:
    shape = ItemShape.of(*specs)
    cls = message_class(file_descriptor(shape), f"{PACKAGE}.{MESSAGE}")
    serializer = ProtobufSerializer(cls, client, conf=_serializer_config(subject))
    return lambda item, ctx: serializer(item_message(cls, shape.record(item)), ctx)


def derived_schema(value_format: str, specs: Specs) -> Schema:
    """The output schema the app's specs give, as the registry receives it (what `check`
    tests against the subject before the poller registers it)."""
    shape = ItemShape.of(*specs)
    if value_format == "avro":
        return Schema(json.dumps(avro_schema(shape)), "AVRO")
    if value_format == "json_schema":
        return Schema(json.dumps(json_schema(*specs)), "JSON")
    serialized = file_descriptor(shape).SerializeToString()
    return Schema(base64.b64encode(serialized).decode(), "PROTOBUF")


SERIALIZERS = {"avro": _avro, "json_schema": _json_schema, "protobuf": _protobuf}


def result_encoder(
    value_format: str, client: SchemaRegistryClient, *, topic: str, subject: str, specs: Specs
) -> Encode:
    """The encoder of results for `topic`, its schema registered under `subject` already."""
    serialize = SERIALIZERS[value_format](client, specs, subject)
    context = SerializationContext(topic, MessageField.VALUE)

    def encode(item: Mapping[str, Any]) -> bytes:
        try:
            value: bytes = serialize(item, context)
        except (UnencodableError, SchemaRegistryError):
            raise
        except Exception as error:
            raise UnencodableError(f"{type(error).__name__}: {error}") from error
        return value

    registry_call(
        lambda: serialize({"id": ""}, context),
        f"registering the {value_format} output schema under subject {subject}",
    )
    return encode


__all__ = [
    "Encode",
    "RegistryUnavailableError",
    "Specs",
    "derived_schema",
    "output_subject",
    "result_encoder",
]
