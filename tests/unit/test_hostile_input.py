"""Hostile input records through the uploader's decode + validate path (`decode_item`).

Whatever bytes a producer writes — random bytes, invalid UTF-8, huge values, deep nesting, wrong
types, NaN/Infinity, duplicate keys, empty and null records — `decode_item` must return either
the bytes to upload (a JSON object the validator accepts) or a `Refusal` with a dead-letter
reason; it must never raise, since a record that crashes the uploader is read again after the
restart and crashes it again. (`make chaos` sends 100,000 such records through a real uploader.)
"""

from __future__ import annotations

import math
from itertools import pairwise
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from connector.contract.dead_letters import INVALID_ITEM, INVALID_JSON, NOT_AN_OBJECT, TOO_LARGE
from connector.toloka.models import FieldSpec
from connector.uploader.decode import Refusal, decode_all, decode_item
from connector.validation import ItemValidator

MAX_RECORD_BYTES = 64 * 1024
REASONS = {INVALID_JSON, NOT_AN_OBJECT, INVALID_ITEM, TOO_LARGE}
TEXT_MODERATION = ItemValidator(
    {"id": FieldSpec(type="string"), "text": FieldSpec(type="string", required=True)}
)
EVERY_TYPE = ItemValidator(
    {
        name: FieldSpec(type=name, required=required)
        for name, required in [
            ("string", True),
            ("url", False),
            ("integer", False),
            ("float", False),
            ("boolean", False),
            ("json", False),
            ("file", False),
            ("coordinates", False),
            ("array_string", False),
            ("array_float", False),
            ("array_url", False),
            ("array_coordinates", False),
            ("mystery", False),
        ]
    }
)
VALIDATORS = [TEXT_MODERATION, EVERY_TYPE]
HOSTILE = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
HOSTILE_CALLS = settings(HOSTILE, max_examples=60)
"""For lists of up to 12 records an example: about as many records as HOSTILE's examples."""


def classify(value: bytes | None, validator: ItemValidator) -> bytes | Refusal:
    """decode_item, with what every answer must satisfy checked."""
    decoded = decode_item(value, MAX_RECORD_BYTES, validator)
    if isinstance(decoded, Refusal):
        assert decoded.reason in REASONS, decoded
        assert isinstance(decoded.message, str)
        assert decoded.message
        return decoded
    assert isinstance(decoded, bytes)
    item = orjson.loads(decoded)
    assert isinstance(item, dict)
    assert validator.problems(item) == []
    assert value is not None
    assert len(value) <= MAX_RECORD_BYTES
    return decoded


# --- strategies --------------------------------------------------------------------------------

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**64 - 1),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=50),
)
json_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=10), inner,
                                                                  max_size=5),
    max_leaves=40,
)  # fmt: skip
field_names = st.sampled_from(
    ["id", "text", "string", "url", "integer", "float", "boolean", "json", "file",
     "coordinates", "array_string", "array_float", "array_url", "array_coordinates", "mystery"]
)  # fmt: skip
objects = st.dictionaries(field_names | st.text(max_size=8), json_values, max_size=8)


@st.composite
def json_texts(draw: st.DrawFn) -> bytes:
    """Serialised JSON, sometimes with the producer's own formatting (spaces, escapes)."""
    value = draw(objects | json_values)
    text = orjson.dumps(value)
    if draw(st.booleans()):
        import json  # noqa: PLC0415 - the standard library formats differently from orjson

        text = json.dumps(value, ensure_ascii=draw(st.booleans()), indent=draw(
            st.none() | st.integers(0, 2))).encode()  # fmt: skip
    return text


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    """Valid JSON bytes with a few bytes inserted, deleted or replaced."""
    data = bytearray(draw(json_texts()))
    for _ in range(draw(st.integers(1, 4))):
        position = draw(st.integers(0, len(data)))
        action = draw(st.sampled_from(["insert", "delete", "replace"]))
        byte = draw(st.sampled_from([0x00, 0x22, 0x5C, 0x7B, 0x7D, 0x80, 0xC0, 0xED, 0xFF]))
        if action == "insert":
            data.insert(position, byte)
        elif position < len(data):
            if action == "delete":
                del data[position]
            else:
                data[position] = byte
    return bytes(data)


special_tokens = st.sampled_from(
    [b"NaN", b"Infinity", b"-Infinity", b"1e400", b"-1e400", b"1" * 400, b"0x10", b"01",
     b"+1", b".5", b"1.", b"true", b"null", b'"\\ud800"', b'"\\udc00\\ud800"', b"1e-400"]
)  # fmt: skip


