"""What the commands that need settings share: `--config`, overrides, the variables in --help.

Each such command declares once which settings groups it uses (`add_settings_arguments`); that
one declaration decides its flags, the variables its `--help` lists, and what it reads and
requires (`settings_from_args`).
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path
from typing import TypeAlias

from connector.config import (
    KafkaSettings,
    Settings,
    SettingsGroup,
    documented_variables,
    leaf_groups,
    load_settings,
)
from connector.errors import ConfigError
from connector.kafka_properties import is_secret_kafka_property, kafka_variable
from connector.logs import register_settings_secrets

Subparsers: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"
"""What `register(subparsers)` of each command module adds its subcommands to."""

SettingsGroups = Sequence[type[SettingsGroup]]
"""The settings groups a command uses (see `connector.config`)."""


def flag_for(variable: str) -> str:
    """`CONNECTOR_INPUT_TOPIC` → `--input-topic`; `TOLOKA_BASE_URL` → `--toloka-base-url`."""
    return "--" + variable.removeprefix("CONNECTOR_").lower().replace("_", "-")


def variables_epilog(groups: SettingsGroups) -> str:
    lines = ["environment variables this command reads (also accepted in the --config TOML file):"]
    for variable, default, meaning in documented_variables(groups):
        lines.append(f"  {variable:<38} {meaning} [default: {default}]")
    lines.append("An unknown CONNECTOR_* or TOLOKA_* variable is an error (exit 2).")
    return "\n".join(lines)


def add_settings_arguments(parser: argparse.ArgumentParser, groups: SettingsGroups) -> None:
    """The command uses the settings `groups`: `--config FILE`, one flag per setting of theirs
    (secrets excepted), `--kafka-property NAME=VALUE` when Kafka is among them."""
    parser.set_defaults(settings_groups=tuple(groups))
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = variables_epilog(groups)
    parser.add_argument(
        "--config",
        type=Path,
        metavar="FILE",
        help="TOML file with settings (the environment wins over it, flags win over both)",
    )
    overrides = parser.add_argument_group("settings (each overrides its environment variable)")
    flagged: set[str] = set()
    for group in leaf_groups(groups):
        for name, field in group.model_fields.items():
            variable = group.variable(name)
            if name == "properties" or "SecretStr" in str(field.annotation) or variable in flagged:
                continue  # secrets stay out of argv (visible in ps) and --help
            flagged.add(variable)
            overrides.add_argument(
                flag_for(variable),
                dest=f"setting:{variable}",
                metavar="VALUE",
                help=f"{field.description} ({variable})",
            )
    if any(issubclass(group, KafkaSettings) for group in groups):
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
    problems: list[str] = []
    for pair in getattr(args, "kafka_property", []):
        name, equals, value = pair.partition("=")
        name = name.strip()
        if not equals or not name:
            # The value is not repeated: it may be a secret typed in the wrong place.
            problems.append(
                f"--kafka-property {name or '=…'}: expected NAME=VALUE, e.g. client.id=me"
            )
        elif is_secret_kafka_property(name):
            problems.append(
                f"--kafka-property {name}: a secret is not taken from the command line (the "
                f"process list shows it): set {kafka_variable(name)} in the environment or the "
                "--config file"
            )
        else:
            overrides[kafka_variable(name)] = value
    if problems:
        raise ConfigError(problems)
    return overrides


def settings_from_args(args: argparse.Namespace, groups: SettingsGroups | None = None) -> Settings:
    """The settings of the groups the command declared (or of `groups`, a part of them)."""
    settings = load_settings(
        args.config,
        overrides=_overrides(args),
        groups=args.settings_groups if groups is None else groups,
    )
    register_settings_secrets(settings)  # from here on, no log line can carry them
    return settings


def add_pipeline_argument(parser: argparse.ArgumentParser) -> None:
    """`--app-project ID`: which pipeline a command about one project's work is about."""
    parser.add_argument(
        "--app-project",
        metavar="ID",
        help="the pipeline (app project) to act on; required when the --config file has "
        "several [[pipelines]]",
    )


def pipeline_from_args(args: argparse.Namespace, groups: SettingsGroups | None = None) -> Settings:
    """The settings of the pipeline `--app-project` names (`add_pipeline_argument`)."""
    return chosen_pipeline(settings_from_args(args, groups), args.app_project)


def chosen_pipeline(settings: Settings, app_project: str | None) -> Settings:
    """The pipeline of `app_project`; the only one when None and there is one. ConfigError
    (exit 2) naming the projects there are otherwise."""
    pipelines = settings.pipelines
    if app_project is None and len(pipelines) == 1:
        return pipelines[0]
    projects = {_project_of(p): p for p in pipelines}
    if app_project in projects:
        return projects[app_project]
    known = ", ".join(p or "?" for p in projects)
    if app_project is None:
        raise ConfigError([f"--app-project: required: the configuration has several pipelines "
                           f"({known})"])  # fmt: skip
    raise ConfigError([f"--app-project: {app_project} is no pipeline's app project ({known})"])


def _project_of(pipeline: Settings) -> str | None:
    try:
        return pipeline.project.app_project_id
    except LookupError:  # a command that does not read the project: one pipeline, unnamed
        return None


def kafka_settings_from_args(args: argparse.Namespace) -> KafkaSettings:
    """Only the Kafka settings, for commands that never call the API (no key needed)."""
    return settings_from_args(args, (KafkaSettings,)).kafka
