"""The registry formats without Kafka: the schemas an app's specs give, how they evolve when the
specs change (against the registry simulator's BACKWARD check, over HTTP), what the uploader
makes of a record in each format, and the simulator's own rules."""

from __future__ import annotations

import json
import socket
from typing import Any

import pytest
from confluent_kafka.schema_registry import Schema, SchemaRegistryClient
from confluent_kafka.schema_registry.error import SchemaRegistryError as ClientError
from pydantic import SecretStr

from connector.config import SchemaRegistrySettings, load_settings
from connector.contract.dead_letters import INVALID_ITEM, INVALID_SCHEMA, NOT_AN_OBJECT
from connector.devtools.registry.server import RegistrySimulator
from connector.errors import (
    ConfigError,
    RegistryCredentialsError,
    RegistryUnavailableError,
    SchemaRegistryError,
)
from connector.formats.decoding import DECODERS
from connector.formats.encoding import derived_schema, result_encoder
from connector.formats.shape import UnencodableError
from connector.schema_registry.client import registry_call, registry_client
from connector.toloka.models import FieldSpec
from connector.uploader.decode import Refusal, RegistryItemDecoder
from connector.validation import ItemValidator

FORMATS = ["avro", "protobuf", "json_schema"]
INPUT = {"id": FieldSpec(type="string"), "text": FieldSpec(type="string", required=True)}
OUTPUT = {"result": FieldSpec(type="array_string"), "confidence": FieldSpec(type="float")}
ITEM: dict[str, Any] = {
    "id": "item-1",
    "app_project_id": "p",
    "status": "COMPLETED",
    "input_data": {"id": "k1", "text": "hello", "extra": [1, 2]},
    "output_data": {"result": ["OK"], "confidence": 0.75},
    "errors": None,
    "created_at": "2024-05-01T10:00:00.000",
    "finished_at": "2024-05-01T10:00:03.000",
}


@pytest.fixture
def registry() -> Any:
    with RegistrySimulator() as started:
        yield started


def client_of(registry: RegistrySimulator, **conf: Any) -> SchemaRegistryClient:
    return SchemaRegistryClient({"url": registry.url, **conf})


@pytest.mark.parametrize("value_format", FORMATS)
def test_an_encoded_result_decodes_to_the_same_fields(
    value_format: str, registry: RegistrySimulator
) -> None:
    client = client_of(registry)
    encode = result_encoder(
        value_format, client, topic="out", subject="out-value", specs=(INPUT, OUTPUT)
    )
    asked = len(registry.requests)
    value = encode(ITEM)
    assert len(registry.requests) == asked, "encoding a result asks the registry nothing"
    decoded = DECODERS[value_format](client)(value)
    assert decoded["id"] == ITEM["id"]
    assert decoded["input_data"]["text"] == "hello"
    assert decoded["output_data"]["result"] == ["OK"]
    assert decoded["output_data"]["confidence"] == 0.75
    assert decoded["finished_at"] == ITEM["finished_at"]
    extra = decoded["input_data"].get("extra") or json.loads(
        decoded["unmapped"]["input_data.extra"]
    )
    assert extra == [1, 2], "a field outside the spec is kept (as JSON text where typed)"


@pytest.mark.parametrize("value_format", FORMATS)
def test_a_result_of_another_type_than_the_spec_is_unencodable(
    value_format: str, registry: RegistrySimulator
) -> None:
    encode = result_encoder(
        value_format, client_of(registry), topic="out", subject="s", specs=(INPUT, OUTPUT)
    )
    with pytest.raises(UnencodableError):
        encode({**ITEM, "output_data": {"confidence": "high"}})


@pytest.mark.parametrize("value_format", FORMATS)
def test_spec_changes_that_add_or_drop_fields_are_backward_compatible(
    value_format: str, registry: RegistrySimulator
) -> None:
    client = client_of(registry)
    grown = {
        **OUTPUT,
        "category": FieldSpec(type="string"),
        "scores": FieldSpec(type="array_float"),
    }
    shrunk = {"category": FieldSpec(type="string")}
    for output_spec in (OUTPUT, grown, shrunk):
        result_encoder(
            value_format, client, topic="out", subject="out-value", specs=(INPUT, output_spec)
        )
    assert registry.state.versions("out-value") == [1, 2, 3]


