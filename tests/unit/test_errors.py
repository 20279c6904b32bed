"""The error tree is closed: every error the connector raises on purpose is a ConnectorError
declared in `connector.errors` and drawn in its docstring, so the command line can turn each into
its exit code (2 for a setting, 1 for the rest) instead of a traceback."""

from __future__ import annotations

import importlib
import inspect
import pkgutil

import pytest

import connector
from connector import errors
from connector.cli import main
from connector.errors import ConfigError, ConnectorError

ANSWERS = {
    "connector.simulator.listing.ListingError": "the simulator's 400 answer to a bad listing "
    "query: its HTTP handler turns it into the response, it never leaves the request",
    "connector.devtools.registry.store.RegistryError": "the registry simulator's error answer: "
    "its HTTP handler turns it into the response",
    "connector.devtools.registry.compatibility.InvalidSchemaError": "the registry simulator's "
    "42201 answer, turned into a RegistryError by its store",
    "connector.formats.decoding.UndecodableError": "an input record its schema does not read: "
    "the uploader's decode turns it into an `invalid_schema` dead letter",
    "connector.formats.shape.UnencodableError": "a result its output schema cannot hold: the "
    "poller's encoding producer turns it into an `unencodable_result` dead letter",
    "connector.uploader.assignment.ReadingStoppedError": "an assignment's read not made because "
    "a stop came: the assignment leaves the partitions to their next owner",
}
"""Exceptions that carry an answer within one module pair rather than a failure (private
classes, `_Name`, are such too)."""


def connector_modules() -> list[str]:
    found = pkgutil.walk_packages(connector.__path__, prefix="connector.")
    return sorted(name for _, name, _ in found if not name.endswith("__main__"))


def declared_errors() -> list[type[BaseException]]:
    classes: dict[str, type[BaseException]] = {}
    for name in connector_modules():
        module = importlib.import_module(name)
        for _, value in inspect.getmembers(module, inspect.isclass):
            if issubclass(value, BaseException) and value.__module__ == name:
                classes[f"{name}.{value.__qualname__}"] = value
    return list(classes.values())


def test_every_public_error_class_is_declared_in_the_tree() -> None:
    public = [error for error in declared_errors() if not error.__name__.startswith("_")]
    names = {f"{error.__module__}.{error.__name__}": error for error in public}
    outside = [
        name
        for name, error in names.items()
        if error.__module__ != errors.__name__ and name not in ANSWERS
    ]
    assert outside == [], "declare these in connector.errors, under ConnectorError"
    assert all(issubclass(e, ConnectorError) for name, e in names.items() if name not in ANSWERS)


def test_the_docstring_draws_every_class_of_the_tree() -> None:
    tree = errors.__doc__ or ""
    drawn = [
        value.__name__
        for _, value in inspect.getmembers(errors, inspect.isclass)
        if issubclass(value, ConnectorError) and value.__module__ == errors.__name__
    ]
    assert [name for name in drawn if f" {name} " not in tree] == []


def fails_with(error: ConnectorError) -> object:
    def run(_args: object) -> int:
        raise error

    return run


@pytest.mark.parametrize(
    ("error", "code"),
    [
        (ConfigError(["CONNECTOR_X: must not be empty"]), 2),
        (errors.PageAbortedError("commit_transaction: aborted"), 1),
        (errors.StateFormatError("cursor record is not JSON"), 1),
        (errors.BrokerError("the mock cluster process exited"), 1),
    ],
    ids=lambda value: type(value).__name__ if isinstance(value, Exception) else str(value),
)
def test_the_command_line_turns_the_tree_into_exit_codes(
    error: ConnectorError,
    code: int,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setattr("connector.commands.tail.run", fails_with(error))
    assert main(["tail", "some-topic"]) == code
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1
    assert str(error) in lines[0]
