"""Output values in a registry format (avro, protobuf, json_schema) instead of JSON.

The poller builds its result records as JSON (`publisher.output_record`); with another
CONNECTOR_OUTPUT_FORMAT its transactional producer is wrapped by `EncodingProducer`, which
writes each output-topic value with the encoder the app's specs gave (`connector.formats`). A
result its schema cannot hold (a value of another type than output_spec says) is written to the
dead-letter topic instead, in the same transaction, as `unencodable_result` with the item as
JSON: the cursor moves past it only when that dead letter commits, as for the poller's other
dead letters. The output topic's size limit is checked on the JSON record (the encoded value is
smaller for avro and protobuf, 5 bytes larger for json_schema); a larger encoded record is
refused by librdkafka and dead-lettered as `result_too_large` on the next try.

`OutputEncoding.prepare` runs once at start-up, after the app project was read: it reads the
app's specs and registers the derived schema under the output subject (TopicNameStrategy,
`<output topic>-value`, unless CONNECTOR_OUTPUT_SUBJECT names one); a registry that refuses it
(incompatible with the subject's earlier versions) or does not answer stops the poller with a
line naming the subject or SCHEMA_REGISTRY_URL.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import orjson

from connector.contract.dead_letters import UNENCODABLE_RESULT
from connector.contract.results import APP_PROJECT_ID_HEADER, ITEM_ID_HEADER
from connector.formats.shape import UnencodableError
from connector.kafka.clients import DeliveryCallback, Header, TransactionalProducer
from connector.metrics import Metrics
from connector.poller.dead_letters import dead_letter
from connector.toloka.models import App

if TYPE_CHECKING:
    from connector.formats.encoding import Encode

EncoderFactory = Callable[[App], "Encode"]
"""The app (its specs) → the encoder of its results, schema registered."""


class OutputEncoding:
    """The encoder of one poller's results, made at start-up and used by every producer."""

    def __init__(
        self,
        make_encoder: EncoderFactory,
        *,
        output_topic: str,
        dlq_topic: str,
        dlq_limit: Callable[[], int],
        metrics: Metrics,
    ) -> None:
        self._make_encoder = make_encoder
        self._output_topic = output_topic
        self._dlq_topic = dlq_topic
        self._dlq_limit = dlq_limit
        self._metrics = metrics
        self._encode: Encode | None = None

    def prepare(self, app: App) -> None:
        self._encode = self._make_encoder(app)

    def wrap(self, producer: TransactionalProducer) -> TransactionalProducer:
        if self._encode is None:
            raise RuntimeError("OutputEncoding.prepare was not called before the poller led")
        return EncodingProducer(
            producer, self._encode, output_topic=self._output_topic, dlq_topic=self._dlq_topic,
            dlq_limit=self._dlq_limit, metrics=self._metrics,
        )  # fmt: skip


def registry_encoder_factory(
    value_format: str, registry: Any, *, topic: str, subject: str
) -> EncoderFactory:
    # Imported only then: the serializers' libraries are not needed for JSON.
    from connector.formats.encoding import result_encoder  # noqa: PLC0415

    return lambda app: result_encoder(
        value_format, registry, topic=topic, subject=subject,
        specs=(app.input_spec, app.output_spec),
    )  # fmt: skip


def _header(headers: list[Header] | None, name: str) -> str:
    for key, value in headers or ():
        if key == name and isinstance(value, bytes):
            return value.decode(errors="replace")
    return ""


class EncodingProducer:
    """A TransactionalProducer whose output-topic values are encoded on the way out."""

    def __init__(
        self,
        producer: TransactionalProducer,
        encode: Encode,
        *,
        output_topic: str,
        dlq_topic: str,
        dlq_limit: Callable[[], int],
        metrics: Metrics,
    ) -> None:
        self._producer = producer
        self._encode = encode
        self._output_topic = output_topic
        self._dlq_topic = dlq_topic
        self._dlq_limit = dlq_limit
        self._metrics = metrics
        self._diverted = 0
        """Results of the open transaction written as dead letters, counted when it commits."""

    def produce(
        self,
        topic: str,
        *,
        value: bytes | None = None,
        key: bytes | None = None,
        partition: int = -1,
        on_delivery: DeliveryCallback | None = None,
        headers: list[Header] | None = None,
    ) -> None:
        if topic == self._output_topic and value is not None:
            item: Mapping[str, Any] = orjson.loads(value)
            try:
                value = self._encode(item)
            except UnencodableError as error:
                letter = dead_letter(
                    UNENCODABLE_RESULT,
                    f"the result does not fit the output schema: {error}",
                    item_id=_header(headers, ITEM_ID_HEADER),
                    app_project_id=_header(headers, APP_PROJECT_ID_HEADER),
                    key=key or b"",
                    fields=item,
                    limit=self._dlq_limit(),
                )
                self._producer.produce(
                    self._dlq_topic, value=letter.value, key=letter.key,
                    on_delivery=on_delivery, headers=letter.headers,
                )  # fmt: skip
                self._diverted += 1
                return
        self._producer.produce(
            topic, value=value, key=key, partition=partition, on_delivery=on_delivery,
            headers=headers,
        )  # fmt: skip

    def init_transactions(self, timeout: float) -> None:
        self._producer.init_transactions(timeout)

    def begin_transaction(self) -> None:
        self._diverted = 0
        self._producer.begin_transaction()

    def poll(self, timeout: float) -> int:
        return self._producer.poll(timeout)

    def flush(self, timeout: float) -> int:
        return self._producer.flush(timeout)

    def commit_transaction(self, timeout: float) -> None:
        self._producer.commit_transaction(timeout)
        if self._diverted:
            self._metrics.dead_letters.labels(UNENCODABLE_RESULT).inc(self._diverted)
        self._diverted = 0

    def abort_transaction(self, timeout: float) -> None:
        self._diverted = 0
        self._producer.abort_transaction(timeout)

    def cluster_id(self, timeout: float = -1) -> str | None:
        return self._producer.cluster_id(timeout)
