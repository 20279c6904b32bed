"""Every metric the connector exports, in one package, on an injected registry.

Conventions: one prefix (`toloka_connector_`), base units (`_seconds`, `_bytes`), counters end in
`_total`, no ids in labels but the app project's, and every known label set exists from the start
at zero so that dashboards and alerts see a flat line instead of "no data".

Several app projects (pipelines) share one process and one registry: every metric of a pipeline's
work carries an `app_project` label (one pipeline: its project id). A `Metrics` is bound to one
project (`for_project` gives another project's view of the same families), so the roles write
`metrics.items_uploaded.inc()` without knowing the label; a family with labels of its own is a
`Bound` view (`metrics.dead_letters.labels(reason)`). The process's own metrics (build, Kafka and
API availability) have no project; the items outstanding between a pipeline's two roles, the
end-to-end time they measure together, and a role's heartbeat and readiness have its project.

The modules: `registry` (`Metrics`, the one object the rest of the code holds), the families of
`connections` (Toloka API, Kafka), `uploader`, `poller` and `roles` (what both write), `labels`
(prefix, label values, buckets, `Bound`), and `across_processes` (how the worker processes'
gauges merge into one `/metrics`).
"""

from __future__ import annotations

from connector.metrics.registry import Metrics

__all__ = ["Metrics"]
