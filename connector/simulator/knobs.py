"""Timing and fault knobs: one definition serves the CLI flags, the admin API and the docs.

Every knob can be set at start (`--processing-delay 2`) and changed while running
(`PATCH /_simulator/knobs {"processing_delay": 2}`). Timing knobs apply to items created after
the change; fault knobs apply to the next request.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

FAULT_SCOPES = ("all", "read", "write")
MAX_PAGE_BYTES = 256 * 1024 * 1024
UNFINISHED_PLACEMENTS = ("last", "exclude")


def _knob(default: Any, help_text: str) -> Any:
    return field(default=default, metadata={"help": help_text})


@dataclass(frozen=True, slots=True)
class Knobs:
    # processing clock (applies to items created afterwards)
    queue_delay: float = _knob(0.0, "seconds an item stays NEW before it starts PROCESSING")
    processing_delay: float = _knob(0.0, "seconds from PROCESSING to a final status")
    processing_jitter: float = _knob(
        0.0, "extra processing seconds, uniform in [0, jitter), drawn per item"
    )
    item_error_ratio: float = _knob(0.0, "share of items that end in ERROR instead of COMPLETED")
    item_cancel_ratio: float = _knob(0.0, "share of items that end CANCELLED (never started)")
    late_visibility: float = _knob(
        0.0, "seconds after finished_at before an affected item shows as finished in listings"
    )
    late_visibility_ratio: float = _knob(
        1.0, "share of items that --late-visibility affects (below 1 reorders visibility)"
    )
    listing_delay: float = _knob(
        0.0,
        "seconds after its creation before an item shows in any listing (an API that lists new "
        "items late)",
    )
    unfinished_in_finished_sort: str = _knob(
        "last",
        "where unfinished items go under sort=finished: 'last' (after every finished "
        "item, by id) or 'exclude' (left out)",
    )
    # item shapes (apply to items created or seeded afterwards)
    bulky_output_bytes: int = _knob(
        0, "bytes of an extra `mask` string in the output_data of affected items (0: none)"
    )
    bulky_output_ratio: float = _knob(1.0, "share of items that --bulky-output-bytes affects")
    undecodable_item_ratio: float = _knob(
        0.0, "share of finished items listed with bytes that are not UTF-8 (the page is no JSON)"
    )
    invalid_item_ratio: float = _knob(
        0.0, "share of finished items listed with a finished_at that is no datetime"
    )
    # per-request latency and faults (API requests only, never the admin API)
    latency: float = _knob(0.0, "seconds added before every API response")
    latency_jitter: float = _knob(0.0, "extra seconds per response, uniform in [0, jitter)")
    read_latency: float = _knob(0.0, "seconds added before every GET response (slow listings)")
    fault_scope: str = _knob(
        "all", "which API requests the fault ratios hit: all, read (GET) or write (POST)"
    )
    http_429_ratio: float = _knob(0.0, "share of requests answered 429 TOO_MANY_REQUESTS")
    retry_after: int = _knob(1, "Retry-After seconds sent with every 429")
    rate_limit: float = _knob(
        0.0,
        "API requests per second accepted (a token bucket; 0: no limit); the rest are answered "
        "429 at once, with Retry-After: the seconds until a token is back, at least "
        "--retry-after",
    )
    rate_limit_burst: int = _knob(
        0, "requests the token bucket holds (0: one second's worth of --rate-limit, at least 1)"
    )
    http_500_ratio: float = _knob(0.0, "share of requests answered 500 INTERNAL_ERROR (JSON)")
    http_502_ratio: float = _knob(0.0, "share of requests answered 502 with an HTML body")
    http_503_ratio: float = _knob(0.0, "share answered 503 REMOTE_SERVICE_UNAVAILABLE (JSON)")
    reset_ratio: float = _knob(0.0, "share of requests whose connection is reset, not applied")
    lost_response_ratio: float = _knob(
        0.0, "share of requests applied, then answered by a connection reset (response lost)"
    )
    # answers that are not the API's: a proxy or gateway in the way (never applied)
    redirect_ratio: float = _knob(
        0.0, "share of requests answered by a redirect (--redirect-status), not applied"
    )
    redirect_status: int = _knob(302, "status of those redirects (300-399)")
    redirect_location: str = _knob(
        "https://elsewhere.invalid",
        "where those redirects point: an http(s) URL, to which the request's path is appended",
    )
    oversized_page_ratio: float = _knob(
        0.0,
        "share of requests answered by an HTML page of --oversized-page-bytes "
        "(--oversized-page-status), not applied",
    )
    oversized_page_status: int = _knob(502, "status of those pages (200-599)")
    oversized_page_bytes: int = _knob(
        2 * 1024 * 1024, f"body size of those pages (at most {MAX_PAGE_BYTES})"
    )

    def __post_init__(self) -> None:
        problems = [
            f"{name} must be >= 0"
            for name in (
                "queue_delay",
                "processing_delay",
                "processing_jitter",
                "late_visibility",
                "listing_delay",
                "latency",
                "latency_jitter",
                "read_latency",
                "bulky_output_bytes",
                "retry_after",
                "rate_limit",
                "rate_limit_burst",
            )
            if getattr(self, name) < 0
        ]
        problems += [
            f"{spec.name} must be within [0, 1]"
            for spec in dataclasses.fields(self)
            if spec.name.endswith("_ratio") and not 0.0 <= getattr(self, spec.name) <= 1.0
        ]
        if self.item_error_ratio + self.item_cancel_ratio > 1.0:
            problems.append("item_error_ratio + item_cancel_ratio must be <= 1")
        if sum(self.http_fault_ratios()) > 1.0:
            problems.append(
                "the HTTP fault ratios (429, 500, 502, 503, reset, lost, redirect, oversized "
                "page) sum above 1"
            )
        if not 300 <= self.redirect_status <= 399:
            problems.append("redirect_status must be within [300, 399]")
        if not self.redirect_location.startswith(("http://", "https://")):
            problems.append("redirect_location must be an http(s) URL")
        if not 200 <= self.oversized_page_status <= 599:
            problems.append("oversized_page_status must be within [200, 599]")
        if not 0 <= self.oversized_page_bytes <= MAX_PAGE_BYTES:
            problems.append(f"oversized_page_bytes must be within [0, {MAX_PAGE_BYTES}]")
        if self.fault_scope not in FAULT_SCOPES:
            problems.append(f"fault_scope must be one of {', '.join(FAULT_SCOPES)}")
        if self.unfinished_in_finished_sort not in UNFINISHED_PLACEMENTS:
            problems.append(
                f"unfinished_in_finished_sort must be one of {', '.join(UNFINISHED_PLACEMENTS)}"
            )
        if problems:
            raise ValueError("; ".join(problems))

    def http_fault_ratios(self) -> tuple[float, ...]:
        return (
            self.http_429_ratio,
            self.http_500_ratio,
            self.http_502_ratio,
            self.http_503_ratio,
            self.reset_ratio,
            self.lost_response_ratio,
            self.redirect_ratio,
            self.oversized_page_ratio,
        )

    def as_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def updated(self, changes: Mapping[str, Any]) -> Knobs:
        """A copy with `changes` applied; ValueError names unknown knobs and bad values."""
        types = {spec.name: spec.type for spec in dataclasses.fields(self)}
        unknown = sorted(set(changes) - set(types))
        if unknown:
            raise ValueError(f"unknown knob(s): {', '.join(unknown)}")
        converted: dict[str, Any] = {}
        for name, value in changes.items():
            converted[name] = _convert(name, types[name], value)
        return dataclasses.replace(self, **converted)


def _convert(name: str, type_name: object, value: Any) -> Any:
    """JSON values into the knob's type; bools are rejected where numbers are expected."""
    if type_name == "str":
        if isinstance(value, str):
            return value
    elif not isinstance(value, bool) and isinstance(value, int | float):
        if type_name == "float":
            return float(value)
        if type_name == "int" and float(value).is_integer():
            return int(value)
    raise ValueError(f"{name}: {value!r} is not a valid {type_name}")


def knob_help() -> dict[str, str]:
    """Knob name -> help text, for the CLI and the admin API's documentation."""
    return {spec.name: spec.metadata["help"] for spec in dataclasses.fields(Knobs)}
