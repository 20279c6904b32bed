"""What the uploader records before it sends, so that whoever reads a partition next can tell
which of its records may already exist in Toloka (contract: README "Delivery guarantees").

The record is the metadata of the uploader's committed offset (Kafka stores a string with each
committed offset, in the same request, at no extra cost). For a partition committed at offset
P it says one of:
- `since` = T: records at offsets >= P may have been created, none before T (wall-clock
  seconds of the connector that sent them). Every commit made while the partition is owned
  says this, with T the send time of the oldest request still unsettled beyond P, or the time
  of the commit when none is: a request sent later is sent after T either way.
- settled (`since` null): nothing at or beyond P was sent. Only a final commit (a clean stop,
  a hand-over) that leaves nothing unsettled beyond P says this.
No metadata, or metadata of another writer, says nothing: the records are uploaded at least
once.

A record and an item of the API are matched by `item_identity`: the value of the key field
(`CONNECTOR_KEY_FIELD`) where the item has one, else the whole input as canonical JSON. Two
records with one identity are two items (matching counts them as a multiset).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import orjson

FORMAT = "toloka-connector/upload-intent"
VERSION = 1


@dataclass(frozen=True, slots=True)
class UploadIntent:
    since: float | None
    """Wall-clock seconds before which nothing beyond the committed offset was sent; None:
    nothing beyond it was sent at all (settled)."""

    @property
    def settled(self) -> bool:
        return self.since is None


def encode_intent(intent: UploadIntent) -> str:
    """The offset-commit metadata for `intent` (about 60 bytes; brokers keep up to 4 KiB)."""
    since = None if intent.since is None else round(intent.since, 6)
    return orjson.dumps({"format": FORMAT, "v": VERSION, "since": since}).decode()


def decode_intent(metadata: str | None) -> UploadIntent | None:
    """The intent in a committed offset's metadata; None when there is none this version can
    read (no metadata, another writer's, a newer version's)."""
    if not metadata:
        return None
    try:
        data = orjson.loads(metadata)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(data, dict) or data.get("format") != FORMAT or data.get("v") != VERSION:
        return None
    since = data.get("since")
    if since is None:
        return UploadIntent(None)
    if isinstance(since, bool) or not isinstance(since, int | float) or not math.isfinite(since):
        return None
    return UploadIntent(float(since))


def item_identity(input_data: Mapping[str, Any], key_field: str) -> str:
    """What a record and an item are matched by: the key field's value where the input has one
    (JSON, so 1 and "1" differ), else the whole input as canonical JSON."""
    key = input_data.get(key_field)
    if key is not None:
        return "k:" + orjson.dumps(key, option=orjson.OPT_SORT_KEYS).decode()
    return "c:" + orjson.dumps(input_data, option=orjson.OPT_SORT_KEYS).decode()
