"""The one error the harness raises: a scenario could not be measured (not a missed target)."""

from __future__ import annotations


class BenchError(RuntimeError):
    """Something the benchmark needs failed or timed out; the message says what."""
