"""Where setting variables come from (a TOML file, the environment) and which names are refused.

A name the connector does not know is a configuration error, never silently ignored: every key
and table of the TOML file must be a setting, and so must every environment variable under a
strict prefix (`CONNECTOR_`, `TOLOKA_`). Under an open prefix (`KAFKA_`) any name passes here;
librdkafka decides later. Variables that a platform puts into every container are not ours and
are dropped from the environment before anything looks at them: Kubernetes' service links for a
Service named `kafka` (or `kafka-…`) and JVM-style `KAFKA_*_OPTS`.

What is known comes from a `Vocabulary` built from the declared settings groups, so a new group,
field or TOML table is accepted once it is declared, and nothing else is.

The file may also hold `[[pipelines]]` tables, one per app project (`toml_settings`): each
holds per-pipeline keys only (`app_project_id`, topics, formats, tuning), and a key that is one
setting for every pipeline (the consumer group, Kafka, the API key) is refused as such.
"""

from __future__ import annotations

import difflib
import re
import tomllib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# Kubernetes injects, for every Service with a cluster IP, `<NAME>_SERVICE_HOST`,
# `<NAME>_SERVICE_PORT[_<PORT NAME>]`, `<NAME>_PORT` (tcp://ip:port) and
# `<NAME>_PORT_<N>_<PROTO>[_ADDR|_PORT|_PROTO]`, NAME being the Service's name upper-cased with
# dashes as underscores: a Service `kafka` (or `kafka-ui` …) yields KAFKA_… names. No librdkafka
# property ends in `.port`, `.service.host`, `.service.port` or `.opts`.
_PLATFORM_VARIABLE = re.compile(
    r"KAFKA_(PORT|PORT_.*|SERVICE_.*"  # a Service named `kafka`: the contract's exact list
    r"|\w+_(SERVICE_HOST|SERVICE_PORT(_\w+)?|PORT|PORT_\d+_(TCP|UDP|SCTP)(_(ADDR|PORT|PROTO))?)"
    r"|(\w+_)?OPTS)"  # KAFKA_OPTS, KAFKA_HEAP_OPTS, KAFKA_JVM_PERFORMANCE_OPTS …
)
_CLOSE_ENOUGH = 0.8  # difflib ratio; below it a "did you mean" would mislead more than help


def injected_by_platform(name: str) -> bool:
    """True for a KAFKA_… variable that Kubernetes or a JVM launcher sets: not a setting."""
    return _PLATFORM_VARIABLE.fullmatch(name) is not None


@dataclass(frozen=True)
class Vocabulary:
    """The names settings may have."""

    variables: frozenset[str]
    strict_prefixes: tuple[str, ...]
    """An unknown variable under one of these is a configuration error."""
    open_prefixes: tuple[str, ...]
    """Any variable under one of these passes (another layer checks the name)."""
    tables: Mapping[str, str]
    """TOML table name → prefix of its variables (`connector` → `CONNECTOR_`)."""
    pipeline_keys: Mapping[str, str] = field(default_factory=dict)
    """Key of a `[[pipelines]]` table → its variable (`batch_max_items` →
    `CONNECTOR_BATCH_MAX_ITEMS`); empty: no `[[pipelines]]` tables."""

    def knows(self, variable: str) -> bool:
        return variable in self.variables or variable.startswith(self.open_prefixes)

    def nearest(self, name: str) -> str | None:
        """The known variable `name` most likely meant, or None when none is close."""
        prefixes = self.strict_prefixes + self.open_prefixes
        bare_forms = [name, *(name.removeprefix(p) for p in prefixes if name.startswith(p))]
        for prefix in prefixes:  # the right name under the wrong (or without a) prefix
            for bare in bare_forms:
                if prefix + bare != name and prefix + bare in self.variables:
                    return prefix + bare
        close = difflib.get_close_matches(name, self.variables, n=1, cutoff=_CLOSE_ENOUGH)
        if close:
            return close[0]
        # A shared prefix makes any two names look alike: compare what follows it as well.
        by_bare: dict[str, str] = {}
        for variable in sorted(self.variables):
            for prefix in prefixes:
                if variable.startswith(prefix):
                    by_bare.setdefault(variable.removeprefix(prefix), variable)
        for bare in bare_forms[1:]:
            close = difflib.get_close_matches(bare, by_bare, n=1, cutoff=_CLOSE_ENOUGH)
            if close:
                return by_bare[close[0]]
        return None

    def table_of(self, variable: str) -> tuple[str, str] | None:
        """(table, key) where `variable` goes in the TOML file, by the longest matching prefix."""
        tables = sorted(self.tables.items(), key=lambda item: len(item[1]), reverse=True)
        for table, prefix in tables:
            if variable.startswith(prefix):
                return table, variable.removeprefix(prefix).lower()
        return None


