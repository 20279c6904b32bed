"""Avro, Protobuf and JSON Schema in and out, on a real broker and over TCP: records written by
confluent-kafka's serializers under a producer's own schema go through `toloka-connector run`
(uploader → the API simulator → poller) and come out on the output topic in the same format,
decoded here with the schema the registry simulator holds for their id.

What each case shows: the input is decoded with the writer's schema (the producer's, not one the
connector knows), validated against input_spec as JSON is (a record without `text` is an
`invalid_item` dead letter), a record its schema does not read is an `invalid_schema` dead letter
with its bytes unchanged; the output schema is registered under `<output topic>-value` and every
result carries the item's fields with the app's output_spec typed.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from functools import partial
from typing import Any

import httpx
import pytest
from confluent_kafka import Message, Producer
from confluent_kafka.schema_registry import Schema, SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroDeserializer, AvroSerializer
from confluent_kafka.schema_registry.json_schema import JSONDeserializer, JSONSerializer
from confluent_kafka.schema_registry.protobuf import ProtobufDeserializer, ProtobufSerializer
from confluent_kafka.serialization import MessageField, SerializationContext
from google.protobuf import descriptor_pb2, descriptor_pool, json_format, message_factory

from connector.contract.dead_letters import INVALID_ITEM, INVALID_SCHEMA, REASON_HEADER
from connector.devtools.registry.server import RegistrySimulator
from testkit.brokers import ControllableBroker
from testkit.kafka import headers_of, uncommitted
from testkit.processes import ConnectorProcess
from testkit.waiting import wait_for
from tests.fixtures.brokers import NewTopic, ReadTopic
from tests.fixtures.console import Console
from tests.fixtures.simulator import SimulatorHandle

pytestmark = [pytest.mark.integration, pytest.mark.slow]

Serialize = Callable[[dict[str, Any], SerializationContext], bytes]
VALID = 5
UNKNOWN_SCHEMA_ID = b"\x00\x00\x00\x03\xe7not a record of any schema"

TASK_AVRO = {
    "type": "record",
    "name": "Task",
    "namespace": "producer.side",
    "fields": [
        {"name": "id", "type": "string"},
        {"name": "text", "type": ["null", "string"], "default": None},
        {"name": "source", "type": "string", "default": "web"},
    ],
}
TASK_JSON_SCHEMA = {
    "type": "object",
    "properties": {"id": {"type": "string"}, "text": {"type": "string"}},
    "required": ["id"],
}


def task_message_class() -> Any:
    """`message Task { string id = 1; optional string text = 7; }`, the producer's own."""
    file = descriptor_pb2.FileDescriptorProto(
        name="task.proto", package="producer", syntax="proto3"
    )
    task = file.message_type.add(name="Task")
    F = descriptor_pb2.FieldDescriptorProto  # noqa: N806
    task.field.add(name="id", number=1, type=F.TYPE_STRING, label=F.LABEL_OPTIONAL)
    text = task.field.add(name="text", number=7, type=F.TYPE_STRING, label=F.LABEL_OPTIONAL)
    text.proto3_optional = True
    text.oneof_index = 0
    task.oneof_decl.add(name="_text")
    pool = descriptor_pool.DescriptorPool()
    pool.Add(file)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName("producer.Task"))


def input_serializer(value_format: str, client: SchemaRegistryClient) -> Serialize:
    if value_format == "avro":
        avro: Serialize = AvroSerializer(client, json.dumps(TASK_AVRO))
        return avro
    if value_format == "json_schema":
        js: Serialize = JSONSerializer(json.dumps(TASK_JSON_SCHEMA), client)
        return js
    cls = task_message_class()
    proto = ProtobufSerializer(cls, client, {"use.deprecated.format": False})
    return lambda task, ctx: proto(json_format.ParseDict(task, cls()), ctx)


