"""`GET /app-projects/{id}/items`: query parsing and keyset pagination over the item store.

Order: the `sort` keys in turn, then `id` as the final tie-break in the direction of the last key
(`sort=-finished` means `-finished,-id`, the exact reverse of `finished`). `after_id` returns the
items strictly after that item in the requested order, so paging by the last id of each page
visits every item once even when many share a `finished_at`.

Documented choices where the API is silent:
- `after_id` naming no item of the project: 400 VALIDATION_ERROR, payload key `after_id`
  (restarting silently from the beginning or the end would duplicate or lose results);
- unfinished items under `sort=finished`: after every finished item, by id (`-finished`: before
  them), as a database sorts NULLs; knob `unfinished_in_finished_sort=exclude` leaves them out;
- `finished_*` filters never match unfinished items; `status` must be a known status.

Fast paths (no sorting per request): `id`, `created` (ids and creation times grow together) and
`finished` in either direction. Other orders (`status`, `created,-id`, ...) sort the matching items
on every request, which is fine for the tests that use them and slow on a million items.
"""

from __future__ import annotations

import bisect
import dataclasses
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from connector.simulator.clock import parse_api_datetime
from connector.simulator.store import STATUS_CODES, STATUS_NAMES, ItemStore

DEFAULT_LIMIT = 100
MAX_LIMIT = 1000
SORT_KEYS = ("id", "created", "finished", "status")
_NEVER = 2**63 - 1  # finished_at of an unfinished item when sorting


class ListingError(ValueError):
    """A query parameter is invalid: the 400 VALIDATION_ERROR payload names it."""

    def __init__(self, parameter: str, code: str, message: str) -> None:
        super().__init__(message)
        self.parameter = parameter
        self.code = code
        self.message = message


@dataclass(frozen=True, slots=True)
class ListQuery:
    sort: tuple[tuple[str, bool], ...]  # (key, descending), ending with "id"
    limit: int
    after: int | None  # seq of the after_id item
    status: int | None
    batch_id: str | None
    seq_low: int  # id_* and created_* filters as a seq range [seq_low, seq_high)
    seq_high: int
    finished_min: int | None  # inclusive microseconds
    finished_max: int | None


def parse_query(params: Mapping[str, str], store: ItemStore) -> ListQuery:
    """Validate the query string of a listing request against the current store."""
    sort = _parse_sort(params.get("sort", "id"))
    limit = _parse_limit(params.get("limit"))
    after = None
    if "after_id" in params:
        after = store.seq_of(params["after_id"])
        if after is None:
            raise ListingError("after_id", "DOES_NOT_EXIST", "after_id names no item")
    status = None
    if "status" in params:
        status = STATUS_CODES.get(params["status"])
        if status is None:
            raise ListingError("status", "UNKNOWN_ENUM_VALUE", "unknown status")
    seq_low, seq_high = 0, len(store)
    count = range(len(store))
    for suffix, use_left, is_low in (
        ("gt", False, True),
        ("gte", True, True),
        ("lt", True, False),
        ("lte", False, False),
    ):
        find = bisect.bisect_left if use_left else bisect.bisect_right
        if (value := params.get(f"id_{suffix}")) is not None:
            position = find(count, value, key=store.item_id)
            seq_low, seq_high = _narrow(seq_low, seq_high, position, is_low)
        if (value := params.get(f"created_{suffix}")) is not None:
            micros = _parse_datetime(f"created_{suffix}", value)
            position = find(count, micros, key=store.created.__getitem__)
            seq_low, seq_high = _narrow(seq_low, seq_high, position, is_low)
    return ListQuery(
        sort=sort,
        limit=limit,
        after=after,
        status=status,
        batch_id=params.get("batch_id"),
        seq_low=seq_low,
        seq_high=seq_high,
        finished_min=_finished_bound(params, "gte", "gt", 1),
        finished_max=_finished_bound(params, "lte", "lt", -1),
    )


