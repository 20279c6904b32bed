"""Record sizes across the connector's Kafka clients.

A dead letter and a replayed record are copies of records a consumer read, so the producer that
writes them must accept any record that consumer can receive, whole: librdkafka's default
`message.max.bytes` (1,000,000 bytes) is below what a default topic holds (1,048,588 bytes), and
a topic may be configured to hold far more. What the destination topic accepts is the broker's
decision (its `max.message.bytes`); a refusal there is reported, never worked around by cutting
the record.
"""

from __future__ import annotations

from collections.abc import Mapping

from connector.kafka.clients import Header

LIBRDKAFKA_MESSAGE_MAX_BYTES = 1_000_000
"""librdkafka's default `message.max.bytes` (and `batch.size`)."""
LIBRDKAFKA_RECEIVE_MESSAGE_MAX_BYTES = 100_000_000
LIBRDKAFKA_MESSAGE_MAX_BYTES_LIMIT = 1_000_000_000
"""The largest `message.max.bytes` librdkafka accepts."""
FETCH_OVERHEAD_BYTES = 512
"""librdkafka raises `receive.message.max.bytes` to `fetch.max.bytes` plus this, unless set."""
RECORD_OVERHEAD_BYTES = 128
"""A record batch header (61 bytes) and one record's framing, with room to spare."""
HEADER_OVERHEAD_BYTES = 10


def record_size(key: bytes | None, value: bytes | None, headers: list[Header] | None) -> int:
    """The most a one-record batch of this record can take on the wire (no compression)."""
    size = RECORD_OVERHEAD_BYTES + len(key or b"") + len(value or b"")
    for name, header_value in headers or ():
        size += HEADER_OVERHEAD_BYTES + len(name.encode()) + len(header_value or b"")
    return size


def receivable_bytes(config: Mapping[str, str]) -> int:
    """The largest response, hence record, a consumer with `config` can receive."""
    receive = int(config.get("receive.message.max.bytes", LIBRDKAFKA_RECEIVE_MESSAGE_MAX_BYTES))
    fetch = config.get("fetch.max.bytes")
    if fetch is not None and "receive.message.max.bytes" not in config:
        receive = max(receive, int(fetch) + FETCH_OVERHEAD_BYTES)
    return receive


def copying_producer_max_bytes(config: Mapping[str, str], added_bytes: int) -> int:
    """`message.max.bytes` for a producer writing copies, with up to `added_bytes` of headers
    added, of records read by a consumer with the same `config`."""
    own = int(config.get("message.max.bytes", LIBRDKAFKA_MESSAGE_MAX_BYTES))
    needed = receivable_bytes(config) + added_bytes
    return min(max(own, needed), LIBRDKAFKA_MESSAGE_MAX_BYTES_LIMIT)
