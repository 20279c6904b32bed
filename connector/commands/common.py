"""What the commands that need settings share: `--config`, overrides, the variables in --help."""

from __future__ import annotations

import argparse
from pathlib import Path

from connector.config import (
    GROUPS,
    G,
    KafkaSettings,
    Settings,
    documented_variables,
    is_secret_kafka_property,
    kafka_variable,
    librdkafka_problems,
    load_group,
    load_settings,
    merged_variables,
)
from connector.errors import ConfigError
from connector.logs import register_secret, register_settings_secrets


def flag_for(variable: str) -> str:
    """`CONNECTOR_INPUT_TOPIC` → `--input-topic`; `TOLOKA_BASE_URL` → `--toloka-base-url`."""
    return "--" + variable.removeprefix("CONNECTOR_").lower().replace("_", "-")


def variables_epilog() -> str:
    lines = ["environment variables (also accepted in the --config TOML file):"]
    for variable, default, meaning in documented_variables():
        lines.append(f"  {variable:<38} {meaning} [default: {default}]")
    return "\n".join(lines)


def add_settings_arguments(parser: argparse.ArgumentParser) -> None:
    """`--config FILE`, one flag per setting (secrets excepted), `--kafka-property NAME=VALUE`."""
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = variables_epilog()
    parser.add_argument(
        "--config",
        type=Path,
        metavar="FILE",
        help="TOML file with settings (the environment wins over it, flags win over both)",
    )
    overrides = parser.add_argument_group("settings (each overrides its environment variable)")
    for group in GROUPS:
        for name, field in group.model_fields.items():
            variable = group.variable(name)
            if name == "properties" or "SecretStr" in str(field.annotation):
                continue  # secrets stay out of argv (visible in ps) and --help
            overrides.add_argument(
                flag_for(variable),
                dest=f"setting:{variable}",
                metavar="VALUE",
                help=f"{field.description} ({variable})",
            )
    overrides.add_argument(
        "--kafka-property",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="any librdkafka property, e.g. security.protocol=SASL_SSL (KAFKA_<PROPERTY>)",
    )


def _overrides(args: argparse.Namespace) -> dict[str, str]:
    overrides = {
        key.removeprefix("setting:"): value
        for key, value in vars(args).items()
        if key.startswith("setting:") and value is not None
    }
    for pair in args.kafka_property:
        name, _, value = pair.partition("=")
        overrides[kafka_variable(name.strip())] = value
    return overrides


def settings_from_args(args: argparse.Namespace) -> Settings:
    settings = load_settings(args.config, overrides=_overrides(args))
    register_settings_secrets(settings)  # from here on, no log line can carry them
    return settings


def group_from_args(args: argparse.Namespace, group: type[G]) -> G:
    """One settings group alone, for commands that need no API key or project."""
    return load_group(group, merged_variables(args.config, overrides=_overrides(args)))


def kafka_settings_from_args(args: argparse.Namespace) -> KafkaSettings:
    """Only the Kafka settings, for commands that never call the API (no key needed)."""
    kafka = group_from_args(args, KafkaSettings)
    problems = librdkafka_problems(kafka.client_config())
    if problems:
        raise ConfigError(problems)
    register_secret(*(v for p, v in kafka.properties.items() if is_secret_kafka_property(p)))
    return kafka