def unknown(where: str, suggestion: str | None) -> str:
    if suggestion:
        return f"{where}: unknown setting; did you mean {suggestion}?"
    return f"{where}: unknown setting (no setting has a similar name; --help lists them)"


# --- the environment -----------------------------------------------------------------------------


def environment_variables(
    environ: Mapping[str, str], vocabulary: Vocabulary
) -> tuple[dict[str, str], list[str]]:
    """The environment without platform variables, and one line per unknown setting in it."""
    variables: dict[str, str] = {}
    problems: list[str] = []
    for name, value in environ.items():
        if injected_by_platform(name):
            continue
        if name.startswith(vocabulary.strict_prefixes) and name not in vocabulary.variables:
            problems.append(unknown(name, vocabulary.nearest(name)))
            continue
        variables[name] = value
    return variables, problems


# --- the TOML file -------------------------------------------------------------------------------


PIPELINES_TABLE = "pipelines"
"""`[[pipelines]]`: one table per app project (contract: "Several app projects")."""


@dataclass(frozen=True)
class PipelineTable:
    """One `[[pipelines]]` table of the file, as variables."""

    number: int
    """Counted from 1, in file order."""
    where: str
    """How a problem names the table: `FILE: [[pipelines]] #2`."""
    variables: dict[str, str]
    keys: dict[str, str]
    """Variable → the key the table wrote it as, to name it in a problem."""


@dataclass
class TomlFile:
    """What a TOML settings file holds: the variables outside `[[pipelines]]` (every
    pipeline's defaults), each pipeline table, and one line per problem."""

    variables: dict[str, str] = field(default_factory=dict)
    pipelines: list[PipelineTable] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


def toml_settings(path: Path, vocabulary: Vocabulary) -> TomlFile:
    """The file's settings as variables, with one line per problem naming the file and key.

    Top-level keys are variable names (`TOLOKA_APP_PROJECT_ID = "…"`); a table holds the variables
    of its prefix (`[connector] input_topic`), dotted keys and sub-tables joining with `_`
    (`[kafka] sasl.mechanism` → KAFKA_SASL_MECHANISM). `[[pipelines]]` tables hold the keys of
    `vocabulary.pipeline_keys`, `app_project_id` required.
    """
    try:
        with path.open("rb") as handle:
            data = tomllib.load(handle)
    except OSError as exc:
        return TomlFile(problems=[f"--config: cannot read {path}: {exc.strerror}"])
    except tomllib.TOMLDecodeError as exc:
        return TomlFile(problems=[f"--config: {path} is not valid TOML: {exc}"])
    found = _TomlSettings(path, vocabulary)
    pipelines: list[PipelineTable] = []
    for key, value in data.items():
        is_tables = isinstance(value, list) and value and all(isinstance(v, dict) for v in value)
        if key == PIPELINES_TABLE and vocabulary.pipeline_keys and (is_tables or value == []):
            for number, table in enumerate(value, start=1):
                where = f"{path}: [[{key}]] #{number}"
                pipelines.append(found.pipeline(number, where, table))
        elif key == PIPELINES_TABLE and vocabulary.pipeline_keys:
            found.problems.append(f"{path}: {key}: must be [[{key}]] tables, one per app project")
        elif isinstance(value, dict):
            found.table(key, value)
        elif is_tables:
            found.problems.append(_unknown_table(path, f"[[{key}]]", key.lower(), vocabulary))
        else:
            found.add(key.replace(".", "_").upper(), value, f"{path}: {key}", None)
    return TomlFile(found.variables, pipelines, found.problems)


