"""The simulator against the Apps API notes, over TCP, with a plain HTTP client.

Expected orders and filter results are computed here from the items' own fields (as the API
returns them one by one), so every check compares two independent views of the same data.
"""

from __future__ import annotations

import re
import socket
import time
from collections.abc import Callable, Iterator
from datetime import datetime
from typing import Any

import httpx
import pytest

from connector.simulator.solutions import text_moderation_output
from tests.fixtures.simulator import SimulatorHandle

pytestmark = pytest.mark.integration

API_DATETIME = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}$")
ITEM_KEYS = {"id", "app_project_id", "status", "input_data", "created_at"}
MAX_ID = "\U0010ffff"  # sorts after every id


@pytest.fixture
def client(simulator: SimulatorHandle) -> Iterator[httpx.Client]:
    with simulator.client() as http:
        yield http


def texts(count: int, prefix: str = "item") -> list[dict[str, Any]]:
    return [{"id": f"{prefix}-{n}", "text": f"{prefix} text number {n}"} for n in range(count)]


def bulk(sim: SimulatorHandle, http: httpx.Client, items: list[Any], **form: Any) -> httpx.Response:
    return http.post(f"{sim.items_url}/bulk", json={"items": items, **form})


def create(sim: SimulatorHandle, http: httpx.Client, items: list[dict[str, Any]]) -> list[str]:
    response = bulk(sim, http, items)
    assert response.status_code == 200, response.text
    ids: list[str] = response.json()
    return ids


def get_item(sim: SimulatorHandle, http: httpx.Client, item_id: str) -> dict[str, Any]:
    response = http.get(f"{sim.items_url}/{item_id}")
    assert response.status_code == 200, response.text
    item: dict[str, Any] = response.json()
    return item


def page(sim: SimulatorHandle, http: httpx.Client, **params: Any) -> dict[str, Any]:
    response = http.get(sim.items_url, params=params)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    assert set(body) == {"content", "has_more"}
    return body


def list_all(sim: SimulatorHandle, http: httpx.Client, **params: Any) -> list[dict[str, Any]]:
    """Every page, following `after_id` = the last id of the previous page."""
    items: list[dict[str, Any]] = []
    while True:
        body = page(sim, http, **params)
        items += body["content"]
        if not body["has_more"]:
            return items
        assert body["content"], "has_more with an empty page"
        params["after_id"] = body["content"][-1]["id"]


def expected_order(items: list[dict[str, Any]], sort: str) -> list[str]:
    """The documented order: the keys, then id in the direction of the last key;
    unfinished items sort as if they finished after everything."""
    keys = [(part.removeprefix("-"), part.startswith("-")) for part in sort.split(",")]
    if "id" not in [name for name, _ in keys]:
        keys.append(("id", keys[-1][1]))
    field = {"id": "id", "created": "created_at", "finished": "finished_at", "status": "status"}
    ordered = list(items)
    for name, descending in reversed(keys):
        ordered.sort(key=lambda item: item.get(field[name]) or MAX_ID, reverse=descending)
    return [item["id"] for item in ordered]


def processing_time(item: dict[str, Any]) -> float:
    finished = datetime.fromisoformat(item["finished_at"])
    return (finished - datetime.fromisoformat(item["created_at"])).total_seconds()


