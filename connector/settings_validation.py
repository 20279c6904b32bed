"""One settings group validated from the variables: each problem pydantic finds (or librdkafka,
for the Kafka properties) as one line naming the variable, never showing a secret's value."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeVar

from pydantic import SecretStr, ValidationError
from pydantic.fields import FieldInfo

from connector.kafka_properties import librdkafka_problems
from connector.settings_groups import KafkaSettings, SettingsGroup

G = TypeVar("G", bound=SettingsGroup)


_MESSAGES = {
    "int_parsing": "is not an integer",
    "int_from_float": "is not an integer",
    "float_parsing": "is not a number",
    "bool_parsing": "is not a boolean (use true or false)",
    "missing": "is required",
    "string_too_short": "must not be empty",
    "too_short": "must not be empty",  # a SecretStr's min_length
}


def _describe_error(error: Any, secret: bool) -> str:
    kind = error["type"]
    ctx = error.get("ctx", {})
    message = _MESSAGES.get(kind)
    if message is None:
        if kind in {"greater_than_equal", "greater_than", "less_than_equal", "less_than"}:
            sign = {
                "greater_than_equal": ">=",
                "greater_than": ">",
                "less_than_equal": "<=",
                "less_than": "<",
            }[kind]
            bound = next(iter(ctx.values()))
            message = f"must be {sign} {bound}"
        elif kind == "literal_error":
            message = f"must be one of {ctx.get('expected', '')}"
        elif kind == "string_pattern_mismatch":
            message = "is not an http(s) URL"
        else:
            message = str(error["msg"]).lower()
    if kind == "missing" or secret:
        return message
    return f"{error['input']!r} {message}"


def validate_group(group: type[G], variables: Mapping[str, str]) -> tuple[G | None, list[str]]:
    """`group` read from `variables`, and one line per problem (no group when there is one)."""
    values, problems = group.values_from(variables)
    try:
        instance = group(**values)
    except ValidationError as exc:
        for error in exc.errors():
            name = str(error["loc"][0])
            field: FieldInfo = group.model_fields[name]
            secret = field.annotation is SecretStr
            problems.append(f"{group.variable(name)}: {_describe_error(error, secret)}")
        return None, problems
    if isinstance(instance, KafkaSettings):
        problems.extend(librdkafka_problems(instance.client_config()))
    return (None if problems else instance), problems
