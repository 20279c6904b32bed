"""What the API and admin handlers use of the running simulator (`app.Simulator` is it): declared
here so that the handlers need not import the app that routes to them."""

from __future__ import annotations

from typing import Protocol

from connector.simulator.clock import SimClock
from connector.simulator.knobs import Knobs
from connector.simulator.solutions import Solution
from connector.simulator.stats import Stats
from connector.simulator.store import ItemStore
from connector.validation import ItemValidator


class SimulatorState(Protocol):
    project_id: str
    project_ids: tuple[str, ...]
    api_key: str
    solution: Solution
    validator: ItemValidator
    knobs: Knobs
    clock: SimClock
    store: ItemStore
    stats: Stats

    def reset(self, *, restore_knobs: bool) -> None: ...
    def project_json(self) -> dict[str, object]: ...
    def serving(self, project_id: str) -> SimulatorState: ...