def api_error(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body: dict[str, Any] = response.json()
    assert body["code"] == code
    assert body["request_id"]
    assert body["message"]
    return body


@pytest.fixture
def mixed_items(simulator: SimulatorHandle, client: httpx.Client) -> list[dict[str, Any]]:
    """36 finished items (COMPLETED, ERROR, CANCELLED) created at three moments with jittered
    finish times, and 5 still processing; as GET returns them one by one."""
    ids: list[str] = []
    for group in range(3):
        for count, outcome_knobs in [
            (8, {"item_error_ratio": 0.3}),
            (2, {"item_error_ratio": 0.0, "item_cancel_ratio": 1.0}),
            (2, {"item_error_ratio": 1.0, "item_cancel_ratio": 0.0}),
        ]:
            simulator.set_knobs(processing_jitter=5.0, **outcome_knobs)
            ids += create(simulator, client, texts(count, f"g{group}-{len(ids)}"))
        simulator.advance_clock(1.0)
    simulator.set_knobs(processing_delay=1000.0, item_error_ratio=0.0)
    ids += create(simulator, client, texts(5, "slow"))
    simulator.advance_clock(10.0)
    items = [get_item(simulator, client, item_id) for item_id in ids]
    statuses = {item["status"] for item in items}
    assert statuses == {"COMPLETED", "ERROR", "CANCELLED", "PROCESSING"}, statuses
    return items


# ---- creating items -------------------------------------------------------------------------


def test_bulk_create_returns_new_ids_in_input_order(
    simulator: SimulatorHandle, client: httpx.Client
) -> None:
    items = texts(5)
    ids = create(simulator, client, items)
    assert len(set(ids)) == 5
    assert [get_item(simulator, client, item_id)["input_data"] for item_id in ids] == items
    assert simulator.stats()["items_created"] == 5


def test_single_create_returns_the_item(simulator: SimulatorHandle, client: httpx.Client) -> None:
    response = client.post(simulator.items_url, json={"input_data": {"text": "Kate likes dogs."}})
    assert response.status_code == 200, response.text
    item = response.json()
    assert item["input_data"] == {"text": "Kate likes dogs."}
    assert item["app_project_id"] == simulator.project_id
    assert get_item(simulator, client, item["id"])["input_data"] == item["input_data"]


def test_single_create_validates_input_data(
    simulator: SimulatorHandle, client: httpx.Client
) -> None:
    response = client.post(simulator.items_url, json={"input_data": {"text": 5}})
    body = api_error(response, 400, "VALIDATION_ERROR")
    assert body["payload"] == {
        "input_data.text": {"code": "STRING_EXPECTED", "message": "a string is expected"}
    }


def test_an_invalid_item_rejects_the_whole_request_naming_each_bad_field(
    simulator: SimulatorHandle, client: httpx.Client
) -> None:
    items: list[Any] = [*texts(2), {"id": "x"}, {"text": 7}, "not an object", {"text": None}]
    body = api_error(bulk(simulator, client, items), 400, "VALIDATION_ERROR")
    assert body["message"] == "Validation failed"
    assert {key: error["code"] for key, error in body["payload"].items()} == {
        "input_data.2.text": "VALUE_REQUIRED",
        "input_data.3.text": "STRING_EXPECTED",
        "input_data.4": "OBJECT_EXPECTED",
        "input_data.5.text": "VALUE_REQUIRED",
    }
    assert page(simulator, client)["content"] == []
    assert simulator.stats()["items_created"] == 0


def test_image_moderation_checks_urls(simulator_factory: Callable[..., SimulatorHandle]) -> None:
    sim = simulator_factory(solution="image-moderation")
    with sim.client() as http:
        project = http.get(f"{sim.base_url}/app-projects/{sim.project_id}").json()
        app = http.get(f"{sim.base_url}/apps/{project['app_id']}").json()
        assert app["input_spec"]["image_url"] == {"type": "url", "required": True, "hidden": False}
        items = [{"id": "1", "image_url": "https://example.com/dogs_1.jpg"}, {"image_url": "dogs"}]
        body = api_error(bulk(sim, http, items), 400, "VALIDATION_ERROR")
        assert list(body["payload"]) == ["input_data.1.image_url"]
        assert body["payload"]["input_data.1.image_url"]["code"] == "INVALID_URL_SYNTAX"
        assert len(create(sim, http, items[:1])) == 1


def test_ten_thousand_items_is_the_limit(simulator: SimulatorHandle, client: httpx.Client) -> None:
    api_error(bulk(simulator, client, texts(10_001)), 413, "PAYLOAD_TOO_LARGE")
    assert simulator.stats()["items_created"] == 0
    assert len(create(simulator, client, texts(10_000))) == 10_000


@pytest.mark.parametrize("content_type", [None, "text/plain", "application/x-www-form-urlencoded"])
def test_a_body_that_is_not_declared_json_is_415(
    simulator: SimulatorHandle, client: httpx.Client, content_type: str | None
) -> None:
    headers = {} if content_type is None else {"Content-Type": content_type}
    response = client.post(f"{simulator.items_url}/bulk", content=b'{"items": []}', headers=headers)
    assert response.status_code == 415, response.text


def test_json_with_a_charset_is_accepted(simulator: SimulatorHandle, client: httpx.Client) -> None:
    headers = {"Content-Type": "application/json; charset=utf-8"}
    body = b'{"items": [{"text": "hi"}]}'
    assert client.post(f"{simulator.items_url}/bulk", content=body, headers=headers).json()


@pytest.mark.parametrize("body", [b"{not json", b"[]", b'{"items": {"text": "x"}}', b"{}"])
def test_a_malformed_body_is_400(
    simulator: SimulatorHandle, client: httpx.Client, body: bytes
) -> None:
    headers = {"Content-Type": "application/json"}
    response = client.post(f"{simulator.items_url}/bulk", content=body, headers=headers)
    api_error(response, 400, "VALIDATION_ERROR")


# ---- auth and unknown objects ---------------------------------------------------------------


@pytest.mark.parametrize("scheme", ["ApiKey", "OAuth"])
def test_both_auth_schemes_work(simulator: SimulatorHandle, scheme: str) -> None:
    headers = {"Authorization": f"{scheme} {simulator.api_key}"}
    response = httpx.get(
        f"{simulator.base_url}/app-projects/{simulator.project_id}", headers=headers
    )
    assert response.status_code == 200
    assert response.json()["id"] == simulator.project_id


@pytest.mark.parametrize(
    "authorization", [None, "ApiKey wrong-key", "Bearer {key}", "ApiKey", "{key}"]
)
def test_anything_else_is_401(simulator: SimulatorHandle, authorization: str | None) -> None:
    headers = (
        {}
        if authorization is None
        else {"Authorization": authorization.format(key=simulator.api_key)}
    )
    for method, url in [("GET", simulator.items_url), ("POST", f"{simulator.items_url}/bulk")]:
        response = httpx.request(method, url, headers=headers, json={"items": texts(1)})
        api_error(response, 401, "AUTHENTICATION_ERROR")
    assert simulator.stats()["items_created"] == 0


def test_unknown_objects_are_404(simulator: SimulatorHandle, client: httpx.Client) -> None:
    (item_id,) = create(simulator, client, texts(1))
    other = f"{simulator.base_url}/app-projects/no-such-project"
    for response in [
        client.get(other),
        client.get(f"{other}/items"),
        client.post(f"{other}/items/bulk", json={"items": texts(1)}),
        client.get(f"{other}/items/{item_id}"),
        client.get(f"{simulator.items_url}/{item_id[:-1]}Z"),
        # Ids are case-sensitive (swapcase: an id may hold no lower-case letter to raise).
        client.get(f"{simulator.items_url}/{item_id.swapcase()}"),
        client.get(f"{simulator.base_url}/apps/no-such-app"),
        client.get(f"{simulator.base_url}/no-such-resource"),
    ]:
        api_error(response, 404, "DOES_NOT_EXIST")


def test_project_and_app(simulator: SimulatorHandle, client: httpx.Client) -> None:
    project = client.get(f"{simulator.base_url}/app-projects/{simulator.project_id}").json()
    assert project["status"] == "READY"
    assert project["read_only"] is False
    assert API_DATETIME.match(project["created"])
    assert {"item_price", "parameters", "errors", "name"} <= set(project)
    app = client.get(f"{simulator.base_url}/apps/{project['app_id']}").json()
    assert app["id"] == project["app_id"]
    assert {name: spec["type"] for name, spec in app["input_spec"].items()} == {
        "id": "string",
        "text": "string",
    }
    assert app["input_spec"]["text"]["required"] is True
    assert app["input_spec"]["id"]["required"] is False
    assert {name: spec["type"] for name, spec in app["output_spec"].items()} == {
        "result": "array_string",
        "confidence": "float",
    }


# ---- the processing clock -------------------------------------------------------------------


def test_items_go_new_processing_completed_with_the_clock(
    simulator: SimulatorHandle, client: httpx.Client
) -> None:
    simulator.set_knobs(queue_delay=10.0, processing_delay=20.0)
    (item_id,) = create(simulator, client, [{"id": "1", "text": "I hate honey."}])
    new = get_item(simulator, client, item_id)
    assert new["status"] == "NEW"
    assert set(new) == ITEM_KEYS
    assert API_DATETIME.match(new["created_at"])
    simulator.advance_clock(10.0)
    processing = get_item(simulator, client, item_id)
    assert processing["status"] == "PROCESSING"
    assert set(processing) == ITEM_KEYS | {"started_at"}
    assert processing["started_at"] > processing["created_at"]
    simulator.advance_clock(20.0)
    done = get_item(simulator, client, item_id)
    assert done["status"] == "COMPLETED"
    assert done["output_data"] == text_moderation_output(done["input_data"])
    assert done["output_data"]["result"] == ["BAD"]
    assert done["errors"] == []
    assert done["finished_at"] > done["started_at"] == processing["started_at"]


def test_zero_delay_finishes_at_once(simulator: SimulatorHandle, client: httpx.Client) -> None:
    ids = create(simulator, client, [{"text": "Kate likes dogs."}])
    item = get_item(simulator, client, ids[0])
    assert item["status"] == "COMPLETED"
    assert item["output_data"]["result"] == ["OK"]
    assert item["created_at"] <= item["started_at"] <= item["finished_at"]


def test_error_and_cancelled_outcomes(simulator: SimulatorHandle, client: httpx.Client) -> None:
    simulator.set_knobs(item_error_ratio=1.0)
    error = get_item(simulator, client, create(simulator, client, texts(1))[0])
    assert error["status"] == "ERROR"
    assert "output_data" not in error
    assert [set(entry) for entry in error["errors"]] == [{"code", "message"}]
    simulator.set_knobs(item_error_ratio=0.0, item_cancel_ratio=1.0)
    cancelled = get_item(simulator, client, create(simulator, client, texts(1))[0])
    assert cancelled["status"] == "CANCELLED"
    assert "started_at" not in cancelled
    assert "output_data" not in cancelled
    assert API_DATETIME.match(cancelled["finished_at"])


def test_a_seed_makes_processing_deterministic(
    simulator_factory: Callable[..., SimulatorHandle],
) -> None:
    runs = []
    for _ in range(2):
        sim = simulator_factory(seed=7, item_error_ratio=0.5, processing_jitter=3.0)
        with sim.client() as http:
            ids = create(sim, http, texts(40))
            sim.advance_clock(5.0)
            items = [get_item(sim, http, item_id) for item_id in ids]
        runs.append([(item["id"], item["status"], processing_time(item)) for item in items])
    statuses = {status for _, status, _ in runs[0]}
    assert statuses == {"COMPLETED", "ERROR"}
    assert runs[0] == runs[1]


# ---- listing --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "sort",
    [
        "id",
        "-id",
        "created",
        "-created",
        "finished",
        "-finished",
        "status",
        "-status",
        "status,-created",
        "created,-id",
        "finished,id",
        "-finished,id",
        "status,finished",
    ],
)
def test_sort_orders_with_after_id_paging(
    simulator: SimulatorHandle, client: httpx.Client, mixed_items: list[dict[str, Any]], sort: str
) -> None:
    listed = list_all(simulator, client, sort=sort, limit=4)
    assert [item["id"] for item in listed] == expected_order(mixed_items, sort)
    assert listed == sorted(
        listed, key=lambda item: expected_order(mixed_items, sort).index(item["id"])
    )
    assert {item["id"]: item for item in listed} == {item["id"]: item for item in mixed_items}


