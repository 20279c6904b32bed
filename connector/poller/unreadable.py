"""The one item of a listing page that cannot be read even alone: what can be told about it.

A page of one item fails when the item is larger than `CONNECTOR_API_MAX_RESPONSE_BYTES` (the
client kept the first bytes), when its bytes are not UTF-8 JSON, or when a field does not have
its documented shape (a `finished_at` that is no datetime). To dead-letter the item and move
the cursor past it, the poller needs its `id`; its `finished_at` where it can be read; and as
many of its fields as could be decoded, for the dead letter's value.

Bytes that are not UTF-8 are read with replacement characters. A body cut at the size limit is
read incrementally: the item's top-level fields that end before the cut are kept, so an `id`
that the API sends before a large `output_data` is found, and a `finished_at` sent after it is
not (the cursor then keeps its own `finished_at`, which is not later than the item's).
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import ijson
import orjson

from connector.errors import ItemFormatError, UnreadablePageError
from connector.toloka.models import Item


@dataclass(frozen=True)
class UnreadableItem:
    id: str
    finished_at: datetime | None
    """None when it is missing or cannot be read."""
    finished: bool
    """The listing shows it finished (a complete entry without finished_at is not)."""
    fields: dict[str, Any]
    """Its top-level fields that could be decoded."""
    raw: bytes
    """What the API sent."""
    problem: str


def single_entry(error: UnreadablePageError) -> UnreadableItem | None:
    """The item of an unreadable page of one item; None when not even its id can be read (or
    the page does not hold exactly one entry)."""
    entry = _complete_entry(error.body) if error.complete else _entry_before_cut(error.body)
    if entry is None:
        return None
    item_id = entry.get("id")
    if not isinstance(item_id, str) or not item_id:
        return None
    has_finished_at = entry.get("finished_at") is not None
    return UnreadableItem(
        id=item_id,
        finished_at=_finished_at(entry) if has_finished_at else None,
        # Listings ask for finished_gte: a cut entry is a finished one whose finished_at was cut.
        finished=has_finished_at or not error.complete,
        fields=entry,
        raw=error.body,
        problem=error.message,
    )


def readable_item(error: UnreadablePageError) -> Item | None:
    """The item of a page of one when the item itself reads fine and only the page around it
    does not (a `has_more` that is no boolean): it can be published as the API sent it."""
    if not error.complete:
        return None
    try:
        entry = _only_entry(orjson.loads(error.body))
        return None if entry is None else Item.from_api(entry)
    except (orjson.JSONDecodeError, ItemFormatError):
        return None


def _complete_entry(body: bytes) -> dict[str, Any] | None:
    try:
        page = orjson.loads(body)
    except orjson.JSONDecodeError:
        try:
            page = orjson.loads(body.decode("utf-8", errors="replace"))
        except orjson.JSONDecodeError:
            return None
    return _only_entry(page)


def _only_entry(page: Any) -> dict[str, Any] | None:
    content = page.get("content") if isinstance(page, dict) else None
    if not isinstance(content, list) or len(content) != 1 or not isinstance(content[0], dict):
        return None
    entry: dict[str, Any] = content[0]
    return entry


def _entry_before_cut(head: bytes) -> dict[str, Any] | None:
    """The fields of `content[0]` that end within `head` (a body cut at the size limit)."""
    fields: dict[str, Any] = {}
    builder: Any = None
    own = ""
    try:
        for prefix, event, value in ijson.parse(io.BytesIO(head), use_float=True):
            if builder is not None and (prefix == own or prefix.startswith(own + ".")):
                builder.event(event, value)
                if prefix == own and event in _VALUE_ENDS:
                    fields[own.removeprefix("content.item.")] = builder.value
                    builder = None
            elif prefix == "content.item" and event == "map_key":
                own, builder = f"content.item.{value}", ijson.ObjectBuilder()
            elif prefix == "content.item" and event == "end_map":
                break  # the whole entry was there after all
    except (ijson.JSONError, ijson.IncompleteJSONError, UnicodeDecodeError):
        pass  # the cut (or bytes that are not UTF-8): keep what ended before it
    return fields or None


_VALUE_ENDS = frozenset({"end_map", "end_array", "string", "number", "boolean", "null"})
"""ijson events that end a value (with `use_float`, every number is a "number")."""


def _finished_at(entry: dict[str, Any]) -> datetime | None:
    try:
        return Item.from_api({"id": "x", "finished_at": entry["finished_at"]}).finished_at
    except ItemFormatError:
        return None
