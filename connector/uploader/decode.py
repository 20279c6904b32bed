"""Input record bytes → the item bytes to upload, or the reason the record is a dead letter.

This is the uploader's hot path, so it works on bytes with orjson and builds no model objects.
The bytes that go into a bulk request are orjson's re-encoding of the parsed object, never the
record's own bytes: the API then receives exactly the value the validator checked, whatever the
producer's formatting (`1e2`, `\\u00e9`, spaces). For the usual compact record the re-encoding
equals the input, and that comparison is what lets most records skip the slow checks below.

What orjson accepts but the connector refuses (`invalid_json`):
- duplicate keys: orjson keeps the last value, other parsers the first or reject the document, so
  the item's meaning is ambiguous. Detecting them needs the standard library's pair hook, which is
  ~8x slower, so it runs only on records whose re-encoding differs from their bytes (a record
  with a duplicate key never re-encodes to itself).
- nesting deeper than orjson can write (254 levels).
orjson itself rejects NaN/Infinity, numbers overflowing a double, lone surrogates, a BOM and
invalid UTF-8.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from operator import eq
from typing import Any, Protocol, cast

import orjson

from connector.contract.dead_letters import (
    INVALID_ITEM,
    INVALID_JSON,
    INVALID_SCHEMA,
    NOT_AN_OBJECT,
    TOO_LARGE,
)
from connector.validation import FieldProblem


class RecordDecoder(Protocol):
    """A registry format's decoding (`connector.formats.decoding`): the record value → the
    value it holds; raises ValueError (its message the dead letter's) when its schema does not
    read it."""

    def __call__(self, value: bytes, /) -> Any: ...


class ItemDecoder(Protocol):
    """`decode_item`, or a registry format's `RegistryItemDecoder`."""

    def __call__(
        self, value: bytes | None, max_record_bytes: int, validator: Validator, /
    ) -> bytes | Refusal: ...


class Validator(Protocol):
    def problems(self, item: Mapping[str, Any]) -> list[FieldProblem]: ...
    def invalid_items(
        self, items: Sequence[Mapping[str, Any]], /
    ) -> dict[int, list[FieldProblem]]: ...


@dataclass(frozen=True, slots=True)
class Refusal:
    """Why a record cannot be uploaded: a dead-letter `reason` and a message without item data
    beyond field names."""

    reason: str
    message: str


class _DuplicateKeyError(ValueError):
    pass


def _object_without_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj: dict[str, Any] = {}
    for key, item in pairs:
        if key in obj:
            raise _DuplicateKeyError(key)
        obj[key] = item
    return obj


def _duplicate_key(value: bytes) -> str | None:
    """The first duplicated object key anywhere in `value` (already known to be valid JSON)."""
    try:
        json.loads(value, object_pairs_hook=_object_without_duplicates)
    except _DuplicateKeyError as duplicate:
        return str(duplicate)
    return None


def describe_problems(problems: list[FieldProblem]) -> str:
    return "; ".join(f"{p.field}: {p.code}: {p.message}" for p in problems)


def _unreadable_record(value: bytes | None, max_record_bytes: int, no_value_reason: str) -> Refusal:
    """Why a record is refused before its format is read: no value (a tombstone, refused as
    `no_value_reason`, the format's own) or a value over the size limit."""
    if value is None:
        return Refusal(no_value_reason, "the record has no value (a tombstone)")
    return Refusal(
        TOO_LARGE, f"the record value has {len(value)} bytes, more than {max_record_bytes}"
    )


def decode_item(
    value: bytes | None, max_record_bytes: int, validator: Validator
) -> bytes | Refusal:
    """The canonical JSON bytes of the item in `value`, or why it is refused."""
    if value is None or len(value) > max_record_bytes:
        return _unreadable_record(value, max_record_bytes, INVALID_JSON)
    try:
        item = orjson.loads(value)
    except orjson.JSONDecodeError as error:
        return Refusal(INVALID_JSON, f"not UTF-8 JSON: {error}")
    if not isinstance(item, dict):
        return Refusal(NOT_AN_OBJECT, f"the JSON value is {_json_kind(item)}, not an object")
    try:
        encoded = orjson.dumps(item)
    except orjson.JSONEncodeError:
        # orjson reads up to 1,024 levels of nesting but writes only 254: refuse such an item
        # rather than crash the uploader on it.
        return Refusal(INVALID_JSON, "nested too deep to re-encode (more than 254 levels)")
    if encoded != value:
        duplicate = _duplicate_key(value)
        if duplicate is not None:
            return Refusal(INVALID_JSON, f"duplicate object key {duplicate!r}")
    problems = validator.problems(item)
    if problems:
        return Refusal(INVALID_ITEM, describe_problems(problems))
    # The record's own bytes when they are the canonical form: every orjson result holds a
    # 4 KiB buffer, and a pending record keeps its item bytes until the upload is done.
    return value if encoded == value else encoded


def decode_all(
    decode: ItemDecoder,
    values: Sequence[bytes | None],
    max_record_bytes: int,
    validator: Validator,
) -> list[bytes | Refusal]:
    """`decode` of each of `values` (those of one consume() call). JSON input whose every value
    is already the canonical encoding of an object (what producers that write with orjson send)
    is decoded in one pass over them all (`_canonical_objects`); any other calls `decode` per
    record."""
    if decode is decode_item:
        items = _canonical_objects(values, max_record_bytes)
        if items is not None:
            canonical = cast("list[bytes | Refusal]", list(values))  # no value is None here
            for index, problems in validator.invalid_items(items).items():
                canonical[index] = Refusal(INVALID_ITEM, describe_problems(problems))
            return canonical
    return [decode(value, max_record_bytes, validator) for value in values]


def _canonical_objects(
    values: Sequence[bytes | None], max_record_bytes: int
) -> list[dict[str, Any]] | None:
    """The objects `values` hold, when every one is an object and its own canonical encoding
    (what `decode_item` would upload as it is); else None. One orjson call parses them all as
    one array, and each object's re-encoding must equal its value: that proves the array was
    split where the values meet (a value like `1,2` would shift it) and rules out duplicate
    keys, as in `decode_item`."""
    if (
        not values
        or set(map(type, values)) != {bytes}  # a tombstone (None)
        or max(map(len, cast("list[bytes]", values))) > max_record_bytes
    ):
        return None
    try:
        items = orjson.loads(b"[" + b",".join(cast("list[bytes]", values)) + b"]")
        if (
            len(items) != len(values)
            or set(map(type, items)) != {dict}
            or not all(map(eq, map(orjson.dumps, items), values))
        ):
            return None
    except (orjson.JSONDecodeError, orjson.JSONEncodeError):
        return None
    return cast("list[dict[str, Any]]", items)


def _json_default(value: Any) -> Any:
    """What JSON cannot carry as such, as orjson is told to write it: bytes as base64 text,
    decimals as their text (an Avro `bytes` or `decimal` field)."""
    if isinstance(value, bytes | bytearray):
        return base64.b64encode(value).decode()
    if isinstance(value, Decimal):
        return str(value)
    raise TypeError(f"{type(value).__name__} has no JSON form")


class RegistryItemDecoder:
    """Input of a registry format: the record decoded with its writer's schema, then checked
    against input_spec like a JSON item; the item bytes uploaded are its JSON."""

    def __init__(self, decode: RecordDecoder) -> None:
        self._decode = decode

    def __call__(
        self, value: bytes | None, max_record_bytes: int, validator: Validator, /
    ) -> bytes | Refusal:
        if value is None or len(value) > max_record_bytes:
            return _unreadable_record(value, max_record_bytes, INVALID_SCHEMA)
        try:
            item = self._decode(value)
        except ValueError as error:
            return Refusal(INVALID_SCHEMA, str(error))
        if not isinstance(item, dict):
            return Refusal(NOT_AN_OBJECT, f"the decoded value is {_json_kind(item)}, not an object")
        try:
            encoded = orjson.dumps(item, default=_json_default)
        except (TypeError, orjson.JSONEncodeError) as error:
            return Refusal(INVALID_SCHEMA, f"the decoded value has no JSON form: {error}")
        problems = validator.problems(item)
        if problems:
            return Refusal(INVALID_ITEM, describe_problems(problems))
        return encoded


def _json_kind(value: Any) -> str:
    if isinstance(value, list):
        return "an array"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, bool):
        return "a boolean"
    if value is None:
        return "null"
    return "a number"