def test_unfinished_items_can_be_left_out_of_the_finished_order(
    simulator: SimulatorHandle, client: httpx.Client, mixed_items: list[dict[str, Any]]
) -> None:
    simulator.set_knobs(unfinished_in_finished_sort="exclude")
    finished = [item for item in mixed_items if "finished_at" in item]
    for sort in ("finished", "-finished"):
        listed = list_all(simulator, client, sort=sort, limit=4)
        assert [item["id"] for item in listed] == expected_order(finished, sort)


def test_paging_through_ties_in_finished_at_visits_every_item_once(
    simulator: SimulatorHandle, client: httpx.Client
) -> None:
    seeded = simulator.seed(250, per_timestamp=7)
    ids = create(simulator, client, texts(120))  # zero delay: all share one finished_at
    listed = list_all(simulator, client, sort="finished", limit=25)
    keys = [(item["finished_at"], item["id"]) for item in listed]
    assert keys == sorted(keys)
    assert len(keys) == len(set(keys)) == 370
    assert listed[0]["id"] == seeded["first_id"]
    assert [item["id"] for item in listed[250:]] == ids
    assert len({item["finished_at"] for item in listed}) == 36 + 1
    for limit in (1, 7, 119, 1000):
        again = list_all(simulator, client, sort="finished", limit=limit)
        assert [item["id"] for item in again] == [item["id"] for item in listed]


