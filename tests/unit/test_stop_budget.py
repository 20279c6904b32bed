"""The uploader's stop fits its shutdown budget: the drain gets what the steps after it leave."""

from __future__ import annotations

from connector.stop_budget import AFTER_DRAIN_SECONDS, drain_seconds, worker_shutdown_seconds


def test_the_drain_is_its_timeout_when_the_budget_has_room_for_the_rest() -> None:
    assert drain_seconds(30, 45) == 30
    assert drain_seconds(30, 30 + AFTER_DRAIN_SECONDS) == 30


def test_the_drain_is_shortened_so_that_the_steps_after_it_fit() -> None:
    assert drain_seconds(30, 31) == 31 - AFTER_DRAIN_SECONDS
    assert drain_seconds(30, AFTER_DRAIN_SECONDS / 2) == 0


def test_a_worker_keeps_a_margin_of_the_parents_budget() -> None:
    assert worker_shutdown_seconds(45) == 40
    assert worker_shutdown_seconds(9) == 6