class _TomlSettings:
    """The variables of one TOML file, collected key by key, with every problem on the way."""

    def __init__(self, path: Path, vocabulary: Vocabulary) -> None:
        self.path = path
        self.vocabulary = vocabulary
        self.variables: dict[str, str] = {}
        self.problems: list[str] = []

    def table(self, key: str, content: Mapping[str, Any]) -> None:
        table = key.lower()
        prefix = self.vocabulary.tables.get(table)
        if prefix is None:
            self.problems.append(_unknown_table(self.path, f"[{key}]", table, self.vocabulary))
            return
        for inner, value in _leaves(content):
            variable = prefix + "_".join(inner).replace(".", "_").upper()
            self.add(variable, value, f"{self.path}: [{key}] {'.'.join(inner)}", table)

    def pipeline(self, number: int, where: str, content: Mapping[str, Any]) -> PipelineTable:
        """One `[[pipelines]]` table: only per-pipeline keys; a setting every pipeline shares
        (the consumer group, Kafka, the API key …) is named as such."""
        table = PipelineTable(number, where, {}, {})
        keys = self.vocabulary.pipeline_keys
        for inner, value in _leaves(content):
            key = ".".join(inner)
            variable = keys.get(key)
            if variable is None:
                self.problems.append(self._not_per_pipeline(f"{where} {key}", key))
            elif (text := self._text(value, f"{where} {key}")) is not None:
                table.variables[variable] = text
                table.keys[variable] = key
        if "app_project_id" not in table.keys.values():
            self.problems.append(f"{where} app_project_id: is required")
        return table

    def _not_per_pipeline(self, where: str, key: str) -> str:
        variable = key.replace(".", "_").upper()
        shared = next(
            (
                prefix + variable
                for prefix in self.vocabulary.strict_prefixes
                if prefix + variable in self.vocabulary.variables
            ),
            None,
        )
        if shared is not None:
            return (
                f"{where}: is one setting for every pipeline ({shared}): set it outside "
                "[[pipelines]]"
            )
        close = difflib.get_close_matches(
            key, list(self.vocabulary.pipeline_keys), n=1, cutoff=_CLOSE_ENOUGH
        )
        return unknown(where, close[0] if close else None)

    def add(self, variable: str, value: Any, where: str, table: str | None) -> None:
        if not self.vocabulary.knows(variable):
            suggestion = _toml_suggestion(variable, self.vocabulary, table)
            self.problems.append(unknown(where, suggestion))
        elif (text := self._text(value, where)) is not None:
            self.variables[variable] = text

    def _text(self, value: Any, where: str) -> str | None:
        """A setting's value as the variable's text; None (and a problem) for an array or table."""
        if isinstance(value, bool):
            return "true" if value else "false"
        if isinstance(value, str | int | float):
            return str(value)
        self.problems.append(f"{where}: expected a string, number or boolean")
        return None


def _leaves(
    table: Mapping[str, Any], path: tuple[str, ...] = ()
) -> Iterator[tuple[list[str], Any]]:
    for key, value in table.items():
        if isinstance(value, dict):
            yield from _leaves(value, (*path, key))
        else:
            yield [*path, key], value


def _toml_suggestion(variable: str, vocabulary: Vocabulary, table: str | None) -> str | None:
    """The nearest setting as the user would write it where they wrote this one."""
    meant = vocabulary.nearest(variable)
    if meant is None or table is None:
        return meant
    if meant.startswith(vocabulary.tables[table]):  # it fits the table the user wrote in
        return meant.removeprefix(vocabulary.tables[table]).lower()
    place = vocabulary.table_of(meant)
    if place is None:
        return meant
    return place[1] if place[0] == table else f"[{place[0]}] {place[1]}"


def _unknown_table(path: Path, shown: str, table: str, vocabulary: Vocabulary) -> str:
    known = sorted(vocabulary.tables)
    close = difflib.get_close_matches(table, known, n=1, cutoff=0.6)
    hint = (
        f"did you mean [{close[0]}]?"
        if close
        else "known tables: " + ", ".join(f"[{name}]" for name in known)
    )
    return f"{path}: {shown}: unknown table; {hint}"