def output_value(
    value_format: str, client: SchemaRegistryClient, value: bytes | None
) -> dict[str, Any]:
    """A result decoded with the schema the registry holds for its id (the writer's)."""
    assert value is not None
    if value_format == "avro":
        decoded: dict[str, Any] = AvroDeserializer(client)(value, None)
        return decoded
    if value_format == "json_schema":
        ctx = SerializationContext("any", MessageField.VALUE)
        conf = {"subject.name.strategy": lambda _ctx, _name: None}
        decoded = JSONDeserializer(None, schema_registry_client=client, conf=conf)(value, ctx)
        return dict(decoded)
    schema = client.get_schema(int.from_bytes(value[1:5], "big"), fmt="serialized")
    file = descriptor_pb2.FileDescriptorProto.FromString(base64.b64decode(schema.schema_str or ""))
    pool = descriptor_pool.DescriptorPool()
    pool.Add(file)
    cls = message_factory.GetMessageClass(pool.FindMessageTypeByName(f"{file.package}.TolokaItem"))
    message = ProtobufDeserializer(cls, {"use.deprecated.format": False})(value, None)
    as_dict: dict[str, Any] = json_format.MessageToDict(message, preserving_proto_field_name=True)
    return as_dict


def run_environ(
    kafka_broker: ControllableBroker,
    simulator: SimulatorHandle,
    registry: RegistrySimulator,
    input_topic: str,
    output_topic: str,
    dlq_topic: str,
    state_topic: str,
) -> dict[str, str]:
    """A `run` of the simulator's project over these topics, polling fast, with the registry."""
    return {
        "KAFKA_BOOTSTRAP_SERVERS": kafka_broker.bootstrap_servers,
        "TOLOKA_BASE_URL": simulator.base_url,
        "TOLOKA_API_KEY": simulator.api_key,
        "TOLOKA_APP_PROJECT_ID": simulator.project_id,
        "CONNECTOR_INPUT_TOPIC": input_topic,
        "CONNECTOR_OUTPUT_TOPIC": output_topic,
        "CONNECTOR_DLQ_TOPIC": dlq_topic,
        "CONNECTOR_STATE_TOPIC": state_topic,
        "CONNECTOR_GROUP_ID": f"group-{input_topic}",
        "CONNECTOR_POLL_INTERVAL_SECONDS": "0.2",
        "CONNECTOR_IDLE_POLL_INTERVAL_SECONDS": "0.2",
        "SCHEMA_REGISTRY_URL": registry.url,
    }


@pytest.mark.parametrize("value_format", ["avro", "protobuf", "json_schema"])
def test_a_registry_format_round_trips_through_the_connector(
    value_format: str,
    kafka_broker: ControllableBroker,
    new_topic: NewTopic,
    read_topic: ReadTopic,
    simulator: SimulatorHandle,
    registry: RegistrySimulator,
    console: Console,
) -> None:
    input_topic, output_topic, dlq_topic = new_topic(), new_topic(), new_topic()
    state_topic = new_topic(compacted=True)
    client = SchemaRegistryClient({"url": registry.url})
    serialize = input_serializer(value_format, client)
    context = SerializationContext(input_topic, MessageField.VALUE)
    tasks = [{"id": f"{value_format}-{n}", "text": f"text number {n}"} for n in range(VALID)]
    invalid = serialize({"id": f"{value_format}-no-text"}, context)
    producer = Producer({"bootstrap.servers": kafka_broker.bootstrap_servers})
    for value in [*(serialize(task, context) for task in tasks), invalid, UNKNOWN_SCHEMA_ID]:
        producer.produce(input_topic, value=value)
    assert producer.flush(30) == 0

    topics = (input_topic, output_topic, dlq_topic, state_topic)
    run = console.start(
        "run",
        env={
            **run_environ(kafka_broker, simulator, registry, *topics),
            "CONNECTOR_INPUT_FORMAT": value_format,
            "CONNECTOR_OUTPUT_FORMAT": value_format,
        },
    )

    def every_result() -> list[Message] | None:
        found = read_topic(output_topic, timeout=5)
        return found if len(found) >= VALID else None

    results = wait_for(every_result, "every result on the output topic", 120, guard=run.check_alive)
    run.interrupt()
    assert run.exit_code() == 0, run.log_tail()

    assert len(results) == VALID
    decoded = [output_value(value_format, client, message.value()) for message in results]
    by_input_id = {item["input_data"]["id"]: item for item in decoded}
    assert sorted(by_input_id) == sorted(task["id"] for task in tasks)
    for task in tasks:
        item = by_input_id[task["id"]]
        assert item["input_data"]["text"] == task["text"]
        assert item["status"] == "COMPLETED"
        assert item["app_project_id"] == simulator.project_id
        assert isinstance(item["output_data"]["result"], list)
        assert isinstance(item["output_data"]["confidence"], float)
    assert f"{output_topic}-value" in registry.state.subject_names()

    letters = {
        headers_of(message)[REASON_HEADER]: message.value() for message in read_topic(dlq_topic)
    }
    assert letters == {INVALID_ITEM: invalid, INVALID_SCHEMA: UNKNOWN_SCHEMA_ID}


