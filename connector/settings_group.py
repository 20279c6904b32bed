"""The base of every settings group (`connector.settings_groups`), and the types groups share."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict

ValueFormat = Literal["json", "avro", "protobuf", "json_schema"]
"""How a record value is written: JSON text, or Confluent's wire format with a registry schema."""


class SettingsGroup(BaseModel):
    """A settings group read from a merged mapping of variable names (see `load_settings`).

    A plain pydantic model: where a variable comes from (a TOML file, the environment, the
    command line) and which names are refused is `connector.settings_sources`' job, because the
    strict checks (an unknown name is an error, with the nearest known one; platform variables
    are dropped; TOML tables by prefix) are not what a settings library's sources do."""

    model_config = ConfigDict(extra="ignore", frozen=True, validate_default=True)
    prefix: ClassVar[str]

    @classmethod
    def variable(cls, field_name: str) -> str:
        return f"{cls.prefix}{field_name}".upper()

    @classmethod
    def values_from(cls, variables: Mapping[str, str]) -> tuple[dict[str, Any], list[str]]:
        """The field values that `variables` set, and the problems found before validation."""
        values = {
            name: variables[cls.variable(name)]
            for name in cls.model_fields
            if cls.variable(name) in variables
        }
        return values, []

    @classmethod
    def documented(cls) -> list[tuple[str, str, str]]:
        """(variable, default, meaning) of each field."""
        rows: list[tuple[str, str, str]] = []
        for name, field in cls.model_fields.items():
            if field.is_required():
                default = "— (required)"
            else:
                default = str(field.get_default(call_default_factory=True)) or "(empty)"
            rows.append((cls.variable(name), default, field.description or ""))
        return rows
