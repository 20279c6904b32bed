"""Scenario 7, latency-bound: every API answer takes `LATENCY_SECONDS` (250 ms), so neither flow
is bound by CPU; each is compared with the fastest a client can go through the same simulator.

- Poll: finished items seeded, `toloka-connector poll` publishing them in transactions (rate as
  scenario 2: the first to the last result a read_committed consumer sees), with the default
  late window and without one (`CONNECTOR_LATE_WINDOW_SECONDS=0`: no look-back scans, which
  list again every item finished within the window, here all of them). Baseline: a bare
  httpx client paging through the same items sequentially (`sort=finished`, `after_id`, pages
  of the poller's size, each page decoded with orjson), the most a poller that lists one page
  at a time can reach.
- Upload: a backlog drained by `toloka-connector upload` (as scenario 1). Baseline: raw bulk
  POSTs of pre-serialised 1,000-item bodies with as many in flight as the uploader allows.
Rounds alternate connector and baseline; medians reported.
"""

from __future__ import annotations

import statistics
import time

import orjson

from benchmarks.context import Bench
from benchmarks.errors import BenchError
from benchmarks.http_io import bulk_bodies, raw_bulk_posts
from benchmarks.progress import Throughput
from benchmarks.records import item_values
from benchmarks.report import Row, ScenarioResult
from benchmarks.scenarios.poll import PAGE_SIZE, measure_poll
from benchmarks.scenarios.upload import BULK_ITEMS, IN_FLIGHT, measure_upload, produce_topic
from connector.simulator.process import SimulatorProcess

SCENARIO = "s7"
PREFIX = "lb"
LATENCY_SECONDS = 0.25
ROUNDS = 2


def page_sequentially(sim: SimulatorProcess, count: int, page_size: int) -> Throughput:
    """List every item, one page after the other, as a client that only lists would."""
    seen = 0
    after: str | None = None
    with sim.client() as http:
        started = time.perf_counter()
        while True:
            params = {"sort": "finished", "limit": str(page_size)}
            if after is not None:
                params["after_id"] = after
            response = http.get(sim.items_url, params=params)
            response.raise_for_status()
            page = orjson.loads(response.content)
            content = page["content"]
            seen += len(content)
            if not page["has_more"] or not content:
                break
            after = content[-1]["id"]
        seconds = time.perf_counter() - started
    if seen != count:
        raise BenchError(f"paging listed {seen} items, {count} were seeded")
    return Throughput(seen, seconds)


def run(bench: Bench) -> ScenarioResult:
    result = ScenarioResult(7, "Latency-bound: 250 ms per API answer")
    knobs = {"latency": LATENCY_SECONDS}
    poll_count = bench.sizes.latency_bound_poll_items
    upload_count = bench.sizes.latency_bound_upload_items
    backlog = produce_topic(bench, SCENARIO, PREFIX, upload_count)
    bodies = bulk_bodies(list(item_values(PREFIX, upload_count)), BULK_ITEMS)
    polls: list[Throughput] = []
    polls_no_window: list[Throughput] = []
    pages: list[Throughput] = []
    uploads: list[Throughput] = []
    posts: list[Throughput] = []
    for number in range(1, ROUNDS + 1):
        bench.say(f"round {number}/{ROUNDS}: poll {poll_count:,} items, then bare paging")
        polled = measure_poll(bench, f"{SCENARIO}p{number}", poll_count, keep=False, knobs=knobs)
        polls.append(polled.steady)
        polled = measure_poll(bench, f"{SCENARIO}w{number}", poll_count, keep=False, knobs=knobs,
                              overrides={"CONNECTOR_LATE_WINDOW_SECONDS": "0"})  # fmt: skip
        polls_no_window.append(polled.steady)
        pages.append(page_sequentially(bench.sim, poll_count, PAGE_SIZE))
        bench.say(f"round {number}/{ROUNDS}: upload {upload_count:,} items, then raw POSTs")
        group = bench.name(SCENARIO, f"g{number}")
        uploads.append(measure_upload(bench, backlog, group, knobs=knobs).steady)
        bench.sim.reset()
        bench.sim.set_knobs(**knobs)
        posts.append(raw_bulk_posts(bench.sim, bodies, BULK_ITEMS, IN_FLIGHT).steady(upload_count))
    bench.sim.reset()
    del bodies

    def median(values: list[Throughput]) -> float:
        return statistics.median(t.rate for t in values)

    result.rows += [
        Row("latency-bound: toloka-connector poll (late window 60 s)", median(polls), "items/s",
            f"bare client paging sequentially ({PAGE_SIZE:,}/page)", median(pages),
            ">= 0.95x", minimum_ratio=0.95),
        Row("latency-bound: toloka-connector poll (late window 0)", median(polls_no_window),
            "items/s", "bare client paging sequentially", median(pages), ">= 0.95x",
            minimum_ratio=0.95),
        Row("latency-bound: toloka-connector upload", median(uploads), "items/s",
            f"raw bulk POST ({IN_FLIGHT} in flight)", median(posts), ">= 0.95x",
            minimum_ratio=0.95),
    ]  # fmt: skip
    result.notes += [
        f"Every API answer held {LATENCY_SECONDS * 1000:.0f} ms by the simulator; poll: "
        f"{poll_count:,} finished items seeded, page size {PAGE_SIZE:,}; upload: {upload_count:,} "
        f"records, batches of {BULK_ITEMS:,}, {IN_FLIGHT} requests in flight.",
        f"Medians of {ROUNDS} interleaved rounds: poller "
        + ", ".join(f"{t.rate:,.0f}" for t in polls)
        + "; poller without late window "
        + ", ".join(f"{t.rate:,.0f}" for t in polls_no_window)
        + "; bare paging "
        + ", ".join(f"{t.rate:,.0f}" for t in pages)
        + "; uploader "
        + ", ".join(f"{t.rate:,.0f}" for t in uploads)
        + "; raw bulk POST "
        + ", ".join(f"{t.rate:,.0f}" for t in posts)
        + " items/s.",
    ]
    result.raw.update(
        latency_seconds=LATENCY_SECONDS,
        poll_items=poll_count,
        upload_items=upload_count,
        poller=[t.as_json() for t in polls],
        poller_late_window_0=[t.as_json() for t in polls_no_window],
        bare_paging=[t.as_json() for t in pages],
        uploader=[t.as_json() for t in uploads],
        raw_bulk_post=[t.as_json() for t in posts],
    )
    return result
