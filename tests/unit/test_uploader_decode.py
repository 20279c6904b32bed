"""Record bytes → canonical item bytes or a dead-letter reason (the uploader's hot path)."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from connector.toloka.models import FieldSpec
from connector.uploader.decode import Refusal, decode_item
from connector.validation import ItemValidator

TEXT_MODERATION = ItemValidator(
    {"id": FieldSpec(type="string"), "text": FieldSpec(type="string", required=True)}
)
MAX_BYTES = 1000


def decode(value: bytes | None, max_bytes: int = MAX_BYTES) -> bytes | Refusal:
    return decode_item(value, max_bytes, TEXT_MODERATION)


def refusal(value: bytes | None, max_bytes: int = MAX_BYTES) -> Refusal:
    result = decode(value, max_bytes)
    assert isinstance(result, Refusal), result
    return result


def test_canonical_record_is_uploaded_byte_for_byte() -> None:
    value = b'{"id":"1","text":"caf\xc3\xa9"}'
    assert decode(value) == value


def test_non_canonical_record_is_normalised_to_what_was_validated() -> None:
    value = b'{ "text" : "caf\\u00e9",  "n": 1e2 }\n'
    assert decode(value) == b'{"text":"caf\xc3\xa9","n":100.0}'


@pytest.mark.parametrize(
    "value",
    [
        b'{"text": "\xff\xfe"}',  # invalid UTF-8
        b"\xef\xbb\xbf{}",  # BOM
        b'{"text": "x"',  # truncated
        b"",
        b'{"text": NaN}',
        b'{"text": "x", "n": Infinity}',
        b'{"text": "x", "n": 1e999}',
        b'{"text": "\\ud800"}',  # lone surrogate
    ],
)
def test_what_is_not_strict_utf8_json_is_invalid_json(value: bytes) -> None:
    assert refusal(value).reason == "invalid_json"


@pytest.mark.parametrize(
    ("value", "key"),
    [
        (b'{"text":"a","text":"b"}', "text"),
        (b'{"text": "a", "meta": {"k": 1, "k": 2}}', "k"),
        (b'{"text":"a","list":[{"z":1,"z":1}]}', "z"),
    ],
)
def test_duplicate_keys_at_any_depth_are_invalid_json(value: bytes, key: str) -> None:
    refused = refusal(value)
    assert refused.reason == "invalid_json"
    assert repr(key) in refused.message


@pytest.mark.parametrize(
    ("value", "kind"),
    [(b"[1, 2]", "an array"), (b'"text"', "a string"), (b"42", "a number"),
     (b"null", "null"), (b"true", "a boolean")],
)  # fmt: skip
def test_json_that_is_no_object_is_not_an_object(value: bytes, kind: str) -> None:
    refused = refusal(value)
    assert refused.reason == "not_an_object"
    assert kind in refused.message


def test_tombstone_is_invalid_json() -> None:
    assert refusal(None).reason == "invalid_json"


def test_oversized_record_is_too_large_before_it_is_parsed() -> None:
    value = b"[" * 101  # not even JSON: size decides first
    refused = refusal(value, max_bytes=100)
    assert refused.reason == "too_large"
    assert "101" in refused.message


def test_record_at_the_size_limit_is_accepted() -> None:
    value = b'{"text":"' + b"x" * 89 + b'"}'
    assert len(value) == 100
    assert decode(value, max_bytes=100) == value


def test_item_against_the_input_spec_is_invalid_item_with_field_codes() -> None:
    refused = refusal(b'{"id": 5}')
    assert refused.reason == "invalid_item"
    assert "text: VALUE_REQUIRED" in refused.message
    assert "id: STRING_EXPECTED" in refused.message


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | st.text()
    | st.floats(allow_nan=False, allow_infinity=False),
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(st.text(max_size=5), children, max_size=4),
    max_leaves=12,
)  # fmt: skip


@given(st.dictionaries(st.text(max_size=8), json_values, max_size=5), st.text(max_size=20))
def test_any_valid_item_decodes_to_an_equal_canonical_encoding(
    extra: dict[str, Any], text: str
) -> None:
    extra.pop("id", None)  # the spec types `id` as a string: any other value is invalid_item
    item = {**extra, "text": text}
    encoded = orjson.dumps(item)
    spaced = orjson.dumps(item, option=orjson.OPT_INDENT_2)
    for value in (encoded, spaced):
        decoded = decode(value, max_bytes=10**6)
        assert decoded == encoded
        assert isinstance(decoded, bytes)
        assert orjson.loads(decoded) == item


@pytest.mark.parametrize("depth", [253, 254, 900, 1023, 1024, 5000])
def test_deep_nesting_is_uploaded_or_refused_never_raised(depth: int) -> None:
    # The item object itself is one level: the array inside adds `depth` more.
    value = b'{"text":"t","deep":' + b"[" * depth + b"]" * depth + b"}"
    decoded = decode(value, max_bytes=10**6)
    if depth < 254:
        assert decoded == value
    else:
        assert isinstance(decoded, Refusal)
        assert decoded.reason == "invalid_json"
