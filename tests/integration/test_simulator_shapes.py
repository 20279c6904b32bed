"""The simulator's knobs for the poller's hard cases, over TCP: slow listings, bulky outputs,
listing entries that cannot be decoded."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import httpx
import orjson
import pytest

from tests.fixtures.simulator import SimulatorHandle

pytestmark = pytest.mark.integration


@pytest.fixture
def client(simulator: SimulatorHandle) -> Iterator[httpx.Client]:
    with simulator.client() as http:
        yield http


def listing(sim: SimulatorHandle, http: httpx.Client) -> httpx.Response:
    return http.get(sim.items_url, params={"sort": "finished", "limit": "100"})


def test_read_latency_holds_back_listings_only(
    simulator: SimulatorHandle, client: httpx.Client
) -> None:
    listing(simulator, client)  # connect first
    simulator.set_knobs(read_latency=0.3)
    started = time.monotonic()
    assert listing(simulator, client).status_code == 200
    assert time.monotonic() - started >= 0.3
    # Writes are not held back: with listings held back far longer than the write may take, the
    # write still answers.
    simulator.set_knobs(read_latency=60.0)
    created = client.post(
        f"{simulator.items_url}/bulk", json={"items": [{"text": "t"}]}, timeout=15.0
    )
    assert created.status_code == 200


def test_bulky_outputs_are_drawn_once_per_item_and_listed_the_same_way_each_time(
    simulator: SimulatorHandle, client: httpx.Client
) -> None:
    simulator.set_knobs(bulky_output_bytes=50_000, bulky_output_ratio=0.5)
    simulator.seed(40)
    first = orjson.loads(listing(simulator, client).content)["content"]
    again = orjson.loads(listing(simulator, client).content)["content"]
    assert first == again
    masks = [len(item["output_data"].get("mask", "")) for item in first]
    assert set(masks) == {0, 50_000}
    assert 5 < masks.count(50_000) < 35


def test_shape_knobs_leave_ids_and_outcomes_as_the_seed_draws_them(
    simulator_factory: Any,
) -> None:
    def outcomes(**knobs: Any) -> list[tuple[str, str]]:
        sim = simulator_factory(seed=11, item_error_ratio=0.3, **knobs)
        with sim.client() as http:
            http.post(
                f"{sim.items_url}/bulk", json={"items": [{"text": f"t{n}"} for n in range(30)]}
            )
            sim.advance_clock(5)
            content = orjson.loads(listing(sim, http).content)["content"]
        return [(item["id"], item["status"]) for item in content]

    assert outcomes() == outcomes(bulky_output_bytes=100, bulky_output_ratio=0.5)


@pytest.mark.parametrize("knob", ["undecodable_item_ratio", "invalid_item_ratio"])
def test_an_item_that_cannot_be_read_spoils_every_page_that_holds_it(
    simulator: SimulatorHandle, client: httpx.Client, knob: str
) -> None:
    simulator.seed(3)
    simulator.set_knobs(**{knob: 1.0})
    bad = simulator.seed(1)["first_id"]
    simulator.set_knobs(**{knob: 0.0})
    simulator.seed(3)
    body = listing(simulator, client).content
    if knob == "undecodable_item_ratio":
        with pytest.raises(orjson.JSONDecodeError):
            orjson.loads(body)
        body = body.decode("utf-8", errors="replace").encode()
    items = {item["id"]: item for item in orjson.loads(body)["content"]}
    assert len(items) == 7
    spoiled = [item_id for item_id, item in items.items() if item.get("note") or
               item["finished_at"] == "not-a-datetime"]  # fmt: skip
    assert spoiled == [bad]


def test_a_reset_with_a_project_id_renames_the_project_and_forgets_the_old_one(
    simulator: SimulatorHandle,
) -> None:
    old_items_url = simulator.items_url
    simulator.seed(3)
    simulator.reset(restore_knobs=True, project_id="renamed-by-reset")
    with simulator.client() as client:
        assert client.get(old_items_url).status_code == 404
        assert simulator.items_url.endswith("/app-projects/renamed-by-reset/items")
        listed = client.get(simulator.items_url).raise_for_status().json()
    assert listed["content"] == []
    with pytest.raises(httpx.HTTPStatusError):
        simulator.reset(project_id="")