@st.composite
def with_special_token(draw: st.DrawFn) -> bytes:
    token = draw(special_tokens)
    name = draw(field_names)
    return b'{"text": "t", "%s": %s}' % (name.encode(), token)


@st.composite
def duplicate_keys(draw: st.DrawFn) -> bytes:
    name = draw(field_names).encode()
    first, second = draw(json_texts()), draw(json_texts())
    spaces = b" " if draw(st.booleans()) else b""
    return b'{"text":"t",%s"%s":%s,"%s":%s}' % (spaces, name, first, name, second)


@st.composite
def nested(draw: st.DrawFn) -> bytes:
    """An otherwise valid item with one field nested `depth` levels deep (below orjson's
    encoding limit, see test_deep_nesting_is_refused_not_raised for the deeper ones)."""
    depth = draw(st.integers(1, 250))
    opener, closer = draw(st.sampled_from([(b"[", b"]"), (b'{"a":', b"}")]))
    leaf = b"1" if opener == b'{"a":' else b""
    spaces = b" " if draw(st.booleans()) else b""
    return b'{"text":"t",%s"json":%s%s%s}' % (spaces, opener * depth, leaf, closer * depth)


@st.composite
def huge(draw: st.DrawFn) -> bytes:
    size = draw(st.sampled_from([MAX_RECORD_BYTES - 40, MAX_RECORD_BYTES, MAX_RECORD_BYTES * 4]))
    kind = draw(st.sampled_from(["string", "array", "number", "keys"]))
    if kind == "string":
        return orjson.dumps({"text": "x" * size})
    if kind == "array":
        return orjson.dumps({"text": "t", "array_string": ["x"] * (size // 4)})
    if kind == "number":
        return b'{"text":"t","integer":' + b"9" * size + b"}"
    return orjson.dumps({"text": "t", **{f"k{n}": n for n in range(size // 10)}})


hostile_records = st.one_of(
    st.none(),
    st.just(b""),
    st.binary(max_size=300),
    json_texts(),
    mutated(),
    with_special_token(),
    duplicate_keys(),
    nested(),
    objects.map(orjson.dumps),
)


# --- the tests ---------------------------------------------------------------------------------


@HOSTILE
@given(value=hostile_records, validator=st.sampled_from(VALIDATORS))
@example(value=None, validator=TEXT_MODERATION)
@example(value=b"", validator=TEXT_MODERATION)
@example(value=b"null", validator=TEXT_MODERATION)
@example(value=b"{}", validator=TEXT_MODERATION)
@example(value=b"\xef\xbb\xbf{}", validator=TEXT_MODERATION)  # a BOM
@example(value=b'{"text": "\xff"}', validator=TEXT_MODERATION)
@example(value=b'{"text": "a", "text": "b"}', validator=TEXT_MODERATION)
@example(value=b'{"text": NaN}', validator=EVERY_TYPE)
def test_every_hostile_record_is_classified_never_raises(
    value: bytes | None, validator: ItemValidator
) -> None:
    classify(value, validator)


@HOSTILE
@given(value=huge())
def test_huge_records_are_classified(value: bytes) -> None:
    decoded = classify(value, EVERY_TYPE)
    if len(value) > MAX_RECORD_BYTES:
        assert isinstance(decoded, Refusal)
        assert decoded.reason == TOO_LARGE


@HOSTILE
@given(value=duplicate_keys())
def test_duplicate_keys_are_invalid_json(value: bytes) -> None:
    decoded = classify(value, EVERY_TYPE)
    assert isinstance(decoded, Refusal), "orjson writes at most 254 levels: never uploadable"
    assert decoded.reason == INVALID_JSON
    assert decoded.reason == INVALID_JSON


@HOSTILE
@given(item=objects)
def test_wrong_types_are_invalid_items_and_valid_ones_upload_unchanged(
    item: dict[str, Any],
) -> None:
    value = orjson.dumps(item)
    decoded = classify(value, EVERY_TYPE)
    problems = EVERY_TYPE.problems(item)
    if problems:
        assert isinstance(decoded, Refusal)
        assert decoded.reason == INVALID_ITEM
        for problem in problems:
            assert problem.field in decoded.message
    else:
        assert decoded == value


@pytest.mark.parametrize("token", [b"NaN", b"Infinity", b"-Infinity", b"1e400", b"-1e999"])
def test_non_finite_numbers_never_reach_the_api(token: bytes) -> None:
    decoded = classify(b'{"text": "t", "float": %s}' % token, EVERY_TYPE)
    if not isinstance(decoded, Refusal):  # a parser may read 1e400 as infinity: never upload it
        assert all(math.isfinite(v) for v in orjson.loads(decoded).values() if isinstance(v, float))
    else:
        assert decoded.reason in {INVALID_JSON, INVALID_ITEM}


@pytest.mark.parametrize("depth", [253, 1024, 5000])
def test_deep_nesting_is_refused_not_raised(depth: int) -> None:
    """`depth` levels inside the item object: 254 in all still encode; beyond orjson's
    parsing limit (1025 in all) the record is invalid_json."""
    value = b'{"text":"t","json":' + b"[" * depth + b"]" * depth + b"}"
    decoded = classify(value, EVERY_TYPE)
    if depth >= 1024:
        assert isinstance(decoded, Refusal)
        assert decoded.reason == INVALID_JSON


@pytest.mark.parametrize("depth", [254, 500, 1023])
@pytest.mark.parametrize("spaced", [False, True])
def test_nesting_deeper_than_orjson_encodes_is_refused_not_raised(depth: int, spaced: bool) -> None:
    space = b" " if spaced else b""
    value = b'{"text":"t",%s"json":' % space + b"[" * depth + b"]" * depth + b"}"
    decoded = classify(value, EVERY_TYPE)
    assert isinstance(decoded, Refusal), "orjson writes at most 254 levels: never uploadable"
    assert decoded.reason == INVALID_JSON


# --- a consume() call's records at once ------------------------------------------------------


@st.composite
def split_values(draw: st.DrawFn) -> list[bytes]:
    """Canonical objects cut where a comma or bracket is, so that the pieces joined with commas
    read as the objects again: no piece is a record of its own."""
    joined = b",".join(
        orjson.dumps(item) for item in draw(st.lists(objects, min_size=1, max_size=3))
    )
    cuts = sorted({index for index, byte in enumerate(joined) if byte in b",[]{}"})
    chosen = sorted(draw(st.sets(st.sampled_from(cuts), max_size=3))) if cuts else []
    bounds = [0, *chosen, len(joined)]
    return [joined[a:b].strip(b",") for a, b in pairwise(bounds) if a < b]


canonical_records = objects.map(orjson.dumps) | st.builds(
    lambda text, n: orjson.dumps({"id": f"id-{n}", "text": text}), st.text(max_size=20),
    st.integers(0, 10**6),
)  # fmt: skip
consume_calls = st.lists(canonical_records, max_size=12) | st.lists(
    canonical_records | hostile_records, max_size=12
) | split_values()  # fmt: skip


@HOSTILE_CALLS
@given(values=consume_calls, validator=st.sampled_from(VALIDATORS))
@example(values=[b'{"text":"a"', b'"x":1}'], validator=TEXT_MODERATION)  # one object, two records
@example(  # as many objects as records, read across their bounds
    values=[b'{"text":"a"', b'"x":1}', b'{"text":"b"},{"text":"c"}'], validator=TEXT_MODERATION
)
@example(values=[b'{"text":"a","text":"b"}', b'{"text":"a"}'], validator=TEXT_MODERATION)
@example(values=[b'{"text":"a"}', b"{}"], validator=TEXT_MODERATION)
def test_decoding_a_consume_call_at_once_decodes_each_record_as_alone(
    values: list[bytes | None], validator: ItemValidator
) -> None:
    """`decode_all` (the loop's form: all the records of a run at once, parsed as one array
    where every value is canonical) answers exactly what `decode_item` answers for each record,
    including values that only parse when joined (a cut object, `a},{b`)."""
    alone = [decode_item(value, MAX_RECORD_BYTES, validator) for value in values]
    assert decode_all(decode_item, values, MAX_RECORD_BYTES, validator) == alone


REQUIRED_ANYTHING = ItemValidator(
    {name: FieldSpec(type=name, required=True) for name in ["json", "integer", "mystery"]}
)


@HOSTILE_CALLS
@given(
    items=st.lists(objects, max_size=12),
    validator=st.sampled_from([*VALIDATORS, REQUIRED_ANYTHING]),
)
@example(items=[{"string": "s"}, {"string": None}, {}, {"string": True}], validator=EVERY_TYPE)
@example(items=[{"json": None, "integer": 1, "mystery": 0}, {}], validator=REQUIRED_ANYTHING)
def test_validating_items_at_once_finds_the_problems_of_each(
    items: list[dict[str, Any]], validator: ItemValidator
) -> None:
    """`invalid_items` (a field over all items at once, by type) finds exactly the items
    `problems` finds invalid, with the same problems."""
    each = {index: validator.problems(item) for index, item in enumerate(items)}
    assert validator.invalid_items(items) == {
        index: found for index, found in each.items() if found
    }
