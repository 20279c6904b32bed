"""Results of the scenarios, and their rendering: a terminal table, docs/benchmarks.md and
docs/benchmarks.json."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchmarks.profiling import ProfileSummary


@dataclass
class Row:
    """One figure and the baseline it is compared with (measured in the same run)."""

    measure: str
    value: float
    unit: str
    baseline: str = ""
    baseline_value: float | None = None
    target: str = ""
    minimum_ratio: float | None = None
    """The target as a lower bound on value / baseline_value."""
    maximum: float | None = None
    """The target as an upper bound on the value itself."""
    met: bool | None = None

    def __post_init__(self) -> None:
        if self.met is not None:
            return
        ratio = self.ratio
        if self.minimum_ratio is not None and ratio is not None:
            self.met = ratio >= self.minimum_ratio
        elif self.maximum is not None:
            self.met = self.value <= self.maximum

    @property
    def ratio(self) -> float | None:
        if self.baseline_value is None or self.baseline_value == 0:
            return None
        return self.value / self.baseline_value

    def as_json(self) -> dict[str, Any]:
        ratio = self.ratio
        return {
            "measure": self.measure,
            "value": round(self.value, 3),
            "unit": self.unit,
            "baseline": self.baseline,
            "baseline_value": (
                None if self.baseline_value is None else round(self.baseline_value, 3)
            ),
            "ratio": None if ratio is None else round(ratio, 4),
            "target": self.target,
            "met": self.met,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Row:
        return cls(
            data["measure"], data["value"], data["unit"], data["baseline"],
            data["baseline_value"], data["target"], met=data["met"],
        )  # fmt: skip


@dataclass
class ScenarioResult:
    number: int
    title: str
    rows: list[Row] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    raw: dict[str, Any] = field(default_factory=dict)
    profiles: list[ProfileSummary] = field(default_factory=list)
    error: str | None = None
    skipped: str | None = None
    """Why the scenario was not measured on this broker (not a failure)."""
    seconds: float = 0.0

    def as_json(self) -> dict[str, Any]:
        return {
            "number": self.number,
            "title": self.title,
            "seconds": round(self.seconds, 1),
            "error": self.error,
            "skipped": self.skipped,
            "rows": [row.as_json() for row in self.rows],
            "notes": self.notes,
            "raw": self.raw,
            "profiles": [profile.as_json() for profile in self.profiles],
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ScenarioResult:
        return cls(
            data["number"],
            data["title"],
            rows=[Row.from_json(row) for row in data["rows"]],
            notes=list(data["notes"]),
            raw=dict(data["raw"]),
            profiles=[ProfileSummary.from_json(profile) for profile in data["profiles"]],
            error=data.get("error"),
            skipped=data.get("skipped"),
            seconds=float(data.get("seconds", 0.0)),
        )


def number(value: float, unit: str) -> str:
    if unit == "ratio":
        return f"{value:.2f}x"
    if abs(value) >= 1000 or float(value).is_integer():
        text = f"{value:,.0f}"
    elif abs(value) >= 100:
        text = f"{value:.0f}"
    elif abs(value) >= 10:
        text = f"{value:.1f}"
    else:
        text = f"{value:.2f}"
    return f"{text} {unit}".strip()


def _ratio(row: Row) -> str:
    ratio = row.ratio
    if ratio is None:
        return "—"
    return f"{ratio:.1f}x" if ratio >= 10 else f"{ratio:.2f}x"


def _met(row: Row) -> str:
    if row.met is None:
        return ""
    return "met" if row.met else "**missed**"


TABLE_HEADER = ("#", "measure", "value", "baseline (same run)", "ratio", "target", "")


def table_rows(results: list[ScenarioResult]) -> list[tuple[str, ...]]:
    rows: list[tuple[str, ...]] = []
    for result in results:
        if result.error is not None:
            rows.append((str(result.number), result.title, "failed", result.error, "", "", ""))
            continue
        if result.skipped is not None:
            rows.append((str(result.number), result.title, "skipped", result.skipped, "", "", ""))
            continue
        for row in result.rows:
            baseline = row.baseline
            if row.baseline_value is not None:
                baseline = f"{baseline}: {number(row.baseline_value, row.unit)}"
            rows.append(
                (
                    str(result.number),
                    row.measure,
                    number(row.value, row.unit),
                    baseline,
                    _ratio(row),
                    row.target,
                    _met(row),
                )
            )
    return rows


def markdown_table(results: list[ScenarioResult]) -> str:
    lines = ["| " + " | ".join(TABLE_HEADER) + " |", "|" + "---|" * len(TABLE_HEADER)]
    lines += ["| " + " | ".join(cells) + " |" for cells in table_rows(results)]
    return "\n".join(lines)


def terminal_table(results: list[ScenarioResult]) -> str:
    rows = [TABLE_HEADER, *table_rows(results)]
    widths = [max(len(row[i]) for row in rows) for i in range(len(TABLE_HEADER))]
    lines = ["  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row)) for row in rows]
    lines.insert(1, "  ".join("-" * width for width in widths))
    return "\n".join(line.rstrip() for line in lines)


def profile_markdown(profile: ProfileSummary, top: int = 12) -> str:
    lines = [
        f"**{profile.label}** — {profile.samples} {profile.unit}.",
        "",
        "| self share | innermost frame (file:line) |",
        "|---:|---|",
    ]
    lines += [f"| {share:.1%} | `{frame}` |" for frame, share in profile.self_lines[:top]]
    lines += ["", "| inclusive share | function (file) |", "|---:|---|"]
    lines += [f"| {share:.1%} | `{name}` |" for name, share in profile.inclusive[:top]]
    lines += ["", "| self share by file | file |", "|---:|---|"]
    lines += [f"| {share:.1%} | `{name}` |" for name, share in profile.by_file[:10]]
    return "\n".join(lines)


def write_json(path: Path, header: dict[str, Any], results: list[ScenarioResult]) -> None:
    document = {**header, "scenarios": [result.as_json() for result in results]}
    path.write_text(json.dumps(document, indent=2, ensure_ascii=False) + "\n")


def read_json(path: Path) -> tuple[dict[str, Any], list[ScenarioResult]]:
    """The header and the results `write_json` wrote."""
    document: dict[str, Any] = json.loads(path.read_text())
    scenarios = document.pop("scenarios")
    return document, [ScenarioResult.from_json(scenario) for scenario in scenarios]
