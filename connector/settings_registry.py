"""The Schema Registry's settings (the avro, protobuf and json_schema formats)."""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field, SecretStr, field_validator

from connector.settings_group import SettingsGroup


class SchemaRegistrySettings(SettingsGroup):
    """The Confluent-compatible Schema Registry that the avro, protobuf and json_schema formats
    use (`connector.schema_registry`)."""

    prefix: ClassVar[str] = "SCHEMA_REGISTRY_"
    url: str = Field(
        "",
        description="Schema Registry URL (required by a format other than json)",
        pattern=r"^(https?://[^\s/]+.*)?$",
    )
    basic_auth_user_info: SecretStr = Field(
        SecretStr(""), description="`user:password` for the registry's HTTP basic auth"
    )
    ssl_ca_location: str = Field(
        "", description="CA file (PEM) that signed the registry's certificate (https)"
    )

    @field_validator("basic_auth_user_info")
    @classmethod
    def _user_and_password(cls, value: SecretStr) -> SecretStr:
        text = value.get_secret_value()
        if text and ":" not in text:
            raise ValueError("must be user:password")
        return value
