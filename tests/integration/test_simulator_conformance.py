"""The simulator against the Apps API notes, over TCP, with a plain HTTP client.

Expected orders and filter results are computed here from the items' own fields (as the API
returns them one by one), so every check compares two independent views of the same data.
"""

from __future__ import annotations

import re
import socket
import time
from collections.abc import Callable, Iterator
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


def api_error(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body: dict[str, Any] = response.json()
    assert body["code"] == code
    assert body["request_id"]
    assert body["message"]
    return body


@pytest.fixture
def mixed_items(simulator: SimulatorHandle, client: httpx.Client) -> list[dict[str, Any]]:
    """33 finished items (COMPLETED, ERROR, CANCELLED) created at three moments with jittered
    finish times, and 5 still processing; as GET returns them one by one."""
    simulator.set_knobs(processing_jitter=5.0, item_error_ratio=0.3, item_cancel_ratio=0.1)
    ids = []
    for group in range(3):
        ids += create(simulator, client, texts(11, f"g{group}"))
        simulator.advance_clock(1.0)
    simulator.set_knobs(processing_delay=1000.0)
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
    response = httpx.get(f"{simulator.base_url}/app-projects/{simulator.project_id}", headers=headers)
    assert response.status_code == 200
    assert response.json()["id"] == simulator.project_id


@pytest.mark.parametrize(
    "authorization", [None, "ApiKey wrong-key", "Bearer {key}", "ApiKey", "{key}"]
)
def test_anything_else_is_401(simulator: SimulatorHandle, authorization: str | None) -> None:
    headers = {} if authorization is None else {"Authorization": authorization.format(key=simulator.api_key)}
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
        client.get(f"{simulator.items_url}/{item_id.upper()}"),
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
        runs.append([(item["id"], item["status"], item["finished_at"][-6:]) for item in items])
    statuses = {status for _, status, _ in runs[0]}
    assert statuses == {"COMPLETED", "ERROR"}
    assert runs[0] == runs[1]
