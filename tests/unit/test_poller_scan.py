"""An API that ignores `after_id` or `finished_gte` cannot make the poller publish again what
lies behind its cursor, nor move the cursor backwards."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

from connector.contract.cursor import initial_cursor
from connector.poller.late_window import PollerState
from connector.poller.scan import main_scan, next_request, plan_page
from connector.toloka.models import ItemPage
from tests.unit.poller_fakes import T0, finished_item


def state_at(item_id: str, finished: float, *, window: float = 0.0) -> PollerState:
    cursor = initial_cursor("proj", "earliest", now=T0, late_window_seconds=window, holder="A")
    at = datetime.fromtimestamp(finished, UTC)
    return PollerState(replace(cursor, after_id=item_id, finished_at=at, late_horizon=at))


def page(*items: tuple[str, float], has_more: bool = False) -> ItemPage:
    return ItemPage.from_api(
        {"content": [finished_item(i, t) for i, t in items], "has_more": has_more}
    )


def test_items_behind_the_cursor_and_the_cursor_item_are_skipped() -> None:
    state = state_at("c", T0)
    listed = page(("a", T0 - 2), ("b", T0 - 1), ("c", T0), ("d", T0), ("e", T0 + 1))
    plan = plan_page(state, main_scan(T0), listed, now=T0, late_window_seconds=0, holder="A")
    assert [item.id for item in plan.publish] == ["d", "e"]
    assert plan.out_of_range == 3
    assert plan.change is not None
    assert plan.change.cursor.after_id == "e"


def test_a_page_of_nothing_but_old_items_neither_moves_the_cursor_nor_spins() -> None:
    state = state_at("c", T0)
    listed = page(("a", T0 - 2), ("b", T0 - 1), has_more=True)
    plan = plan_page(state, main_scan(T0), listed, now=T0, late_window_seconds=0, holder="A")
    assert plan.publish == []
    assert plan.change is None
    assert plan.caught_up  # wait for the next poll instead of asking again at once


def test_a_forgotten_after_id_lists_from_the_cursor_floor_until_the_cursor_moves() -> None:
    state = state_at("c", T0)
    scan = replace(main_scan(T0), from_floor=True)
    request = next_request(state, scan)
    assert request.after_id is None
    assert request.filters["finished_gte"].startswith(
        datetime.fromtimestamp(T0, UTC).strftime("%Y-%m-%dT%H:%M:%S")
    )
    plan = plan_page(state, scan, page(("c", T0), ("d", T0 + 1)), now=T0,
                     late_window_seconds=0, holder="A")  # fmt: skip
    assert [item.id for item in plan.publish] == ["d"]
    assert not plan.next_scan.from_floor
