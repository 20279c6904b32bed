"""The Apps API wire format: pydantic models, and plain objects for the items (read by the
thousand: see `Item`).

Every model tolerates fields it does not know (the API grows) and status strings it does not know
(new statuses must not crash a running connector). Datetimes arrive as UTC ISO-8601 with or without
an offset and with any number of fraction digits; they are normalised to aware UTC datetimes.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from connector.clock import as_utc
from connector.errors import ItemFormatError

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


_ANY_DATETIME: TypeAdapter[datetime] = TypeAdapter(datetime)


def _datetime(value: Any, name: str) -> datetime | None:
    """An API datetime as aware UTC: ISO-8601 strings by `datetime.fromisoformat` (C, ~1 µs),
    anything else pydantic accepts for a datetime (a timestamp, rarer ISO forms) by pydantic."""
    if value is None:
        return None
    if type(value) is str:
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError:
            pass
        else:  # as_utc, inlined: three per item
            if parsed.tzinfo is not None:
                return parsed.astimezone(UTC)
            # The API's own form has no offset: parsed again with one, which costs a fifth of
            # `replace(tzinfo=UTC)` (keyword arguments: ~1.7 µs on CPython 3.11).
            try:
                utc = datetime.fromisoformat(value + "+00:00")
            except ValueError:
                utc = parsed
            # (A date alone drops the offset.)
            return utc if utc.tzinfo is not None else parsed.replace(tzinfo=UTC)
    try:
        return as_utc(_ANY_DATETIME.validate_python(value))
    except ValidationError:
        raise ItemFormatError(f"{name} is not a datetime") from None


class Item:
    """One task item, read from the object the API sent (kept whole in `raw`).

    A plain slotted object rather than a pydantic model: a listing page holds up to thousands of
    items and the poller reads each once (a model per item cost ~10x the JSON decoding). What the
    connector relies on is checked when an item is read (`from_api`): `id` a string, `status`,
    `app_project_id` and `batch_id` strings or null, `input_data` an object, `output_data` an
    object or null, `errors` a list or null, the three datetimes datetimes or null; every other
    field is left as sent.
    """

    __slots__ = (
        "app_project_id",
        "batch_id",
        "created_at",
        "errors",
        "finished_at",
        "id",
        "input_data",
        "output_data",
        "raw",
        "started_at",
        "status",
    )

    def __init__(
        self,
        *,
        id: str,
        app_project_id: str | None = None,
        batch_id: str | None = None,
        status: str | None = None,
        input_data: dict[str, Any] | None = None,
        output_data: dict[str, Any] | None = None,
        errors: list[Any] | None = None,
        created_at: datetime | None = None,
        started_at: datetime | None = None,
        finished_at: datetime | None = None,
        raw: dict[str, Any] | None = None,
    ) -> None:
        self.id = id
        self.app_project_id = app_project_id
        self.batch_id = batch_id
        self.status = status
        self.input_data: dict[str, Any] = {} if input_data is None else input_data
        self.output_data = output_data
        self.errors = errors
        self.created_at = created_at
        self.started_at = started_at
        self.finished_at = finished_at
        self.raw: dict[str, Any] = {} if raw is None else raw
        """The JSON object exactly as the API sent it ({} for a stand-in the connector made)."""

    @classmethod
    def from_api(cls, data: Any) -> Item:
        """The item the API sent as `data` (a decoded JSON object); ItemFormatError when it does
        not have the shape above. (Read by the thousand: each field is looked up once, and the
        slots are filled directly, which costs a fifth less than calling `__init__` with
        keywords.)"""
        if not isinstance(data, dict):
            raise ItemFormatError("an item is not a JSON object")
        get = data.get
        item_id = get("id")
        if not isinstance(item_id, str):
            raise ItemFormatError("id is missing or not a string")
        app_project_id, batch_id, status = get("app_project_id"), get("batch_id"), get("status")
        for value, name in ((app_project_id, "app_project_id"), (batch_id, "batch_id"),
                            (status, "status")):  # fmt: skip
            if value is not None and not isinstance(value, str):
                raise ItemFormatError(f"{name} is not a string")
        input_data = get("input_data", {})
        if not isinstance(input_data, dict):
            raise ItemFormatError("input_data is not an object")
        output_data = get("output_data")
        if output_data is not None and not isinstance(output_data, dict):
            raise ItemFormatError("output_data is not an object")
        errors = get("errors")
        if errors is not None and not isinstance(errors, list):
            raise ItemFormatError("errors is not a list")
        item = cls.__new__(cls)
        item.id = item_id
        item.app_project_id = app_project_id
        item.batch_id = batch_id
        item.status = status
        item.input_data = input_data
        item.output_data = output_data
        item.errors = errors
        item.created_at = _datetime(get("created_at"), "created_at")
        item.started_at = _datetime(get("started_at"), "started_at")
        item.finished_at = _datetime(get("finished_at"), "finished_at")
        item.raw = data
        return item

    @property
    def is_finished(self) -> bool:
        return self.finished_at is not None

    def __repr__(self) -> str:
        return f"Item(id={self.id!r}, status={self.status!r}, finished_at={self.finished_at!r})"


class ItemPage:
    """`GET …/items`: one page of items in the requested order."""

    __slots__ = ("content", "has_more")

    def __init__(self, content: list[Item] | None = None, has_more: bool = False) -> None:
        self.content: list[Item] = [] if content is None else content
        self.has_more = has_more

    @classmethod
    def from_api(cls, data: Any) -> ItemPage:
        """The page the API sent as `data`; ItemFormatError naming the first field (and item)
        that does not have its shape."""
        if not isinstance(data, dict):
            raise ItemFormatError("the page is not a JSON object")
        content = data.get("content", [])
        has_more = data.get("has_more", False)
        if not isinstance(content, list):
            raise ItemFormatError("content is not a list")
        if not isinstance(has_more, bool):
            raise ItemFormatError("has_more is not a boolean")
        from_api = Item.from_api
        items = []
        for index, entry in enumerate(content):
            try:
                items.append(from_api(entry))
            except ItemFormatError as error:
                raise ItemFormatError(f"content.{index}: {error}") from None
        return cls(items, has_more)


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