def test_a_field_whose_type_changes_is_refused_by_a_backward_subject(
    registry: RegistrySimulator,
) -> None:
    client = client_of(registry)
    result_encoder("avro", client, topic="out", subject="out-value", specs=(INPUT, OUTPUT))
    retyped = {**OUTPUT, "confidence": FieldSpec(type="string")}
    assert not client.test_compatibility("out-value", derived_schema("avro", (INPUT, retyped)))
    with pytest.raises(SchemaRegistryError, match="incompatible"):
        result_encoder("avro", client, topic="out", subject="out-value", specs=(INPUT, retyped))


@pytest.mark.parametrize("value_format", FORMATS)
def test_the_uploader_decodes_validates_and_refuses(
    value_format: str, registry: RegistrySimulator
) -> None:
    client = client_of(registry)
    encode = result_encoder(
        value_format, client, topic="t", subject="t-value", specs=(INPUT, OUTPUT)
    )
    decoder = RegistryItemDecoder(DECODERS[value_format](client))
    validator = ItemValidator(INPUT)
    item_of = {"id": "x", "input_data": {"text": "t"}}
    accepted = decoder(encode(item_of), 1_000_000, ItemValidator({}))
    assert isinstance(accepted, bytes)
    assert json.loads(accepted)["input_data"]["text"] == "t"
    missing_text = decoder(encode(item_of), 1_000_000, validator)
    assert isinstance(missing_text, Refusal)
    assert missing_text.reason == INVALID_ITEM  # the item itself has no `text`
    for garbage in (b"{}", b"\x00\x00\x00\x00\x2a\x01", b"\x00\x00"):
        refused = decoder(garbage, 1_000_000, validator)
        assert isinstance(refused, Refusal)
        assert refused.reason == INVALID_SCHEMA, garbage


def test_a_decoded_value_that_is_not_an_object_is_refused(registry: RegistrySimulator) -> None:
    client = client_of(registry)
    schema_id = client.register_schema("s", Schema('"string"', "AVRO"))
    value = b"\x00" + schema_id.to_bytes(4, "big") + b"\x04hi"
    refused = RegistryItemDecoder(DECODERS["avro"](client))(value, 1000, ItemValidator({}))
    assert refused == Refusal(NOT_AN_OBJECT, "the decoded value is a string, not an object")


def test_a_registry_that_does_not_answer_is_not_a_bad_record() -> None:
    client = SchemaRegistryClient({"url": "http://127.0.0.1:9", "max.retries": 0})
    decoder = RegistryItemDecoder(DECODERS["avro"](client))
    with pytest.raises(RegistryUnavailableError, match="SCHEMA_REGISTRY_URL"):
        decoder(b"\x00\x00\x00\x00\x01\x02", 1000, ItemValidator({}))


def test_a_registry_that_accepts_but_never_answers_is_not_a_bad_record() -> None:
    with socket.create_server(("127.0.0.1", 0)) as silent:  # listens, never answers
        url = f"http://127.0.0.1:{silent.getsockname()[1]}"
        client = SchemaRegistryClient({"url": url, "max.retries": 0, "timeout": 0.2})
        decoder = RegistryItemDecoder(DECODERS["avro"](client))
        with pytest.raises(RegistryUnavailableError, match="cannot be reached"):
            decoder(b"\x00\x00\x00\x00\x01\x02", 1000, ItemValidator({}))