def listed_by(query: ListQuery, store: ItemStore, created_until: int) -> ListQuery:
    """`query` over the items created up to `created_until` only (knob `listing_delay`: items
    show in listings that long after their creation)."""
    shown = bisect.bisect_right(store.created, created_until)
    return dataclasses.replace(query, seq_high=min(query.seq_high, shown))


def _narrow(low: int, high: int, position: int, is_low: bool) -> tuple[int, int]:
    return (max(low, position), high) if is_low else (low, min(high, position))


def _parse_sort(text: str) -> tuple[tuple[str, bool], ...]:
    keys: list[tuple[str, bool]] = []
    for part in text.split(","):
        name = part.strip()
        descending = name.startswith("-")
        name = name.removeprefix("-")
        if name not in SORT_KEYS:
            raise ListingError("sort", "VALUE_NOT_ALLOWED", f"sort keys are {', '.join(SORT_KEYS)}")
        if name not in (key for key, _ in keys):
            keys.append((name, descending))
    if keys[-1][0] != "id" and "id" not in (key for key, _ in keys):
        keys.append(("id", keys[-1][1]))
    return tuple(keys)


def _parse_limit(text: str | None) -> int:
    if text is None:
        return DEFAULT_LIMIT
    try:
        limit = int(text)
    except ValueError:
        raise ListingError("limit", "INTEGER_EXPECTED", "limit must be an integer") from None
    if limit < 1:
        raise ListingError("limit", "VALUE_LESS_THAN_MIN", "limit must be at least 1")
    if limit > MAX_LIMIT:
        raise ListingError("limit", "VALUE_GREATER_THAN_MAX", f"limit is at most {MAX_LIMIT}")
    return limit


def _parse_datetime(parameter: str, text: str) -> int:
    try:
        return parse_api_datetime(text)
    except ValueError:
        raise ListingError(
            parameter, "INVALID_DATETIME", "expected UTC ISO 8601 YYYY-MM-DDThh:mm:ss[.sss]"
        ) from None


def _finished_bound(
    params: Mapping[str, str], inclusive: str, exclusive: str, step: int
) -> int | None:
    bounds = []
    if (value := params.get(f"finished_{inclusive}")) is not None:
        bounds.append(_parse_datetime(f"finished_{inclusive}", value))
    if (value := params.get(f"finished_{exclusive}")) is not None:
        bounds.append(_parse_datetime(f"finished_{exclusive}", value) + step)
    if not bounds:
        return None
    return max(bounds) if step > 0 else min(bounds)


def list_page(
    store: ItemStore, query: ListQuery, now: int, exclude_unfinished: bool
) -> tuple[list[int], bool]:
    """The seqs of one page and whether more items follow it."""
    if query.batch_id is not None:
        return [], False  # streaming items belong to no batch (the simulator has no batches)
    store.advance(now)
    keep = _filter(store, query, now)
    keys = tuple(key for key, _ in query.sort)
    descending = query.sort[0][1]
    same_direction = all(key_descending == descending for _, key_descending in query.sort)
    if keys in (("id",), ("created", "id")) and same_direction:
        candidates = _by_seq(store, query, descending)
    elif keys == ("finished", "id") and same_direction:
        candidates = _by_finished(store, query, now, descending, exclude_unfinished)
    else:
        candidates = iter(_sorted_generically(store, query, now, exclude_unfinished))
    page: list[int] = []
    wanted = query.limit + 1
    for seq in candidates:
        if keep is None or keep(seq):
            page.append(seq)
            if len(page) == wanted:
                return page[:-1], True
    return page, False


def _filter(store: ItemStore, query: ListQuery, now: int) -> Callable[[int], bool] | None:
    """The filters that are not a seq range, as one predicate; None when there are none."""
    checks: list[Callable[[int], bool]] = []
    if query.status is not None:
        wanted_status = query.status
        checks.append(lambda seq: store.status(seq, now, listing=True) == wanted_status)
    if query.finished_min is not None or query.finished_max is not None:
        low = query.finished_min if query.finished_min is not None else -_NEVER
        high = query.finished_max if query.finished_max is not None else _NEVER
        visible, finished = store.visible, store.finished
        checks.append(lambda seq: visible[seq] <= now and low <= finished[seq] <= high)
    if not checks:
        return None
    if len(checks) == 1:
        return checks[0]
    return lambda seq: all(check(seq) for check in checks)