def test_check_verifies_the_registry_and_the_output_subject(
    kafka_broker: ControllableBroker,
    new_topic: NewTopic,
    simulator: SimulatorHandle,
    registry: RegistrySimulator,
    console: Console,
) -> None:
    output_topic = new_topic()
    env = {
        "KAFKA_BOOTSTRAP_SERVERS": kafka_broker.bootstrap_servers,
        "TOLOKA_BASE_URL": simulator.base_url,
        "TOLOKA_API_KEY": simulator.api_key,
        "TOLOKA_APP_PROJECT_ID": simulator.project_id,
        "CONNECTOR_INPUT_TOPIC": new_topic(),
        "CONNECTOR_OUTPUT_TOPIC": output_topic,
        "CONNECTOR_DLQ_TOPIC": new_topic(),
        "CONNECTOR_STATE_TOPIC": new_topic(compacted=True),
        "CONNECTOR_OUTPUT_FORMAT": "avro",
        "SCHEMA_REGISTRY_URL": registry.url,
    }
    subject = f"{output_topic}-value"

    fresh = console.run("check", env=env)
    assert fresh.returncode == 0, fresh.stdout + fresh.stderr
    assert f"ok    output subject {subject}: new" in fresh.stdout

    missing = console.run("check", env={**env, "CONNECTOR_OUTPUT_SUBJECT": "no-such-subject"})
    assert missing.returncode == 1
    assert "FAIL  output subject no-such-subject: does not exist" in missing.stdout

    client = SchemaRegistryClient({"url": registry.url})
    taken = {"type": "record", "name": "TolokaItem", "namespace": "toloka.connector",
             "fields": [{"name": "id", "type": "long"}]}  # fmt: skip
    client.register_schema(subject, Schema(json.dumps(taken), "AVRO"))
    incompatible = console.run("check", env=env)
    assert incompatible.returncode == 1
    assert f"FAIL  output subject {subject}: refuses the avro schema" in incompatible.stdout

    unreachable = console.run("check", env={**env, "SCHEMA_REGISTRY_URL": "http://127.0.0.1:9"})
    assert unreachable.returncode == 1
    assert "FAIL  Schema Registry reachable" in unreachable.stdout


def test_the_demo_runs_with_avro(console: Console) -> None:
    demo = console.run(
        "demo", "--format", "avro", "--items", "200", "--rate", "0", "--json", "--metrics-port",
        "0", timeout=180,
    )  # fmt: skip
    assert demo.returncode == 0, demo.stderr[-3000:]
    summary = json.loads(demo.stdout)
    assert summary["ok"]
    assert summary["published"] == summary["produced_valid"] == 198
    # Samples 50 and 150 are malformed as bytes: not the wire format.
    assert summary["dead_letters_by_reason"] == {INVALID_SCHEMA: 2}


