"""Shared fixtures live in tests/fixtures/ as plugins, one module per thing they start."""

pytest_plugins = [
    "tests.fixtures.brokers",
    "tests.fixtures.simulator",
    "tests.fixtures.console",
    "tests.fixtures.registry",
]
