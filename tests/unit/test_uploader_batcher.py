"""Batching by item count, request bytes and linger; the request body built from item bytes."""

from __future__ import annotations

import orjson
from hypothesis import given
from hypothesis import strategies as st

from connector.uploader.batcher import Batch, Batcher, PendingRecord, body_size, request_body


def record(offset: int, item: bytes = b'{"text":"x"}', partition: int = 0) -> PendingRecord:
    return PendingRecord(None, partition, offset, 1, item)


def drain(batcher: Batcher) -> list[Batch]:
    batches = []
    while (batch := batcher.next_ready()) is not None:
        batches.append(batch)
    return batches


def test_body_is_the_items_joined_without_re_encoding() -> None:
    records = [record(0, b'{"text":"a"}'), record(1, b'{"text":"b","n":1}')]
    body = request_body(records)
    assert body == b'{"items":[{"text":"a"},{"text":"b","n":1}]}'
    assert orjson.loads(body) == {"items": [{"text": "a"}, {"text": "b", "n": 1}]}
    assert body_size(records) == len(body)
    assert body_size([]) == len(request_body([]))


def test_a_batch_closes_at_max_items() -> None:
    batcher = Batcher(max_items=3, max_bytes=10**6, linger_seconds=60)
    for offset in range(7):
        batcher.add_all([record(offset)], now=0.0)
    assert [[r.offset for r in b.records] for b in drain(batcher)] == [[0, 1, 2], [3, 4, 5]]
    assert batcher.linger_left(0.0) == 60


def test_a_record_that_would_overflow_the_bytes_starts_the_next_batch() -> None:
    item = b'{"text":"' + b"x" * 40 + b'"}'  # 51 bytes
    limit = len(request_body([record(0, item)] * 2))
    batcher = Batcher(max_items=100, max_bytes=limit, linger_seconds=0)
    for offset in range(5):
        batcher.add_all([record(offset, item)], now=0.0)
    batcher.close_lingering(now=0.0)
    batches = drain(batcher)
    assert [len(b.records) for b in batches] == [2, 2, 1]
    assert all(len(request_body(b.records)) == b.body_bytes <= limit for b in batches)


def test_a_record_larger_than_max_bytes_travels_alone() -> None:
    batcher = Batcher(max_items=100, max_bytes=1024, linger_seconds=0)
    batcher.add_all([record(0)], now=0.0)
    batcher.add_all([record(1, b'{"text":"' + b"x" * 2000 + b'"}')], now=0.0)
    batcher.add_all([record(2)], now=0.0)
    batcher.close_lingering(now=0.0)
    assert [[r.offset for r in b.records] for b in drain(batcher)] == [[0], [1], [2]]


def test_linger_closes_a_partial_batch_once_its_first_record_waited_long_enough() -> None:
    batcher = Batcher(max_items=100, max_bytes=10**6, linger_seconds=0.05)
    batcher.add_all([record(0)], now=10.0)
    batcher.add_all([record(1)], now=10.04)
    batcher.close_lingering(now=10.049)
    assert batcher.ready_count == 0
    assert batcher.linger_left(10.049) is not None
    batcher.close_lingering(now=10.05)
    assert [len(b.records) for b in drain(batcher)] == [2]
    assert batcher.linger_left(10.05) is None


def test_dropping_partitions_removes_their_unsent_records_only() -> None:
    batcher = Batcher(max_items=2, max_bytes=10**6, linger_seconds=60)
    for offset in range(5):
        batcher.add_all([record(offset, partition=offset % 2)], now=0.0)
    assert batcher.drop_partitions({1}) == 2
    batcher.close_lingering(now=100.0)
    batches = drain(batcher)
    assert [[r.offset for r in b.records] for b in batches] == [[0], [2], [4]]
    assert all(b.body_bytes == len(request_body(b.records)) for b in batches)
    assert batcher.drop_all() == 0


@given(
    st.lists(st.integers(0, 300), max_size=60),
    st.integers(1, 10),
    st.integers(100, 2000),
)
def test_every_record_lands_in_exactly_one_batch_in_order_within_limits(
    sizes: list[int], max_items: int, max_bytes: int
) -> None:
    batcher = Batcher(max_items=max_items, max_bytes=max_bytes, linger_seconds=0)
    for offset, size in enumerate(sizes):
        batcher.add_all([record(offset, b'{"t":"' + b"x" * size + b'"}')], now=0.0)
    batcher.close_lingering(now=0.0)
    batches = drain(batcher)
    assert [r.offset for b in batches for r in b.records] == list(range(len(sizes)))
    for batch in batches:
        assert 1 <= len(batch.records) <= max_items
        assert batch.body_bytes == len(request_body(batch.records))
        assert batch.body_bytes <= max_bytes or len(batch.records) == 1


@given(
    st.lists(st.lists(st.integers(0, 300), max_size=40), min_size=1, max_size=6),
    st.integers(1, 12),
    st.integers(20, 1500),
    st.lists(st.booleans(), min_size=6, max_size=6),
)
def test_adding_a_consume_call_s_records_at_once_batches_them_as_adding_each(
    calls: list[list[int]], max_items: int, max_bytes: int, close_between: list[bool]
) -> None:
    """`add_all` of a consume() call's records against `add_all` record by record: the same
    batches, bodies and open times, for records of any size (some larger than max_bytes), with
    batches closed between calls."""
    one_by_one = Batcher(max_items=max_items, max_bytes=max_bytes, linger_seconds=0)
    at_once = Batcher(max_items=max_items, max_bytes=max_bytes, linger_seconds=0)
    offset = 0
    for number, sizes in enumerate(calls):
        records = []
        for size in sizes:
            records.append(record(offset, b'{"t":"' + b"x" * size + b'"}'))
            offset += 1
        for pending in records:
            one_by_one.add_all([pending], now=float(number))
        at_once.add_all(records, now=float(number))
        if close_between[number]:
            one_by_one.close_lingering(now=float(number))
            at_once.close_lingering(now=float(number))
    one_by_one.close_open()
    at_once.close_open()
    expected, got = drain(one_by_one), drain(at_once)
    assert [[r.offset for r in b.records] for b in got] == [
        [r.offset for r in b.records] for b in expected
    ]
    assert [(b.body_bytes, b.opened_at) for b in got] == [
        (b.body_bytes, b.opened_at) for b in expected
    ]
    assert all(b.body_bytes == len(request_body(b.records)) for b in got)