def _by_seq(store: ItemStore, query: ListQuery, descending: bool) -> Iterator[int]:
    low, high = query.seq_low, query.seq_high
    if descending:
        start = high - 1 if query.after is None else min(high - 1, query.after - 1)
        return iter(range(start, low - 1, -1))
    start = low if query.after is None else max(low, query.after + 1)
    return iter(range(start, high))


def _by_finished(
    store: ItemStore, query: ListQuery, now: int, descending: bool, exclude_unfinished: bool
) -> Iterator[int]:
    """Visible finished items in (finished_at, seq) order, then the unfinished ones by seq."""
    order, finished, visible = store.finished_order, store.finished, store.visible
    low, high = query.seq_low, query.seq_high
    key: Callable[[int], tuple[int, int]] = lambda seq: (finished[seq], seq)  # noqa: E731
    begin, end = 0, len(order)
    if query.finished_min is not None:
        begin = bisect.bisect_left(order, query.finished_min, key=finished.__getitem__)
    if query.finished_max is not None:
        end = bisect.bisect_right(order, query.finished_max, key=finished.__getitem__)
    after = query.after
    after_is_finished = after is not None and visible[after] <= now
    if after is not None and after_is_finished:
        position = bisect.bisect_left(order, key(after), lo=begin, hi=end, key=key)
        if descending:
            end = min(end, position)
        else:
            begin = max(begin, position + 1)
    elif after is not None and not descending:
        begin = end  # every finished item comes before an unfinished cursor
    finished_part = (
        seq
        for index in (range(end - 1, begin - 1, -1) if descending else range(begin, end))
        if visible[seq := order[index]] <= now and low <= seq < high
    )
    if exclude_unfinished or query.finished_min is not None or query.finished_max is not None:
        return finished_part
    tail_low = max(low, store.first_unlisted(now))
    if descending:
        tail_start = high - 1 if after is None or after_is_finished else min(high - 1, after - 1)
        if after is not None and after_is_finished:
            return finished_part  # the unfinished items all come before a finished cursor
        tail_seqs = range(tail_start, tail_low - 1, -1)
    else:
        tail_start = tail_low if after is None or after_is_finished else max(tail_low, after + 1)
        tail_seqs = range(tail_start, high)
    tail = (seq for seq in tail_seqs if visible[seq] > now)
    return _chain(tail, finished_part) if descending else _chain(finished_part, tail)


def _chain(first: Iterator[int], second: Iterator[int]) -> Iterator[int]:
    yield from first
    yield from second


def _sorted_generically(
    store: ItemStore, query: ListQuery, now: int, exclude_unfinished: bool
) -> list[int]:
    """Any other order: sort the items of the seq range; the caller applies the filters."""
    visible = store.visible
    seqs = [
        seq
        for seq in range(query.seq_low, query.seq_high)
        if not (exclude_unfinished and visible[seq] > now)
    ]
    after = query.after
    if after is not None and (
        not query.seq_low <= after < query.seq_high or (exclude_unfinished and visible[after] > now)
    ):
        seqs.append(after)  # only to find its place in the order
    sort_keys: dict[str, Callable[[int], Any]] = {
        "id": lambda seq: seq,
        "created": store.created.__getitem__,
        "finished": lambda seq: store.finished[seq] if visible[seq] <= now else _NEVER,
        "status": lambda seq: STATUS_NAMES[store.status(seq, now, listing=True)],
    }
    for name, descending in reversed(query.sort):  # stable sorts, least significant key first
        seqs.sort(key=sort_keys[name], reverse=descending)
    if after is None:
        return seqs
    return seqs[seqs.index(after) + 1 :]