def test_limit_default_maximum_and_has_more(
    simulator: SimulatorHandle, client: httpx.Client
) -> None:
    create(simulator, client, texts(150))
    first = page(simulator, client)
    assert (len(first["content"]), first["has_more"]) == (100, True)
    rest = page(simulator, client, after_id=first["content"][-1]["id"])
    assert (len(rest["content"]), rest["has_more"]) == (50, False)
    assert page(simulator, client, limit=1000)["has_more"] is False
    exact = page(simulator, client, limit=75, after_id=first["content"][74]["id"])
    assert (len(exact["content"]), exact["has_more"]) == (75, False)
    for limit, code in [
        ("1001", "VALUE_GREATER_THAN_MAX"),
        ("0", "VALUE_LESS_THAN_MIN"),
        ("x", "INTEGER_EXPECTED"),
    ]:
        body = api_error(
            client.get(simulator.items_url, params={"limit": limit}), 400, "VALIDATION_ERROR"
        )
        assert body["payload"]["limit"]["code"] == code


def test_an_unknown_after_id_is_400(simulator: SimulatorHandle, client: httpx.Client) -> None:
    (item_id,) = create(simulator, client, texts(1))
    for after_id in ("no-such-item", item_id[:-1] + "f"):
        response = client.get(
            simulator.items_url, params={"after_id": after_id, "sort": "finished"}
        )
        body = api_error(response, 400, "VALIDATION_ERROR")
        assert body["payload"]["after_id"]["code"] == "DOES_NOT_EXIST"


