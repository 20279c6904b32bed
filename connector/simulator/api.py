"""The Apps API endpoints the simulator serves (paths relative to `/api/app/v0`).

Success statuses follow the OpenAPI spec: 200 for the bulk create (a bare array of ids in input
order) and for the single create (the item). A bulk request with any invalid item creates
nothing and answers 400 VALIDATION_ERROR with one payload key `input_data.<index>.<field>` per
bad field (`input_data.<index>` when the item is not a JSON object). A body that is not JSON
answers 400 VALIDATION_ERROR without payload. Batches do not exist here: a `batch_id` in a create
request answers 404, as for any unknown batch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl

import orjson

from connector.simulator.clock import MICROS
from connector.simulator.listing import ListingError, list_page, listed_by, parse_query
from connector.simulator.responses import Response, api_error, field_errors, json_response
from connector.simulator.state import SimulatorState

if TYPE_CHECKING:
    from connector.simulator.http import Request

MAX_BULK_ITEMS = 10_000
AUTH_SCHEMES = ("apikey", "oauth")


def path_shape(parts: list[str]) -> str | None:
    """Which resource a path (split on "/", after the API prefix) names, if any."""
    if len(parts) == 2 and parts[0] == "apps":
        return "app"
    if len(parts) < 2 or parts[0] != "app-projects":
        return None
    rest = parts[2:]
    if not rest:
        return "project"
    if rest == ["items"]:
        return "items"
    if rest == ["items", "bulk"]:
        return "bulk"
    return "item" if len(rest) == 2 and rest[0] == "items" else None


ROUTES = {
    ("app", "GET"): "get_app",
    ("project", "GET"): "get_project",
    ("items", "GET"): "list_items",
    ("items", "POST"): "create_item",
    ("bulk", "POST"): "bulk_create",
    ("item", "GET"): "get_item",
}
"""(path shape, method) -> route name, as the request statistics count them."""


def route_of(method: str, parts: list[str]) -> str:
    return ROUTES.get((path_shape(parts) or "", method), "other")


def handle_api(sim: SimulatorState, parts: list[str], query: str, request: Request) -> Response:
    """One API request; `parts` is its path after the prefix, split on "/"."""
    method, headers, body = request.method, request.headers, request.body
    scheme, _, key = headers.get("authorization", "").partition(" ")
    if scheme.lower() not in AUTH_SCHEMES or key.strip() != sim.api_key:
        return api_error(401, "AUTHENTICATION_ERROR", "Authentication failed: check the API key")
    shape = path_shape(parts)
    if shape is None:
        return _not_found("Not found")
    route = ROUTES.get((shape, method))
    if route is None:
        allowed = ", ".join(m for (s, m) in ROUTES if s == shape)
        return api_error(
            405, "METHOD_NOT_ALLOWED", "Method not allowed", headers=(("Allow", allowed),)
        )
    if shape == "app":
        if parts[1] != sim.solution.app_id:
            return _not_found(f"App {parts[1]} does not exist")
        return json_response(sim.solution.app_json())
    if parts[1] not in sim.project_ids:
        return _not_found(f"App project {parts[1]} does not exist")
    sim = sim.serving(parts[1])
    if method == "POST":
        content_type = headers.get("content-type", "").split(";")[0].strip().lower()
        if content_type != "application/json":
            return api_error(415, "UNSUPPORTED_MEDIA_TYPE", "Content-Type must be application/json")
    if route == "get_project":
        return json_response(sim.project_json())
    if route == "list_items":
        return _list_items(sim, query)
    if route == "create_item":
        return _create_item(sim, body)
    if route == "bulk_create":
        return _bulk_create(sim, body)
    return _get_item(sim, parts[3])


def _get_item(sim: SimulatorState, item_id: str) -> Response:
    seq = sim.store.seq_of(item_id)
    if seq is None:
        return _not_found(f"Item {item_id} does not exist")
    now = sim.clock.now()
    sim.store.advance(now)
    return json_response(sim.store.to_json(seq, now, listing=False))


def _list_items(sim: SimulatorState, query_string: str) -> Response:
    params = dict(parse_qsl(query_string))
    try:
        query = parse_query(params, sim.store)
    except ListingError as error:
        return api_error(
            400,
            "VALIDATION_ERROR",
            "Validation failed",
            field_errors({error.parameter: (error.code, error.message)}),
        )
    now = sim.clock.now()
    if sim.knobs.listing_delay:
        query = listed_by(query, sim.store, now - int(sim.knobs.listing_delay * MICROS))
    exclude = sim.knobs.unfinished_in_finished_sort == "exclude"
    seqs, has_more = list_page(sim.store, query, now, exclude)
    to_json = sim.store.to_json
    content = [to_json(seq, now, listing=True) for seq in seqs]
    return json_response({"content": content, "has_more": has_more})


def _create_item(sim: SimulatorState, body: bytes) -> Response:
    form = _json_object(body)
    if isinstance(form, Response):
        return form
    input_data = form.get("input_data")
    problems: dict[str, tuple[str, str]] = {}
    if input_data is None:
        problems["input_data"] = ("VALUE_REQUIRED", "a value is required")
    elif not isinstance(input_data, dict):
        problems["input_data"] = ("OBJECT_EXPECTED", "an object is expected")
    else:
        for problem in sim.validator.problems(input_data):
            problems[f"input_data.{problem.field}"] = (problem.code, problem.message)
    problems.update(_form_problems(form))
    if problems:
        return _validation_failed(problems)
    if form.get("batch_id") is not None:
        return _not_found(f"Batch {form['batch_id']} does not exist")
    assert isinstance(input_data, dict)
    (seq,) = sim.store.create([input_data], sim.knobs)
    sim.stats.record_creates([input_data])
    return json_response(sim.store.to_json(seq, sim.clock.now(), listing=False))


def _bulk_create(sim: SimulatorState, body: bytes) -> Response:
    form = _json_object(body)
    if isinstance(form, Response):
        return form
    items = form.get("items")
    if not isinstance(items, list):
        code = "VALUE_REQUIRED" if items is None else "ARRAY_EXPECTED"
        return _validation_failed({"items": (code, "an array of items is required")})
    if len(items) > MAX_BULK_ITEMS:
        return api_error(
            413,
            "PAYLOAD_TOO_LARGE",
            f"At most {MAX_BULK_ITEMS} items per request, got {len(items)}",
        )
    problems = _form_problems(form)
    problems_of = sim.validator.problems
    for index, input_data in enumerate(items):
        if not isinstance(input_data, dict):
            problems[f"input_data.{index}"] = ("OBJECT_EXPECTED", "an object is expected")
            continue
        for problem in problems_of(input_data):
            problems[f"input_data.{index}.{problem.field}"] = (problem.code, problem.message)
    if problems:
        return _validation_failed(problems)
    if form.get("batch_id") is not None:
        return _not_found(f"Batch {form['batch_id']} does not exist")
    seqs = sim.store.create(items, sim.knobs)
    sim.stats.record_creates(items)
    item_id = sim.store.item_id
    return json_response([item_id(seq) for seq in seqs])


def _form_problems(form: dict[str, Any]) -> dict[str, tuple[str, str]]:
    flag = form.get("force_new_original")
    if flag is not None and not isinstance(flag, bool):
        return {"force_new_original": ("BOOLEAN_EXPECTED", "a boolean is expected")}
    return {}


def _json_object(body: bytes) -> dict[str, Any] | Response:
    try:
        form = orjson.loads(body)
    except orjson.JSONDecodeError:
        return api_error(400, "VALIDATION_ERROR", "The request body is not valid JSON")
    if not isinstance(form, dict):
        return api_error(400, "VALIDATION_ERROR", "The request body must be a JSON object")
    return form


def _validation_failed(problems: dict[str, tuple[str, str]]) -> Response:
    return api_error(400, "VALIDATION_ERROR", "Validation failed", field_errors(problems))


def _not_found(message: str) -> Response:
    return api_error(404, "DOES_NOT_EXIST", message)
