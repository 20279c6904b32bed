"""Dead letters (contract: "Records", dead letters): the headers the connector adds to a record it
cannot upload or publish, and the reasons it gives.

The uploader keeps a record's own headers and appends its own after them, starting with
`error-reason`; the poller writes a new record per item it cannot publish, naming the item and
its project with the output record's headers (`connector.contract.results`). Readers find the
original headers before the last `error-reason` (`connector.operations.dead_letter_records`).
"""

from __future__ import annotations

REASON_HEADER = "error-reason"
MESSAGE_HEADER = "error-message"
SOURCE_TOPIC_HEADER = "source-topic"
SOURCE_PARTITION_HEADER = "source-partition"
SOURCE_OFFSET_HEADER = "source-offset"
API_REQUEST_ID_HEADER = "api-request-id"
"""The request whose answer refused the item (the uploader's `rejected`), when the API sent one."""
DROPPED_FIELDS_HEADER = "error-dropped-fields"
"""The poller's: the fields of the item left out so that the dead letter fits its topic."""
VALUE_DROPPED_HEADER = "error-value-dropped"
"""Set by earlier versions of the uploader on a record too large for the dead-letter topic (no
value kept); the uploader now keeps every value whole, or keeps trying until its deadline."""
REPLAYED_FROM_HEADER = "replayed-from"
"""Added to a replayed record: `topic/partition/offset` of the dead letter it came from."""

# Why the uploader could not upload a record.
INVALID_JSON = "invalid_json"
NOT_AN_OBJECT = "not_an_object"
INVALID_ITEM = "invalid_item"
REJECTED = "rejected"
TOO_LARGE = "too_large"
INVALID_SCHEMA = "invalid_schema"
"""An avro/protobuf/json_schema record that its schema (by the id it carries) does not read."""
UNROUTED = "unrouted"
"""A record on the input topic of pipelines that route by header (route_by_header) whose
`toloka-app-project-id` header names none of their app projects, or that has none."""
UPLOADER_REASONS = (
    INVALID_JSON, NOT_AN_OBJECT, INVALID_ITEM, REJECTED, TOO_LARGE, INVALID_SCHEMA, UNROUTED,
)  # fmt: skip

# Why the poller could not publish a finished item.
RESULT_TOO_LARGE = "result_too_large"
UNREADABLE_RESULT = "unreadable_result"
UNENCODABLE_RESULT = "unencodable_result"
"""A result that the output schema (avro/protobuf/json_schema) cannot hold: a value of another
type than the app's output_spec says."""
POLLER_REASONS = (RESULT_TOO_LARGE, UNREADABLE_RESULT, UNENCODABLE_RESULT)

REPLAYABLE_REASONS = (INVALID_ITEM, REJECTED, TOO_LARGE)
"""What `replay-dlq` replays by default: the cause lies outside the record bytes (the app's
input_spec, the API's judgement, CONNECTOR_MAX_RECORD_BYTES), so a fix there lets the same record
through. `invalid_json`, `not_an_object` and `invalid_schema` are about the bytes themselves,
which a replay repeats unchanged; `unrouted` about the record's headers, which it puts back."""

MAX_MESSAGE_CHARS = 2000
"""`error-message` is cut to this length: a record with thousands of bad fields must not make a
dead letter larger than the record."""


def error_message(text: str) -> bytes:
    """The `error-message` header of `text`, cut to MAX_MESSAGE_CHARS."""
    if len(text) > MAX_MESSAGE_CHARS:
        text = text[: MAX_MESSAGE_CHARS - 1] + "…"
    return text.encode()