@pytest.mark.parametrize("status", [408, 429, 500, 502, 503, 504])
def test_a_registry_too_busy_to_answer_is_an_outage_not_an_answer(status: int) -> None:
    """A 408 or 429 says nothing about the schema asked for: waited out like a 5xx, never a
    dead letter (Confluent Cloud's registry answers 429 to a burst of requests)."""

    def busy() -> None:
        raise ClientError(status, status * 100 + 1, "try again later")

    with pytest.raises(RegistryUnavailableError, match=f"HTTP {status}") as outage:
        registry_call(busy, "reading the writer's schema")
    assert not isinstance(outage.value, RegistryCredentialsError)


@pytest.mark.parametrize("status", [400, 404, 409, 422])
def test_a_registry_answer_about_the_request_is_not_an_outage(status: int) -> None:
    def refused() -> None:
        raise ClientError(status, status * 100 + 1, "not so")

    with pytest.raises(SchemaRegistryError) as answer:
        registry_call(refused, "reading the writer's schema")
    assert not isinstance(answer.value, RegistryUnavailableError)


def test_refused_credentials_and_an_outage_are_told_apart() -> None:
    """Both leave records undecided; only an outage is worth waiting for at start-up."""
    with RegistrySimulator(user_info="alice:s3cret") as guarded:
        wrong = SchemaRegistryClient({"url": guarded.url, "basic.auth.user.info": "alice:x"})
        with pytest.raises(RegistryCredentialsError, match="HTTP 401") as refused:
            registry_call(wrong.get_subjects, "listing subjects")
        assert "SCHEMA_REGISTRY_BASIC_AUTH_USER_INFO" in str(refused.value)
    with RegistrySimulator() as restarting:
        restarting.unavailable = True
        client = SchemaRegistryClient({"url": restarting.url, "max.retries": 0})
        with pytest.raises(RegistryUnavailableError, match="HTTP 503") as outage:
            registry_call(client.get_subjects, "listing subjects")
        assert not isinstance(outage.value, RegistryCredentialsError)


def test_the_simulator_requires_its_basic_auth_and_never_echoes_it() -> None:
    with RegistrySimulator(user_info="alice:s3cret") as registry:
        with pytest.raises(ClientError) as refused:
            SchemaRegistryClient({"url": registry.url}).get_subjects()
        assert refused.value.http_status_code == 401
        settings = SchemaRegistrySettings(
            url=registry.url, basic_auth_user_info=SecretStr("alice:s3cret")
        )
        client = registry_client(settings)
        assert client.get_subjects() == []
        assert "s3cret" not in str(refused.value)


def test_the_simulator_shares_ids_and_keeps_versions_per_subject(
    registry: RegistrySimulator,
) -> None:
    client = client_of(registry)
    schema = Schema('{"type": "record", "name": "A", "fields": []}', "AVRO")
    first = client.register_schema("a-value", schema)
    assert client.register_schema("b-value", schema) == first
    assert client.register_schema("a-value", schema) == first
    assert registry.state.versions("a-value") == [1]
    client.set_compatibility("a-value", "NONE")
    client.register_schema("a-value", Schema('"string"', "AVRO"))
    assert client.get_latest_version("a-value").version == 2
    with pytest.raises(ClientError) as unknown:
        client.get_schema(999)
    assert unknown.value.error_code == 40403


def test_a_registry_format_without_a_registry_url_is_a_configuration_error() -> None:
    environ = {
        "TOLOKA_API_KEY": "k",
        "TOLOKA_APP_PROJECT_ID": "p",
        "CONNECTOR_INPUT_FORMAT": "protobuf",
        "CONNECTOR_OUTPUT_FORMAT": "json_schema",
    }
    with pytest.raises(ConfigError) as caught:
        load_settings(environ=environ)
    assert caught.value.problems == [
        "SCHEMA_REGISTRY_URL: is required by CONNECTOR_INPUT_FORMAT=protobuf",
        "SCHEMA_REGISTRY_URL: is required by CONNECTOR_OUTPUT_FORMAT=json_schema",
    ]
    settings = load_settings(environ={**environ, "SCHEMA_REGISTRY_URL": "http://registry:8081"})
    assert settings.poller.output_format == "json_schema"
