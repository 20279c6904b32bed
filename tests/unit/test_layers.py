"""The import graph keeps its floors (docs/architecture.md): commands → assembly → roles → seams →
base, tooling beside them, never imported by the product; no module imports itself back through
others; the suites import only the support package and `connector`, never each other.

Read from the source with `ast` (every import, those under TYPE_CHECKING and inside functions
too), so a new arrow fails here, naming the module and what it imports.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

LAYER_OF = {
    "connector.cli": "commands",
    "connector.__main__": "commands",
    "connector.commands": "commands",
    "connector.settings_doc": "commands",
    "connector.simulator": "tooling",
    "connector.demo": "tooling",
    "connector.devtools": "tooling",
    "connector.app": "assembly",
    "connector.uploader": "roles",
    "connector.poller": "roles",
    "connector.operations": "roles",
    "connector.startup": "roles",
    "connector.validation": "roles",
    "connector.formats": "roles",
    "connector.kafka": "seams",
    "connector.toloka": "seams",
    "connector.health": "seams",
    "connector.schema_registry": "seams",
    "connector.contract": "base",
    "connector.config": "base",
    "connector.settings_groups": "base",
    "connector.settings_group": "base",
    "connector.settings_api": "base",
    "connector.settings_kafka": "base",
    "connector.settings_topics": "base",
    "connector.settings_uploader": "base",
    "connector.settings_poller": "base",
    "connector.settings_registry": "base",
    "connector.settings_runtime": "base",
    "connector.settings_sources": "base",
    "connector.settings_loaded": "base",
    "connector.settings_validation": "base",
    "connector.settings_checks": "base",
    "connector.settings_pipelines": "base",
    "connector.kafka_properties": "base",
    "connector.errors": "base",
    "connector.clock": "base",
    "connector.metrics": "base",
    "connector.logs": "base",
    "connector.interrupts": "base",
    "connector.availability": "base",
    "connector.lifecycle": "base",
    "connector.outstanding": "base",
    "connector.stop_budget": "base",
    "connector": "base",  # the package itself: its __version__
}
"""Module (or package) → its floor; the longest matching name decides."""

MAY_IMPORT = {
    "commands": {"commands", "tooling", "assembly", "roles", "seams", "base"},
    "tooling": {"tooling", "assembly", "roles", "seams", "base"},
    "assembly": {"assembly", "roles", "seams", "base"},
    "roles": {"roles", "seams", "base"},
    "seams": {"seams", "base"},
    "base": {"base"},
}
"""Downward arrows only. Tooling (simulator, demo, development brokers) is a user feature built
on the product; nothing of the product imports it."""

SIDEWAYS = {
    ("connector.operations", "connector.poller"): "the operator's commands read and replace the "
    "poller's cursor through its store (`read_cursor`, `write_cursor`)",
    ("connector.uploader", "connector.startup"): "both roles read the API at start-up alike",
    ("connector.poller", "connector.startup"): "both roles read the API at start-up alike",
    ("connector.uploader", "connector.validation"): "the uploader checks items against input_spec",
    ("connector.uploader", "connector.formats"): "input records in a registry format are decoded "
    "by the formats",
    ("connector.poller", "connector.formats"): "results in a registry format are encoded by the "
    "formats",
    ("connector.formats", "connector.validation"): "the shapes read the spec types as validation "
    "names them (array_<T>)",
    ("connector.kafka", "connector.toloka"): "",
}
"""Arrows between packages of one floor that are allowed, and why; an empty reason forbids."""

SUITES = ("tests", "reliability", "benchmarks", "testkit")


def modules(package: str) -> Iterator[tuple[str, Path]]:
    for path in sorted((ROOT / package).rglob("*.py")):
        parts = path.relative_to(ROOT).with_suffix("").parts
        yield ".".join(parts[:-1] if parts[-1] == "__init__" else parts), path


def imports(name: str, path: Path) -> set[str]:
    found: set[str] = set()
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                module = ".".join([*base, *([node.module] if node.module else [])])
            else:
                module = node.module or ""
            found.add(module)
            # `from connector import errors` imports the module connector.errors
            found.update(f"{module}.{alias.name}" for alias in node.names)
    return found


def owner(module: str, table: dict[str, str]) -> str | None:
    parts = module.split(".")
    for end in range(len(parts), 0, -1):
        if ".".join(parts[:end]) in table:
            return ".".join(parts[:end])
    return None


def product_graph() -> dict[str, set[str]]:
    known = {name for name, _ in modules("connector")}
    return {
        name: {target for target in imports(name, path) if target in known and target != name}
        for name, path in modules("connector")
    }


def test_every_module_of_the_package_has_a_floor() -> None:
    assert [name for name in product_graph() if owner(name, LAYER_OF) is None] == []


def test_no_arrow_points_up_or_sideways_without_a_reason() -> None:
    wrong: list[str] = []
    for source, targets in product_graph().items():
        source_unit = owner(source, LAYER_OF)
        assert source_unit is not None
        for target in sorted(targets):
            target_unit = owner(target, LAYER_OF)
            assert target_unit is not None
            source_layer, target_layer = LAYER_OF[source_unit], LAYER_OF[target_unit]
            if target_layer not in MAY_IMPORT[source_layer]:
                wrong.append(f"{source} ({source_layer}) imports {target} ({target_layer})")
            elif source_layer == target_layer and source_layer in {"roles", "seams"}:
                top = (".".join(source.split(".")[:2]), ".".join(target.split(".")[:2]))
                if top[0] != top[1] and not SIDEWAYS.get(top):
                    wrong.append(f"{source} imports {target}: no reason for {top[0]} → {top[1]}")
    assert wrong == []


def test_the_import_graph_has_no_cycle() -> None:
    graph = product_graph()
    cycles: list[list[str]] = []
    state: dict[str, int] = {}  # 1: on the path, 2: done
    path: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        path.append(node)
        for target in sorted(graph[node]):
            if state.get(target) == 1:
                cycles.append([*path[path.index(target) :], target])
            elif target not in state:
                visit(target)
        path.pop()
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node)
    assert cycles == []


@pytest.mark.parametrize("suite", SUITES)
def test_the_suites_share_only_the_support_package(suite: str) -> None:
    """tests/, reliability/ and benchmarks/ import testkit and connector, never each other;
    testkit imports connector only."""
    allowed = {suite, "connector"} | ({"testkit"} if suite != "testkit" else set())
    wrong = [
        f"{name} imports {target}"
        for name, path in modules(suite)
        for target in sorted(imports(name, path))
        if target.split(".")[0] in SUITES and target.split(".")[0] not in allowed
    ]
    assert wrong == []


def test_the_product_imports_no_suite() -> None:
    wrong = [
        f"{name} imports {target}"
        for name, path in modules("connector")
        for target in sorted(imports(name, path))
        if target.split(".")[0] in SUITES
    ]
    assert wrong == []
