"""The demo's closing summary: what went in, what came out, how fast, and where to look next."""

from __future__ import annotations

import statistics
from collections import Counter
from dataclasses import dataclass, field
from typing import Any


def percentile(values: list[float], fraction: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


@dataclass
class Summary:
    broker: str
    items: int
    """Items the demo was asked to produce."""
    produced: int
    expected_valid: int
    """Valid items among those produced."""
    expected_dead_letters: Counter[str]
    """Malformed items among those produced, by the reason they should be dead-lettered for."""
    uploaded: int
    published: int
    repeated_results: int
    statuses: Counter[str]
    dead_letters: Counter[str]
    seconds: float
    latencies_seconds: list[float] = field(repr=False)
    metrics_url: str | None
    read_output_command: str
    interrupted: bool = False
    by_project: dict[str, dict[str, int]] = field(default_factory=dict)
    """Published and dead-lettered per app project, when the demo ran several."""

    @property
    def accounted(self) -> bool:
        """Every item produced; every valid one published once, every malformed one
        dead-lettered for its reason."""
        return (
            self.produced == self.items
            and self.published == self.expected_valid
            and self.dead_letters == self.expected_dead_letters
            and self.repeated_results == 0
        )

    def as_json(self) -> dict[str, Any]:
        lat = self.latencies_seconds
        return {
            "ok": self.accounted,
            "interrupted": self.interrupted,
            "broker": self.broker,
            "items": self.items,
            "produced": self.produced,
            "produced_valid": self.expected_valid,
            "produced_malformed": sum(self.expected_dead_letters.values()),
            "uploaded": self.uploaded,
            "published": self.published,
            "repeated_results": self.repeated_results,
            "results_by_status": dict(self.statuses),
            "dead_letters": sum(self.dead_letters.values()),
            "dead_letters_by_reason": dict(self.dead_letters),
            "expected_dead_letters_by_reason": dict(self.expected_dead_letters),
            "seconds": round(self.seconds, 3),
            "items_per_second": round(self.produced / self.seconds, 1) if self.seconds else 0,
            "latency_seconds": {
                "p50": round(percentile(lat, 0.5), 3),
                "p90": round(percentile(lat, 0.9), 3),
                "p99": round(percentile(lat, 0.99), 3),
                "max": round(max(lat, default=0.0), 3),
                "mean": round(statistics.fmean(lat), 3) if lat else 0.0,
            },
            "metrics_url": self.metrics_url,
            "read_output_command": self.read_output_command,
            **({"by_app_project": self.by_project} if self.by_project else {}),
        }

    def as_text(self) -> str:
        data = self.as_json()
        lat = data["latency_seconds"]
        statuses = ", ".join(f"{k} {v}" for k, v in sorted(self.statuses.items())) or "none"
        reasons = ", ".join(f"{k} {v}" for k, v in sorted(self.dead_letters.items())) or "none"
        if self.accounted:
            verdict = (
                "every item accounted for: each valid item published once, "
                "each malformed one dead-lettered"
            )
        elif self.interrupted:
            verdict = "interrupted (Ctrl-C): the counts above are what was done until then"
        else:
            verdict = "NOT every item was accounted for (see the counts above)"
        lines = [
            "",
            "summary",
            f"  broker              {self.broker}",
            f"  produced            {self.produced} of {self.items} items "
            f"({self.expected_valid} valid, {data['produced_malformed']} malformed)",
            f"  uploaded            {self.uploaded}",
            f"  published           {self.published} ({statuses})",
            f"  repeated results    {self.repeated_results}",
            f"  dead-lettered       {sum(self.dead_letters.values())} ({reasons})",
            *(
                f"  {project:<19} {counts['published']} published, "
                f"{counts['dead_letters']} dead-lettered"
                for project, counts in self.by_project.items()
            ),
            f"  time                {self.seconds:.1f} s, {data['items_per_second']} items/s",
            f"  end-to-end latency  p50 {lat['p50']:.2f} s, p90 {lat['p90']:.2f} s, "
            f"p99 {lat['p99']:.2f} s, max {lat['max']:.2f} s "
            "(input record → result record, Toloka processing included)",
            f"  verdict             {verdict}",
            "",
            "where to look next",
        ]
        if self.metrics_url:
            lines.append(f"  metrics             {self.metrics_url}")
        lines.append(f"  read the results    {self.read_output_command}")
        return "\n".join(lines)
