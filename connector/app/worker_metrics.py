"""One `/metrics` for every process of a run (`CONNECTOR_WORKERS`): this process's families and
each worker's, merged sample by sample under the same names and labels, so a dashboard reads a
run of N processes as it reads one.

Counters and histograms are summed (their `_created` samples take the earliest); a gauge is
summed or takes the max or the min of the processes' values, as `GAUGE_ACROSS_PROCESSES` says
for it by its meaning; anything else (the build info) is the first process's.

Why not prometheus_client's multiprocess mode: it must be switched on by an environment variable
before prometheus_client is first imported (here the number of workers is known only after the
settings are read), it cannot show Info metrics (`build_info`), and a labelled gauge's
`remove()` does not reach its files, so the lag of a partition a rebalance moved to another
process would stay behind. Each worker keeps an ordinary registry instead and hands over its
families when the parent is scraped (`connector.app.workers`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence

from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector, CollectorRegistry
from prometheus_client.samples import Sample

from connector.metrics.across_processes import GAUGE_ACROSS_PROCESSES

_SUMMED = frozenset({"counter", "histogram", "gaugehistogram", "summary"})
_COMBINE: dict[str, Callable[[float, float], float]] = {
    "sum": lambda a, b: a + b,
    "max": max,
    "min": min,
}

SampleKey = tuple[str, tuple[tuple[str, str], ...]]


def _combiner(family: Metric, sample: Sample) -> Callable[[float, float], float] | None:
    """How two processes' values of `sample` combine; None: the first one stands."""
    if family.type in _SUMMED:
        return min if sample.name.endswith("_created") else _COMBINE["sum"]
    if family.type == "gauge":
        return _COMBINE[GAUGE_ACROSS_PROCESSES.get(family.name, "sum")]
    return None


def merge_families(processes: Sequence[Iterable[Metric]]) -> list[Metric]:
    """The families of `processes` (the first is this process's) as one process would show
    them: families and samples in the order they first appear."""
    merged: dict[str, Metric] = {}
    samples: dict[str, dict[SampleKey, Sample]] = {}
    for families in processes:
        for family in families:
            shown = merged.get(family.name)
            if shown is None:
                shown = merged[family.name] = Metric(
                    family.name, family.documentation, family.type, family.unit
                )
                samples[family.name] = {}
            known = samples[family.name]
            for sample in family.samples:
                key = (sample.name, tuple(sorted(sample.labels.items())))
                earlier = known.get(key)
                combine = _combiner(shown, sample)
                if earlier is None:
                    known[key] = sample
                elif combine is not None:
                    known[key] = earlier._replace(value=combine(earlier.value, sample.value))
    for name, family in merged.items():
        family.samples = list(samples[name].values())
    return list(merged.values())


class RunMetrics(Collector):
    """What the run's `/metrics` shows: `own` (this process's registry) merged with the families
    each of `workers()` hands over."""

    def __init__(
        self, own: CollectorRegistry, workers: Callable[[], Sequence[Iterable[Metric]]]
    ) -> None:
        self._own = own
        self._workers = workers

    def collect(self) -> Iterable[Metric]:
        return merge_families([list(self._own.collect()), *self._workers()])


def run_registry(
    own: CollectorRegistry, workers: Callable[[], Sequence[Iterable[Metric]]]
) -> CollectorRegistry:
    """A registry to expose instead of `own`: `own` and the workers' families, merged."""
    exposed = CollectorRegistry(auto_describe=False)
    exposed.register(RunMetrics(own, workers))
    return exposed
