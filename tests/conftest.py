"""Shared fixtures live in tests/fixtures/ as plugins, one module per thing they start."""

import pytest

pytest_plugins = [
    "tests.fixtures.brokers",
    "tests.fixtures.simulator",
    "tests.fixtures.console",
    "tests.fixtures.registry",
]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The tests marked slow first (a stable sort: otherwise in file order). Under `-n 2 --dist
    worksteal` a worker then ends the run on short tests, which the other can steal, not on a
    long one while the other worker idles."""
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)