@pytest.mark.parametrize(
    "params",
    [{"sort": "priority"}, {"sort": "id,"}, {"status": "DONE"}, {"created_gt": "yesterday"}],
)
def test_bad_listing_parameters_are_400(
    simulator: SimulatorHandle, client: httpx.Client, params: dict[str, str]
) -> None:
    body = api_error(client.get(simulator.items_url, params=params), 400, "VALIDATION_ERROR")
    assert list(body["payload"]) == list(params)


def test_filters(
    simulator: SimulatorHandle, client: httpx.Client, mixed_items: list[dict[str, Any]]
) -> None:
    by_id = sorted(mixed_items, key=lambda item: item["id"])
    middle = by_id[len(by_id) // 2]
    finished = sorted(item["finished_at"] for item in mixed_items if "finished_at" in item)
    bounds = {
        "id": middle["id"],
        "created": middle["created_at"],
        "finished": finished[len(finished) // 2],
    }
    compare = {"gt": str.__gt__, "gte": str.__ge__, "lt": str.__lt__, "lte": str.__le__}
    field = {"id": "id", "created": "created_at", "finished": "finished_at"}
    for name, bound in bounds.items():
        for suffix, holds in compare.items():
            listed = list_all(simulator, client, limit=5, **{f"{name}_{suffix}": bound})
            expected = [
                item["id"]
                for item in by_id
                if field[name] in item and holds(item[field[name]], bound)
            ]
            assert [item["id"] for item in listed] == expected, (name, suffix)
            assert 0 < len(expected) < len(by_id)
    for status in ("COMPLETED", "ERROR", "CANCELLED", "PROCESSING", "NEW"):
        listed = list_all(simulator, client, status=status, sort="-finished", limit=3)
        expected = expected_order(
            [item for item in mixed_items if item["status"] == status], "-finished"
        )
        assert [item["id"] for item in listed] == expected
    combined = list_all(
        simulator,
        client,
        status="COMPLETED",
        created_gte=middle["created_at"],
        finished_lt=bounds["finished"],
        sort="finished",
    )
    assert [item["id"] for item in combined] == expected_order(
        [
            item
            for item in mixed_items
            if item["status"] == "COMPLETED"
            and item["created_at"] >= middle["created_at"]
            and item["finished_at"] < bounds["finished"]
        ],
        "finished",
    )
    assert page(simulator, client, batch_id="any-batch")["content"] == []


def test_datetime_filters_take_dates_and_offsets(
    simulator: SimulatorHandle, client: httpx.Client
) -> None:
    create(simulator, client, texts(3))
    assert len(page(simulator, client, created_gte="2000-01-01")["content"]) == 3
    assert page(simulator, client, created_lt="2000-01-01T00:00:00Z")["content"] == []
    assert len(page(simulator, client, finished_gt="2000-01-01T03:00:00+03:00")["content"]) == 3


def test_a_created_window_sorted_by_created_pages_through_exactly_the_items_created_in_it(
    simulator: SimulatorHandle, client: httpx.Client
) -> None:
    before = create(simulator, client, texts(3, "before"))
    simulator.advance_clock(1.0)
    inside = create(simulator, client, texts(7, "inside"))
    window_start = get_item(simulator, client, inside[0])["created_at"]
    simulator.advance_clock(1.0)
    after = create(simulator, client, texts(2, "after"))
    window_end = get_item(simulator, client, after[0])["created_at"]
    listed = list_all(simulator, client, sort="created", limit=2, created_gte=window_start,
                      created_lt=window_end)  # fmt: skip
    assert [item["id"] for item in listed] == inside
    assert [item["input_data"]["id"] for item in listed] == [f"inside-{n}" for n in range(7)]
    assert before
    assert after


def test_the_listing_delay_hides_new_items_from_every_listing_until_it_passes(
    simulator: SimulatorHandle, client: httpx.Client
) -> None:
    shown = create(simulator, client, texts(2, "old"))
    simulator.advance_clock(31)
    simulator.set_knobs(listing_delay=30)
    late = create(simulator, client, texts(2, "new"))
    assert get_item(simulator, client, late[0])["id"] == late[0]  # the item exists
    for sort in ("created", "id", "finished", "-created"):
        ids = {item["id"] for item in list_all(simulator, client, sort=sort)}
        assert ids == set(shown), sort
    simulator.advance_clock(31)
    assert [item["id"] for item in list_all(simulator, client, sort="created")] == shown + late


# ---- late visibility ------------------------------------------------------------------------


def test_late_items_show_finished_in_listings_only_later(
    simulator: SimulatorHandle, client: httpx.Client
) -> None:
    simulator.set_knobs(late_visibility=30.0)
    (late_id,) = create(simulator, client, texts(1, "late"))
    truth = get_item(simulator, client, late_id)
    assert truth["status"] == "COMPLETED"
    assert page(simulator, client, status="COMPLETED")["content"] == []
    (listed,) = page(simulator, client, sort="finished")["content"]
    assert (listed["status"], "finished_at" in listed) == ("PROCESSING", False)
    simulator.set_knobs(late_visibility=0.0)
    simulator.advance_clock(1.0)
    (on_time_id,) = create(simulator, client, texts(1, "on-time"))
    visible = page(simulator, client, sort="finished", status="COMPLETED")["content"]
    assert [item["id"] for item in visible] == [on_time_id]
    simulator.advance_clock(30.0)
    # the late item now sorts before the cursor a poller took from the on-time one
    assert page(simulator, client, sort="finished", after_id=on_time_id)["content"] == []
    finished = page(simulator, client, sort="finished")["content"]
    assert [item["id"] for item in finished] == [late_id, on_time_id]
    assert finished[0] == truth  # finished_at stays the real finish time


def test_late_visibility_ratio_delays_only_some_items(
    simulator: SimulatorHandle, client: httpx.Client
) -> None:
    simulator.set_knobs(late_visibility=30.0, late_visibility_ratio=0.5)
    create(simulator, client, texts(60))
    visible_now = len(page(simulator, client, status="COMPLETED")["content"])
    assert 5 < visible_now < 55
    simulator.advance_clock(30.0)
    assert len(page(simulator, client, status="COMPLETED")["content"]) == 60


# ---- faults and latency ---------------------------------------------------------------------


def test_429_carries_retry_after(simulator: SimulatorHandle, client: httpx.Client) -> None:
    simulator.set_knobs(http_429_ratio=1.0, retry_after=7)
    response = client.get(simulator.items_url)
    api_error(response, 429, "TOO_MANY_REQUESTS")
    assert response.headers["Retry-After"] == "7"
    assert bulk(simulator, client, texts(3)).status_code == 429
    simulator.set_knobs(http_429_ratio=0.0)
    assert simulator.stats()["items_created"] == 0
    assert simulator.stats()["requests_by_status"] == {"429": 2}


def test_5xx_faults(simulator: SimulatorHandle, client: httpx.Client) -> None:
    for knob, status, code in [
        ("http_500_ratio", 500, "INTERNAL_ERROR"),
        ("http_503_ratio", 503, "REMOTE_SERVICE_UNAVAILABLE"),
    ]:
        simulator.set_knobs(**{knob: 1.0})
        api_error(client.get(simulator.items_url), status, code)
        simulator.set_knobs(**{knob: 0.0})
    simulator.set_knobs(http_502_ratio=1.0)
    response = client.post(f"{simulator.items_url}/bulk", json={"items": texts(2)})
    assert response.status_code == 502
    assert response.headers["Content-Type"].startswith("text/html")
    assert response.text.startswith("<html>")
    simulator.set_knobs(http_502_ratio=0.0)
    assert simulator.stats()["items_created"] == 0


def test_a_fault_ratio_hits_that_share_of_requests(
    simulator: SimulatorHandle, client: httpx.Client
) -> None:
    simulator.set_knobs(http_500_ratio=0.25, http_503_ratio=0.25)
    statuses = [client.get(simulator.items_url).status_code for _ in range(400)]
    assert 130 < statuses.count(200) < 270
    assert 50 < statuses.count(500) < 150
    assert 50 < statuses.count(503) < 150


def test_fault_scope_limits_faults_to_reads_or_writes(
    simulator: SimulatorHandle, client: httpx.Client
) -> None:
    simulator.set_knobs(http_500_ratio=1.0, fault_scope="read")
    assert client.get(simulator.items_url).status_code == 500
    assert len(create(simulator, client, texts(2))) == 2
    simulator.set_knobs(fault_scope="write")
    assert bulk(simulator, client, texts(2)).status_code == 500
    assert client.get(simulator.items_url).status_code == 200


def test_connection_reset_before_the_request_is_applied(
    simulator: SimulatorHandle, client: httpx.Client
) -> None:
    simulator.set_knobs(reset_ratio=1.0)
    with pytest.raises(httpx.TransportError):
        bulk(simulator, client, texts(2))
    assert simulator.stats()["items_created"] == 0
    assert simulator.stats()["requests_by_status"] == {"reset": 1}


def test_a_lost_response_still_applies_the_request(
    simulator: SimulatorHandle, client: httpx.Client
) -> None:
    simulator.set_knobs(lost_response_ratio=1.0)
    with pytest.raises(httpx.TransportError):
        bulk(simulator, client, texts(2))
    simulator.set_knobs(lost_response_ratio=0.0)
    assert simulator.stats()["items_created"] == 2
    assert len(page(simulator, client)["content"]) == 2


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
def test_a_redirect_points_elsewhere_and_applies_nothing(
    simulator: SimulatorHandle, client: httpx.Client, status: int
) -> None:
    simulator.set_knobs(redirect_ratio=1.0, redirect_status=status,
                        redirect_location="http://other.invalid:81/")  # fmt: skip
    response = bulk(simulator, client, texts(2))
    assert response.status_code == status
    assert response.headers["Location"] == (
        f"http://other.invalid:81/api/app/v0/app-projects/{simulator.project_id}/items/bulk"
    )
    listing = client.get(simulator.items_url, params={"limit": 5})
    assert listing.status_code == status
    assert listing.headers["Location"].endswith("/items?limit=5")
    simulator.set_knobs(redirect_ratio=0.0)
    assert simulator.stats()["items_created"] == 0


@pytest.mark.parametrize("status", [200, 404, 502])
def test_an_oversized_page_has_the_size_asked_for_and_applies_nothing(
    simulator: SimulatorHandle, client: httpx.Client, status: int
) -> None:
    size = 3 * 1024 * 1024 + 7
    simulator.set_knobs(oversized_page_ratio=1.0, oversized_page_status=status,
                        oversized_page_bytes=size, fault_scope="write")  # fmt: skip
    response = bulk(simulator, client, texts(2))
    assert response.status_code == status
    assert response.headers["Content-Type"].startswith("text/html")
    assert len(response.content) == size
    assert response.content.startswith(b"<html>")
    assert client.get(simulator.items_url).status_code == 200  # the scope spares reads
    simulator.set_knobs(oversized_page_ratio=0.0)
    assert simulator.stats()["items_created"] == 0


HELD_BACK_SECONDS = 60.0


def test_latency_holds_responses_back(simulator: SimulatorHandle, client: httpx.Client) -> None:
    client.get(simulator.items_url)  # connect first
    simulator.set_knobs(latency=0.3)
    started = time.monotonic()
    assert client.get(simulator.items_url).status_code == 200
    assert time.monotonic() - started >= 0.3
    # The admin API is never delayed: with the API held back far longer than the admin call may
    # take, the call still answers.
    simulator.set_knobs(latency=HELD_BACK_SECONDS)
    stats = client.get(f"{simulator.root_url}/_simulator/stats", timeout=HELD_BACK_SECONDS / 4)
    assert stats.status_code == 200


def test_admin_rejects_bad_knobs(simulator: SimulatorHandle) -> None:
    for knobs in (
        {"no_such_knob": 1},
        {"http_429_ratio": 2},
        {"latency": -1},
        {"fault_scope": "some"},
        {"retry_after": True},
        {"redirect_status": 200},
        {"redirect_location": "elsewhere"},
        {"oversized_page_status": 100},
        {"oversized_page_bytes": -1},
        {"redirect_ratio": 0.6, "oversized_page_ratio": 0.6},
    ):
        response = httpx.patch(f"{simulator.root_url}/_simulator/knobs", json=knobs)
        assert response.status_code == 400, knobs
    assert simulator.admin("GET", "/knobs")["http_429_ratio"] == 0.0


# ---- statistics and seeding -----------------------------------------------------------------


def test_duplicate_uploads_are_counted(simulator: SimulatorHandle, client: httpx.Client) -> None:
    create(simulator, client, texts(3))
    create(simulator, client, texts(2))
    create(simulator, client, [{"text": "no id"}, {"text": "no id"}])
    stats = simulator.stats()
    assert (stats["items_created"], stats["duplicate_creates"]) == (7, 3)
    assert simulator.creates("item-0") == 2
    assert simulator.creates("item-2") == 1
    duplicates = simulator.duplicates()
    assert duplicates["item-0"] == duplicates["item-1"] == 2
    assert len(duplicates) == 3


def test_seeded_items_are_finished_at_once(
    simulator: SimulatorHandle, client: httpx.Client
) -> None:
    simulator.seed(1500, status="ERROR", per_timestamp=10)
    listed = list_all(simulator, client, sort="finished", status="ERROR", limit=1000)
    assert len(listed) == 1500
    assert len({item["finished_at"] for item in listed}) == 150
    assert simulator.stats()["items_seeded"] == 1500


def test_reset_forgets_items_and_their_ids(
    simulator: SimulatorHandle, client: httpx.Client
) -> None:
    (item_id,) = create(simulator, client, texts(1))
    simulator.reset()
    api_error(client.get(f"{simulator.items_url}/{item_id}"), 404, "DOES_NOT_EXIST")
    assert simulator.stats()["items_created"] == 0


def test_reset_takes_the_clock_back_to_the_wall_clock(simulator: SimulatorHandle) -> None:
    """The shared simulator's clock advanced by one test must not put the next test's items in
    the future (they would stay inside a poller's late window)."""
    simulator.advance_clock(3600)
    simulator.reset()
    now_micros = simulator.admin("GET", "/clock")["now_micros"]
    assert abs(now_micros / 1e6 - time.time()) < 60


# ---- HTTP/1.1 -------------------------------------------------------------------------------


def connect(sim: SimulatorHandle) -> socket.socket:
    url = httpx.URL(sim.base_url)
    assert url.port is not None
    return socket.create_connection((url.host, url.port), timeout=10)


def raw_exchange(sim: SimulatorHandle, payload: bytes, responses: int) -> list[bytes]:
    """Send raw bytes on one connection and read `responses` responses (head + body)."""
    with connect(sim) as sock:
        sock.sendall(payload)
        return read_responses(sock, responses)


def read_responses(sock: socket.socket, count: int) -> list[bytes]:
    buffer, found = b"", list[bytes]()
    while len(found) < count:
        end = buffer.find(b"\r\n\r\n")
        if end >= 0:
            length = int(re.search(rb"(?i)content-length: *(\d+)", buffer[:end]).group(1))  # type: ignore[union-attr]
            if len(buffer) >= end + 4 + length:
                found.append(buffer[: end + 4 + length])
                buffer = buffer[end + 4 + length :]
                continue
        chunk = sock.recv(65536)
        assert chunk, "connection closed early"
        buffer += chunk
    return found


def get_request(sim: SimulatorHandle, extra: str = "") -> bytes:
    path = httpx.URL(sim.items_url).path
    auth = f"Authorization: ApiKey {sim.api_key}"
    return f"GET {path} HTTP/1.1\r\nHost: x\r\n{auth}\r\n{extra}\r\n".encode()


def test_keep_alive_and_pipelining(simulator: SimulatorHandle) -> None:
    responses = raw_exchange(simulator, get_request(simulator) * 3, 3)
    assert all(response.startswith(b"HTTP/1.1 200 OK\r\n") for response in responses)
    assert all(b"Connection: keep-alive" in response for response in responses)


def test_connection_close_is_honoured(simulator: SimulatorHandle) -> None:
    with connect(simulator) as sock:
        sock.sendall(get_request(simulator, "Connection: close\r\n"))
        (response,) = read_responses(sock, 1)
        assert b"Connection: close" in response
        assert sock.recv(100) == b""


def test_expect_100_continue(simulator: SimulatorHandle) -> None:
    url = httpx.URL(simulator.items_url)
    body = b'{"items": [{"text": "hello"}]}'
    head = (
        f"POST {url.path}/bulk HTTP/1.1\r\nHost: x\r\n"
        f"Authorization: ApiKey {simulator.api_key}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\nExpect: 100-continue\r\n\r\n"
    )
    with connect(simulator) as sock:
        sock.sendall(head.encode())
        assert sock.recv(100) == b"HTTP/1.1 100 Continue\r\n\r\n"
        sock.sendall(body)
        (response,) = read_responses(sock, 1)
    assert response.startswith(b"HTTP/1.1 200 OK")


def test_httpx_reuses_one_connection(simulator: SimulatorHandle) -> None:
    opened = []
    transport = httpx.HTTPTransport()
    with httpx.Client(
        transport=transport,
        headers={"Authorization": f"ApiKey {simulator.api_key}"},
        event_hooks={
            "response": [lambda response: opened.append(response.extensions["network_stream"])]
        },
    ) as http:
        for _ in range(5):
            assert http.get(simulator.items_url).http_version == "HTTP/1.1"
    assert len({id(stream) for stream in opened}) == 1


def test_sigterm_exits_zero(simulator_factory: Callable[..., SimulatorHandle]) -> None:
    sim = simulator_factory()
    assert httpx.get(f"{sim.root_url}/_simulator/stats").status_code == 200
    assert sim.stop() == 0
