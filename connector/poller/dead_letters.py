"""Dead letters of the poller: finished items it cannot publish, written to the dead-letter topic
in the same transaction that moves the cursor past them (the contract's "Dead letters").

- `result_too_large`: the result record is larger than the output topic accepts;
- `unreadable_result`: the API returned the item in a form that cannot be read, even alone.

Headers: `error-reason`, `error-message`, `toloka-item-id`, `toloka-app-project-id`, and
`error-dropped-fields` when fields had to be left out. The value holds as much of the item as
fits the dead-letter topic: the item as JSON, its largest fields left out one by one until it
fits (`id` is always kept); an item that could not be decoded into fields keeps the first bytes
the API sent for it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from connector.contract.dead_letters import (
    DROPPED_FIELDS_HEADER,
    MESSAGE_HEADER,
    REASON_HEADER,
    error_message,
)
from connector.contract.results import APP_PROJECT_ID_HEADER, ITEM_ID_HEADER
from connector.kafka.clients import Header
from connector.kafka.limits import record_size
from connector.poller.publisher import OutputRecord, encode_json


def dead_letter(
    reason: str,
    message: str,
    *,
    item_id: str,
    app_project_id: str,
    key: bytes,
    fields: Mapping[str, Any] | None,
    raw: bytes = b"",
    limit: int,
) -> OutputRecord:
    """The dead letter of one item, at most `limit` bytes as `record_size` counts them."""
    headers: list[Header] = [
        (REASON_HEADER, reason.encode()),
        (MESSAGE_HEADER, error_message(message)),
        (ITEM_ID_HEADER, item_id.encode()),
        (APP_PROJECT_ID_HEADER, app_project_id.encode()),
    ]
    if fields is None:
        room = max(limit - record_size(key, b"", headers), 0)
        return OutputRecord(key, raw[:room], headers)
    kept = dict(fields)
    largest_first = sorted(
        (name for name in kept if name != "id"), key=lambda name: -len(encode_json(kept[name]))
    )
    dropped: list[str] = []
    value = encode_json(kept)
    while largest_first and record_size(key, value, _with_dropped(headers, dropped)) > limit:
        name = largest_first.pop(0)
        del kept[name]
        dropped.append(name)
        value = encode_json(kept)
    return OutputRecord(key, value, _with_dropped(headers, dropped))


def _with_dropped(headers: list[Header], dropped: list[str]) -> list[Header]:
    if not dropped:
        return headers
    return [*headers, (DROPPED_FIELDS_HEADER, ",".join(dropped).encode())]