def test_the_registry_password_is_never_printed(
    kafka_broker: ControllableBroker,
    new_topic: NewTopic,
    simulator: SimulatorHandle,
    console: Console,
) -> None:
    password = "registry-secret-7f3a9"
    with RegistrySimulator(user_info=f"connector:{password}") as guarded:
        env = {
            "KAFKA_BOOTSTRAP_SERVERS": kafka_broker.bootstrap_servers,
            "TOLOKA_BASE_URL": simulator.base_url,
            "TOLOKA_API_KEY": simulator.api_key,
            "TOLOKA_APP_PROJECT_ID": simulator.project_id,
            "CONNECTOR_OUTPUT_TOPIC": new_topic(),
            "CONNECTOR_OUTPUT_FORMAT": "protobuf",
            "CONNECTOR_LOG_LEVEL": "DEBUG",
            "SCHEMA_REGISTRY_URL": guarded.url,
            "SCHEMA_REGISTRY_BASIC_AUTH_USER_INFO": f"connector:{password}",
        }
        right = console.run("check", env=env)
        wrong = console.run(
            "check", env={**env, "SCHEMA_REGISTRY_BASIC_AUTH_USER_INFO": f"connector:{password}x"}
        )
    assert "ok    Schema Registry reachable" in right.stdout, right.stdout
    assert "FAIL  Schema Registry reachable" in wrong.stdout, wrong.stdout
    for done in (right, wrong):
        assert password not in done.stdout + done.stderr


def test_a_registry_outage_at_start_is_waited_out_not_a_crash(
    kafka_broker: ControllableBroker,
    new_topic: NewTopic,
    read_topic: ReadTopic,
    simulator: SimulatorHandle,
    registry: RegistrySimulator,
    console: Console,
) -> None:
    """The poller registers its output schema before it leads: a registry answering 503 then
    (a restart behind its balancer) keeps the poller not ready, saying why, and tried again
    with back-off; before, the process exited 1 and its orchestrator restarted it in a loop."""
    input_topic, output_topic = new_topic(), new_topic()
    registry.unavailable = True
    producer = Producer({"bootstrap.servers": kafka_broker.bootstrap_servers})
    for n in range(VALID):
        producer.produce(input_topic, value=json.dumps({"id": f"o-{n}", "text": f"t{n}"}))
    assert producer.flush(30) == 0
    topics = (input_topic, output_topic, new_topic(), new_topic(compacted=True))
    run = console.start(
        "run",
        env={
            **run_environ(kafka_broker, simulator, registry, *topics),
            "CONNECTOR_API_BACKOFF_CAP_SECONDS": "0.5",
            "CONNECTOR_OUTPUT_FORMAT": "avro",
        },
    )
    try:
        refused = wait_for(
            partial(_readiness_naming, run, "from the Schema Registry; waiting: "),
            "readiness naming the registry's outage", 60, guard=run.check_alive,
        )  # fmt: skip
        assert refused.status_code == 503
        assert "HTTP 503" in refused.text, refused.text
        wait_for(lambda: len(registry.requests) >= 3, "the registration tried again", 30,
                 guard=run.check_alive)  # fmt: skip
        registry.unavailable = False
        results = wait_for(
            partial(_at_least, read_topic, output_topic, VALID), "every result", 90,
            guard=run.check_alive,
        )  # fmt: skip
        wait_for(run.ready, "ready once the registry answers", 30, guard=run.check_alive)
    finally:
        run.interrupt()
    assert run.exit_code() == 0, run.log_tail()
    assert len(results) == VALID
    client = SchemaRegistryClient({"url": registry.url})
    decoded = {output_value("avro", client, r.value())["input_data"]["id"] for r in results}
    assert decoded == {f"o-{n}" for n in range(VALID)}
    assert len(list(run.lines("cannot read the output schema yet"))) == 1, run.log_tail()


def _readiness_naming(run: ConnectorProcess, text: str) -> httpx.Response | None:
    response = run.get("/readyz")
    return response if response is not None and text in response.text else None


def _at_least(read_topic: ReadTopic, topic: str, count: int) -> list[Message] | None:
    found = read_topic(topic, timeout=5)
    return found if len(found) >= count else None


TASK_AVRO_V2 = {
    **TASK_AVRO,
    "fields": [*TASK_AVRO["fields"], {"name": "lang", "type": "string", "default": "en"}],
}


