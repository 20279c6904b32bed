"""Pydantic models of the Apps API wire format.

Every model tolerates fields it does not know (the API grows) and status strings it does not know
(new statuses must not crash a running connector). Datetimes arrive as UTC ISO-8601 with or without
an offset and with any number of fraction digits; they are normalised to aware UTC datetimes.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, field_validator, model_validator
from pydantic_core.core_schema import ValidatorFunctionWrapHandler

from connector.clock import as_utc

TERMINAL_STATUSES = frozenset({"COMPLETED", "ERROR", "CANCELLED"})
"""Statuses after which an item never changes again (ARCHIVE, NO_MONEY, STOPPED can resume)."""

KNOWN_STATUSES = frozenset(
    {"NEW", "PROCESSING", "COMPLETED", "ERROR", "CANCELLED", "ARCHIVE", "NO_MONEY", "STOPPED"}
)

FIELD_TYPES = frozenset(
    {"string", "url", "integer", "float", "boolean", "json", "file", "coordinates"}
)
"""Scalar `input_spec` types; each also exists as `array_<type>`."""


def format_api_datetime(value: datetime) -> str:
    """The API's own format: UTC, no offset, microseconds (`2021-10-03T10:10:27.561182`)."""
    return as_utc(value).replace(tzinfo=None).isoformat(timespec="microseconds")


class _WireModel(BaseModel):
    model_config = ConfigDict(extra="allow", frozen=True)


class ItemError(_WireModel):
    code: str | None = None
    message: str | None = None
    payload: Any = None


class Item(_WireModel):
    """One task item. `raw` is the JSON object exactly as the API sent it."""

    id: str
    app_project_id: str | None = None
    batch_id: str | None = None
    status: str | None = None
    input_data: dict[str, Any] = Field(default_factory=dict)
    output_data: dict[str, Any] | None = None
    errors: list[ItemError] | None = None
    created_at: datetime | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None

    _raw: dict[str, Any] = PrivateAttr(default_factory=dict)

    @model_validator(mode="wrap")
    @classmethod
    def _keep_raw(cls, data: Any, handler: ValidatorFunctionWrapHandler) -> Item:
        item: Item = handler(data)
        if isinstance(data, dict):
            item._raw = data
        return item

    @field_validator("created_at", "started_at", "finished_at")
    @classmethod
    def _utc(cls, value: datetime | None) -> datetime | None:
        return None if value is None else as_utc(value)

    @property
    def raw(self) -> dict[str, Any]:
        return self._raw

    @property
    def is_finished(self) -> bool:
        return self.finished_at is not None


class ItemPage(_WireModel):
    """`GET …/items`: one page of items in the requested order."""

    content: list[Item] = Field(default_factory=list)
    has_more: bool = False


class FieldSpec(_WireModel):
    """One field of an `input_spec`/`output_spec`: `{"type": "string", "required": true}`."""

    type: str
    required: bool = False
    hidden: bool = False


class App(_WireModel):
    """A solution (`GET /apps/{id}`), carrying the specs the items must follow."""

    id: str
    name: str | None = None
    input_spec: dict[str, FieldSpec] = Field(default_factory=dict)
    output_spec: dict[str, FieldSpec] = Field(default_factory=dict)


class AppProject(_WireModel):
    """An app project (`GET /app-projects/{id}`)."""

    id: str
    app_id: str
    name: str | None = None
    status: str | None = None
    created: datetime | None = None
    read_only: bool | None = None


class ApiErrorBody(_WireModel):
    """The API's error body: `{"request_id", "code", "message", "payload"?}`."""

    request_id: str | None = None
    code: str | None = None
    message: str | None = None
    payload: dict[str, Any] | None = None
