"""The simulator as one object: configuration, state, and the dispatch of every request to the
Apps API (under `/api/app/v0`, with fault injection and latency) or the admin API (under
`/_simulator`, never faulted or delayed)."""

from __future__ import annotations

import copy
import random
from dataclasses import dataclass

from connector.simulator.admin import ADMIN_PREFIX, handle_admin
from connector.simulator.api import handle_api, route_of
from connector.simulator.clock import DatetimeFormatter, SimClock
from connector.simulator.faults import Fault, FaultInjector, read_latency
from connector.simulator.http import Request
from connector.simulator.knobs import Knobs
from connector.simulator.rate_limit import RateLimiter
from connector.simulator.responses import (
    BAD_GATEWAY_HTML,
    Response,
    api_error,
    oversized_page,
    redirect_page,
)
from connector.simulator.solutions import Solution
from connector.simulator.stats import Stats
from connector.simulator.store import ItemStore
from connector.validation import ItemValidator

API_PREFIX = "/api/app/v0"


@dataclass(frozen=True, slots=True)
class SimulatorConfig:
    project_id: str
    api_key: str
    solution: Solution
    knobs: Knobs
    seed: int | None = None
    """Seeds item ids, outcomes, jitter and faults; None draws a fresh seed."""
    more_project_ids: tuple[str, ...] = ()
    """Other app projects served beside `project_id` (several pipelines), each with its items;
    they share the solution, the key, the knobs and the statistics."""


class Simulator:
    def __init__(self, config: SimulatorConfig) -> None:
        self.config = config
        self.project_id = config.project_id
        self.project_ids = tuple(dict.fromkeys((config.project_id, *config.more_project_ids)))
        self.api_key = config.api_key
        self.solution = config.solution
        self.validator = ItemValidator(config.solution.input_spec)
        self.knobs = config.knobs
        self.clock = SimClock()
        self._created = self.clock.now()
        self._seeds = random.Random(config.seed)  # noqa: S311  (simulation, not secrets)
        self.faults = FaultInjector(random.Random(self._seeds.getrandbits(64)))  # noqa: S311
        self._stores = self._new_stores()
        self.store = self._stores[self.project_id]
        self.stats = Stats()
        self.rate_limiter = RateLimiter()

    def _new_stores(self) -> dict[str, ItemStore]:
        stores = {}
        for project in self.project_ids:
            rng = random.Random(self._seeds.getrandbits(64))  # noqa: S311
            stores[project] = ItemStore(project, self.solution, self.clock, rng)
        return stores

    def serving(self, project_id: str) -> Simulator:
        """The simulator as one request to `project_id` (one of `project_ids`) sees it: that
        project's items; the admin API sees the first project's."""
        view = copy.copy(self)
        view.project_id = project_id
        view.store = self._stores[project_id]
        return view

    def reset(self, *, restore_knobs: bool, project_id: str | None = None) -> None:
        """Forget every item and statistic; item ids get a new prefix, so old ids stay unknown.
        With `project_id` the first app project is renamed too (the old id is then unknown).
        The clock starts again from the wall clock: with no item left, nothing can be seen to
        step back, and a clock a test advanced must not put the next test's items in the future
        (seen: seeded items 30 s ahead of the poller's clock stayed inside its late window)."""
        if project_id is not None:
            self.project_id = project_id
            self.project_ids = tuple(dict.fromkeys((project_id, *self.project_ids[1:])))
        self.clock = SimClock()
        self._stores = self._new_stores()
        self.store = self._stores[self.project_id]
        self.stats = Stats()
        self.rate_limiter = RateLimiter()
        if restore_knobs:
            self.knobs = self.config.knobs

    def project_json(self) -> dict[str, object]:
        """`GET /app-projects/{id}` (AppProject)."""
        return {
            "id": self.project_id,
            "app_id": self.solution.app_id,
            "name": f"{self.solution.name} (simulated)",
            "status": "READY",
            "created": DatetimeFormatter().format(self._created),
            "item_price": 0.0,
            "parameters": {},
            "errors": [],
            "read_only": False,
            "app": {"id": self.solution.app_id, "name": self.solution.name},
        }

    def handle(self, request: Request) -> Response:
        path, _, query = request.target.partition("?")
        if path == ADMIN_PREFIX or path.startswith(ADMIN_PREFIX + "/"):
            return handle_admin(self, request.method, path[len(ADMIN_PREFIX) :], query, request)
        if path.startswith(API_PREFIX + "/"):
            parts = path[len(API_PREFIX) + 1 :].rstrip("/").split("/")
        else:
            parts = []
        route = route_of(request.method, parts)
        knobs = self.knobs
        limited = self._rate_limited(knobs)
        if limited is not None:
            self.stats.record_request(route, "429")
            return limited
        fault = self.faults.draw(knobs, request.method)
        if fault is None or fault is Fault.LOST_RESPONSE:
            if parts:
                response = handle_api(self, parts, query, request)
            else:
                response = api_error(404, "DOES_NOT_EXIST", f"No API under {path}")
            response.reset = fault is Fault.LOST_RESPONSE
        else:
            response = _fault_response(fault, knobs, request.target)
        response.delay = self.faults.latency(knobs)
        response.delay += read_latency(knobs, request.method)
        self.stats.record_request(route, "reset" if response.reset else str(response.status))
        return response

    def _rate_limited(self, knobs: Knobs) -> Response | None:
        """The rate limit's 429 (answered at once), or None when the request passes it."""
        if self.rate_limiter.in_retry_after():
            self.stats.requests_during_retry_after += 1
        retry_after = self.rate_limiter.admit(knobs)
        if retry_after is None:
            return None
        self.stats.rate_limited += 1
        return _too_many_requests(retry_after)


def _fault_response(fault: Fault, knobs: Knobs, target: str) -> Response:
    if fault is Fault.TOO_MANY_REQUESTS:
        return _too_many_requests(knobs.retry_after)
    if fault is Fault.INTERNAL_ERROR:
        return api_error(500, "INTERNAL_ERROR", "Internal server error")
    if fault is Fault.UNAVAILABLE:
        return api_error(503, "REMOTE_SERVICE_UNAVAILABLE", "Service is temporarily unavailable")
    if fault is Fault.BAD_GATEWAY:
        return Response(502, BAD_GATEWAY_HTML, content_type="text/html")
    if fault is Fault.REDIRECT:
        location = knobs.redirect_location.rstrip("/") + target
        # A 304 has no body: a client reads none, whatever Content-Length says.
        page = b"" if knobs.redirect_status == 304 else redirect_page(location)
        return Response(knobs.redirect_status, page, content_type="text/html",
                        headers=(("Location", location),))  # fmt: skip
    if fault is Fault.OVERSIZED_PAGE:
        body = oversized_page(knobs.oversized_page_status, knobs.oversized_page_bytes)
        return Response(knobs.oversized_page_status, body, content_type="text/html")
    return Response(0, reset=True)


def _too_many_requests(retry_after: int) -> Response:
    return api_error(
        429, "TOO_MANY_REQUESTS", "Too many requests", headers=(("Retry-After", str(retry_after)),)
    )