@pytest.mark.parametrize("outage", ["503", "connection refused"])
def test_a_registry_outage_while_the_uploader_decodes_is_waited_out_not_a_crash(
    outage: str,
    kafka_broker: ControllableBroker,
    new_topic: NewTopic,
    read_topic: ReadTopic,
    simulator: SimulatorHandle,
    registry: RegistrySimulator,
    console: Console,
) -> None:
    """A producer's new schema version meets a registry outage mid-run: the uploader cannot
    read the writer's schema of those records. It waits with back-off, not ready (naming the
    registry and why), commits nothing past the undecoded records and judges none of them (an
    unknown schema id is not dead-lettered while the registry does not answer); once the
    registry answers, everything is uploaded, the unknown id is an `invalid_schema` dead letter,
    and the process stops cleanly. Before, the role ended with exit 1 (a restart loop)."""
    input_topic, output_topic, dlq_topic = new_topic(), new_topic(), new_topic()
    topics = (input_topic, output_topic, dlq_topic, new_topic(compacted=True))
    client = SchemaRegistryClient({"url": registry.url})
    context = SerializationContext(input_topic, MessageField.VALUE)
    first = AvroSerializer(client, json.dumps(TASK_AVRO))
    second = AvroSerializer(client, json.dumps(TASK_AVRO_V2))  # a schema id the uploader never read
    producer = Producer({"bootstrap.servers": kafka_broker.bootstrap_servers})

    def produce(serialize: Serialize, prefix: str) -> list[str]:
        ids = [f"{prefix}-{n}" for n in range(VALID)]
        for item_id in ids:
            producer.produce(input_topic, value=serialize({"id": item_id, "text": "t"}, context))
        assert producer.flush(30) == 0
        return ids

    before = produce(first, "before")
    env = {
        **run_environ(kafka_broker, simulator, registry, *topics),
        "CONNECTOR_INPUT_FORMAT": "avro",
        "CONNECTOR_API_BACKOFF_CAP_SECONDS": "0.5",
        "CONNECTOR_LOG_LEVEL": "DEBUG",
    }
    run = console.start("run", env=env)
    group = env["CONNECTOR_GROUP_ID"]
    bootstrap = kafka_broker.bootstrap_servers
    try:
        wait_for(partial(_at_least, read_topic, output_topic, VALID), "the first results", 90,
                 guard=run.check_alive)  # fmt: skip
        second({"id": "registers-v2", "text": "t"}, context)  # registered before the outage
        port = int(registry.url.rsplit(":", 1)[1])
        if outage == "503":
            registry.unavailable = True
        else:
            registry.stop()
        during = produce(second, "during")
        producer.produce(input_topic, value=UNKNOWN_SCHEMA_ID)
        after = produce(first, "after")  # a known schema id, behind the undecoded records
        held = 2 * VALID + 1
        refused = wait_for(
            partial(_readiness_naming, run, "the Schema Registry"),
            "readiness naming the registry's outage", 60, guard=run.check_alive,
        )  # fmt: skip
        assert refused.status_code == 503
        reason = "HTTP 503" if outage == "503" else "cannot be reached"
        assert reason in refused.text, refused.text
        wait_for(lambda: any(run.lines("writer's schema (try 3)")),
                 "the schema asked for again", 30, guard=run.check_alive)  # fmt: skip
        assert uncommitted(bootstrap, input_topic, group) == held
        assert read_topic(dlq_topic, timeout=1) == []
        if outage == "503":
            registry.unavailable = False
        else:
            registry = RegistrySimulator(port=port, state=registry.state).start()
        try:
            expected = VALID + held - 1
            results = wait_for(partial(_at_least, read_topic, output_topic, expected),
                               "every result", 90, guard=run.check_alive)  # fmt: skip
            wait_for(lambda: uncommitted(bootstrap, input_topic, group) == 0,
                     "every input offset committed", 30, guard=run.check_alive)  # fmt: skip
            wait_for(run.ready, "ready once the registry answers", 30, guard=run.check_alive)
        finally:
            if outage != "503":
                registry.stop()
    finally:
        run.interrupt()
    assert run.exit_code() == 0, run.log_tail()
    published = [json.loads(r.value() or b"")["input_data"]["id"] for r in results]
    assert sorted(published) == sorted([*before, *during, *after])
    letters = [(headers_of(m)[REASON_HEADER], m.value()) for m in read_topic(dlq_topic)]
    assert letters == [(INVALID_SCHEMA, UNKNOWN_SCHEMA_ID)]
    assert len(list(run.lines("schema-registry: up -> down"))) == 1, run.log_tail()
    assert len(list(run.lines("schema-registry: down -> up"))) == 1, run.log_tail()
