"""The admin API under `/_simulator` (a prefix the real API does not use); no auth, JSON in and out.

| method | path | what |
|---|---|---|
GET /_simulator                   this text, the project and app ids, the knobs' help
GET /_simulator/knobs             current knobs
PATCH|POST /_simulator/knobs      change knobs: {"http_429_ratio": 0.1, ...}; 400 names bad ones
GET /_simulator/stats             items created/seeded/finished, duplicates, requests by status
GET /_simulator/creates?key=K     how many items were created with key K (input `id`, see stats)
GET /_simulator/duplicates?limit=N  keys created more than once, with their counts
POST /_simulator/seed             {"count": N, "status"?: "COMPLETED"|"ERROR"|"CANCELLED",
                                  "per_timestamp"?: 1}: N items, finished and visible at once,
                                  per_timestamp of them sharing each finished_at
POST /_simulator/reset            forget items and stats; {"restore_knobs": true} resets knobs too,
                                  {"project_id": "..."} renames the app project
GET /_simulator/clock             the simulator's now
POST /_simulator/clock            {"advance": seconds}: move the clock forward, so items start,
                                  finish and become visible without waiting
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl

import orjson

from connector.simulator.clock import MICROS, DatetimeFormatter
from connector.simulator.knobs import knob_help
from connector.simulator.responses import Response, json_response
from connector.simulator.state import SimulatorState
from connector.simulator.store import OUTCOMES

if TYPE_CHECKING:
    from connector.simulator.http import Request

ADMIN_PREFIX = "/_simulator"
MAX_SEED = 10_000_000


def handle_admin(
    sim: SimulatorState, method: str, path: str, query: str, request: Request
) -> Response:
    try:
        return _dispatch(sim, method, path.rstrip("/"), query, request.body)
    except _AdminError as error:
        return json_response({"code": error.code, "message": str(error)}, error.status)


class _AdminError(Exception):
    def __init__(self, message: str, code: str = "BAD_REQUEST", status: int = 400) -> None:
        super().__init__(message)
        self.code = code
        self.status = status


def _dispatch(sim: SimulatorState, method: str, path: str, query: str, body: bytes) -> Response:
    route = (method, path)
    if route == ("GET", ""):
        return json_response(_index(sim))
    if route == ("GET", "/knobs"):
        return json_response(sim.knobs.as_json())
    if method in ("PATCH", "POST") and path == "/knobs":
        try:
            sim.knobs = sim.knobs.updated(_body(body))
        except ValueError as error:
            raise _AdminError(str(error)) from None
        return json_response(sim.knobs.as_json())
    if route == ("GET", "/stats"):
        sim.store.advance(sim.clock.now())
        # Finished by the clock, visible in listings or not yet (late visibility).
        finished = {"items_finished": len(sim.store.finished_order)}
        return json_response({**sim.stats.as_json(), **finished})
    if route == ("GET", "/creates"):
        key = dict(parse_qsl(query)).get("key")
        if key is None:
            raise _AdminError("pass ?key=<item key>")
        return json_response({"key": key, "creates": sim.stats.creates_by_key.get(key, 0)})
    if route == ("GET", "/duplicates"):
        limit = _int(dict(parse_qsl(query)).get("limit", "1000"), "limit")
        return json_response({"duplicates": sim.stats.duplicates(limit)})
    if route == ("POST", "/seed"):
        return json_response(_seed(sim, _body(body)))
    if route == ("POST", "/reset"):
        form = _body(body)
        project_id = form.get("project_id")
        if project_id is not None and (not isinstance(project_id, str) or not project_id):
            raise _AdminError("project_id must be a non-empty string")
        sim.reset(restore_knobs=form.get("restore_knobs") is True, project_id=project_id)
        return json_response({"reset": True})
    if route == ("GET", "/clock"):
        return json_response(_clock(sim))
    if route == ("POST", "/clock"):
        advance = _body(body).get("advance", 0)
        if isinstance(advance, bool) or not isinstance(advance, int | float) or advance < 0:
            raise _AdminError("advance must be a number of seconds >= 0")
        sim.clock.advance(int(advance * MICROS))
        return json_response(_clock(sim))
    raise _AdminError(f"no admin endpoint {method} {ADMIN_PREFIX}{path}", "NOT_FOUND", 404)


def _seed(sim: SimulatorState, form: dict[str, Any]) -> dict[str, Any]:
    count = form.get("count")
    if isinstance(count, bool) or not isinstance(count, int) or not 0 <= count <= MAX_SEED:
        raise _AdminError(f"count must be an integer within [0, {MAX_SEED}]")
    status = form.get("status", "COMPLETED")
    if status not in OUTCOMES:
        raise _AdminError(f"status must be one of {', '.join(OUTCOMES)}")
    per_timestamp = form.get("per_timestamp", 1)
    if isinstance(per_timestamp, bool) or not isinstance(per_timestamp, int) or per_timestamp < 1:
        raise _AdminError("per_timestamp must be an integer >= 1")
    seqs = sim.store.seed_finished(count, OUTCOMES[status], per_timestamp, sim.knobs)
    sim.stats.items_seeded += count
    result: dict[str, Any] = {"count": count}
    if count:
        result["first_id"] = sim.store.item_id(seqs[0])
        result["last_id"] = sim.store.item_id(seqs[-1])
    return result


def _clock(sim: SimulatorState) -> dict[str, Any]:
    now = sim.clock.now()
    return {"now": DatetimeFormatter().format(now), "now_micros": now}


def _index(sim: SimulatorState) -> dict[str, Any]:
    return {
        "project_id": sim.project_id,
        "app_id": sim.solution.app_id,
        "items": len(sim.store),
        "endpoints": __doc__,
        "knobs": knob_help(),
    }


def _body(body: bytes) -> dict[str, Any]:
    if not body.strip():
        return {}
    try:
        value = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise _AdminError("the body is not valid JSON") from None
    if not isinstance(value, dict):
        raise _AdminError("the body must be a JSON object")
    return value


def _int(text: str, name: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise _AdminError(f"{name} must be an integer") from None
