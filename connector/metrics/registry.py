"""The connector's metrics on one registry: the families of each part (`connections`, `uploader`,
`poller`, `roles`), registered once per process and bound to one app project at a time."""

from __future__ import annotations

import copy
import platform

from prometheus_client import CollectorRegistry, Info

from connector import __version__
from connector.metrics.connections import ConnectionMetrics
from connector.metrics.labels import APP_PROJECT, PREFIX
from connector.metrics.poller import PollerMetrics
from connector.metrics.roles import RoleMetrics
from connector.metrics.uploader import UploaderMetrics


class Metrics(ConnectionMetrics, UploaderMetrics, PollerMetrics, RoleMetrics):
    """The connector's metric families. Create one per process (or per test) on a registry;
    `for_project` gives each pipeline its view."""

    def __init__(self, registry: CollectorRegistry | None = None, app_project: str = "") -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        r = self.registry

        self.build_info = Info(f"{PREFIX}_build", "Connector version and runtime.", registry=r)
        self.build_info.info({"version": __version__, "python": platform.python_version()})

        self._register_connections(r)
        self._register_uploader(r)
        self._register_poller(r)
        self._register_roles(r)

        self._bind(app_project)

    def for_project(self, app_project: str) -> Metrics:
        """This registry's metrics, bound to `app_project` (its label sets exist from now on)."""
        view = copy.copy(self)
        view._bind(app_project)
        return view

    def sample(self, name: str, labels: dict[str, str] | None = None) -> float | None:
        """The value of sample `name` with `labels`, of this view's project when the metric has
        one (`CollectorRegistry.get_sample_value` otherwise)."""
        own = {APP_PROJECT: self.app_project, **(labels or {})}
        value = self.registry.get_sample_value(name, own)
        return value if value is not None else self.registry.get_sample_value(name, labels)

    def _bind(self, app_project: str) -> None:
        self.app_project = app_project
        self._bind_connections(app_project)
        self._bind_uploader(app_project)
        self._bind_poller(app_project)
        self._bind_roles(app_project)
