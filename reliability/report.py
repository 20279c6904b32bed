"""The chaos figures as a Markdown table, written into docs/reliability.md between markers."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from pathlib import Path

from testkit.scenarios.chaos import Outcome

BEGIN = "<!-- chaos-table:begin (written by python -m reliability) -->"
END = "<!-- chaos-table:end -->"


def _causes(total: int, causes: Mapping[str, int]) -> str:
    if not total:
        return "0"
    named = ", ".join(f"{n} {cause.replace('_', ' ')}" for cause, n in sorted(causes.items()))
    return f"{total} ({named})"


def _faults(faults: Sequence[str]) -> str:
    api = sum(f.startswith("API ") for f in faults)
    broker = [f.removeprefix("broker ") for f in faults if f.startswith("broker ")]
    parts = []
    if api:
        parts.append(f"{api} API phases")
    if broker:
        counts: dict[str, int] = {}
        for name in broker:
            counts[name] = counts.get(name, 0) + 1
        parts.append("broker " + ", ".join(f"{n} x{c}" for n, c in counts.items()))
    return "; ".join(parts) or "—"


def _reconciliations(counts: Mapping[str, int]) -> str:
    named = ", ".join(f"{n} {kind}" for kind, n in counts.items() if n)
    return named or "0"


def chaos_table(outcomes: Sequence[Outcome]) -> str:
    lines = [
        "| scenario | broker | items (invalid) | kills | faults | lost | repeated uploads "
        "| reconciliations | repeated results | repeated dead letters | recovery time | verdict |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for o in outcomes:
        v = o.verdict
        problems = o.failures(transactions=o.broker_kind != "mock")
        lines.append(
            f"| {o.scenario.name} | {o.broker_kind} | {o.items} ({v.invalid}) | {o.kills} "
            f"| {_faults(o.faults)} | {v.lost} "
            f"| {_causes(v.repeated_uploads, v.repeated_uploads_by_cause)} "
            f"| {_reconciliations(o.reconciliations)} "
            f"| {_causes(v.repeated_results, v.repeated_results_by_cause)} "
            f"| {_causes(v.repeated_dead_letters, v.repeated_dead_letters_by_cause)} "
            f"| {o.recovery_text()} | {'ok' if not problems else 'FAILED'} |"
        )
    return "\n".join(lines)


def merged_rows(old_section: str, new_table: str) -> str:
    """`new_table` plus the rows of `old_section`'s table for scenarios it does not cover, so
    that running one scenario keeps the others' figures."""
    new_lines = new_table.splitlines()
    covered = {line.split("|")[1].strip() for line in new_lines[2:]}
    kept = [
        line
        for line in old_section.splitlines()
        if line.startswith("| ")
        and not line.startswith("| scenario |")
        and line.split("|")[1].strip() not in covered
    ]
    return "\n".join(new_lines[:2] + kept + new_lines[2:])


def read_section(doc: Path, marker: str) -> str:
    text = doc.read_text()
    match = re.search(
        rf"<!-- {re.escape(marker)}:begin[^>]*-->\n(.*?)\n<!-- {re.escape(marker)}:end -->",
        text,
        re.DOTALL,
    )
    return match.group(1) if match else ""


def write_section(doc: Path, marker: str, body: str) -> None:
    """Replace the text between `<!-- {marker}:begin … -->` and `<!-- {marker}:end -->`."""
    text = doc.read_text()
    pattern = re.compile(
        rf"(<!-- {re.escape(marker)}:begin[^>]*-->\n).*?(\n<!-- {re.escape(marker)}:end -->)",
        re.DOTALL,
    )
    if not pattern.search(text):
        raise ValueError(f"{doc} has no {marker} markers")
    doc.write_text(pattern.sub(lambda m: m.group(1) + body + m.group(2), text))
