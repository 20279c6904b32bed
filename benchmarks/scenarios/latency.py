"""Scenario 3, latency at a steady input rate through `toloka-connector run` (both roles).

- upload side: input record timestamp → the simulator received the item (its `created_at`,
  corrected by the simulator clock's offset from ours, measured at the start);
- poll side: the item finished (zero processing delay: `finished_at` = `created_at`) → a
  read_committed consumer of the harness received its result.
Baselines, same run: the Kafka hop alone (record timestamp → a plain consumer of the harness
received the input record) for the upload side; the configured poll interval for the poll side
(the poller lists at most that often while results flow, so it bounds the wait, not Kafka).
A few warm-up records go through first, so the roles are running when the clock starts.
"""

from __future__ import annotations

import math
import time
from typing import Any

import orjson
from confluent_kafka import Producer

from benchmarks.context import DEFAULT_PARTITIONS, Bench
from benchmarks.errors import BenchError
from benchmarks.kafka_io import Received, TopicReader, base_config
from benchmarks.records import item_value
from benchmarks.report import Row, ScenarioResult
from benchmarks.scenarios.poll import output_partitions
from connector.config import load_settings
from connector.simulator.clock import parse_api_datetime
from testkit.waiting import pause, wait_for

WARMUP_RECORDS = 20
PREFIX = "lat"
PACE_SECONDS = 0.002
READER_WAIT_SECONDS = 0.002  # consume() waits this long for a full batch: receive-time resolution
PRODUCER_LINGER_MS = 5  # librdkafka's default: one request per record would swamp the broker


def percentile(ordered: list[float], q: float) -> float:
    """Nearest-rank percentile of an ascending list."""
    if not ordered:
        return math.nan
    rank = min(len(ordered), max(1, math.ceil(q * len(ordered))))
    return ordered[rank - 1]


def distribution(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    return {
        "count": len(ordered),
        "p50_ms": round(percentile(ordered, 0.50) * 1000, 2),
        "p99_ms": round(percentile(ordered, 0.99) * 1000, 2),
        "max_ms": round(ordered[-1] * 1000, 2) if ordered else math.nan,
        "mean_ms": round(sum(ordered) / len(ordered) * 1000, 2) if ordered else math.nan,
    }


def _sequence(input_id: object) -> int | None:
    if isinstance(input_id, str) and input_id.startswith(PREFIX + "-"):
        return int(input_id[len(PREFIX) + 1 :])
    return None


def _paced_produce(producer: Any, topic: str, rate: int, seconds: float) -> tuple[list[int], float]:
    """Produce `rate` records a second for `seconds`, each stamped with its produce time (ms);
    the stamps by sequence number, and the rate achieved."""
    total = int(rate * seconds)
    stamps: list[int] = []
    started = time.perf_counter()
    while len(stamps) < total:
        due = min(total, int((time.perf_counter() - started) * rate) + 1)
        while len(stamps) < due:
            stamp = int(time.time() * 1000)
            producer.produce(topic, item_value(PREFIX, len(stamps)), timestamp=stamp)
            stamps.append(stamp)
        producer.poll(0)
        pause(PACE_SECONDS)
    elapsed = time.perf_counter() - started
    if producer.flush(30):
        raise BenchError("the latency producer could not deliver its records")
    return stamps, total / elapsed


def _latencies(
    results: list[Received], hops: list[Received], stamps: list[int], clock_offset: float
) -> tuple[list[float], list[float], list[float], list[float]]:
    upload, poll, end_to_end, hop = [], [], [], []
    for record in results:
        item = orjson.loads(record.value)
        n = _sequence(item.get("input_data", {}).get("id"))
        if n is None:
            continue
        produced = stamps[n] / 1000
        created = parse_api_datetime(item["created_at"]) / 1_000_000 - clock_offset
        finished = parse_api_datetime(item["finished_at"]) / 1_000_000 - clock_offset
        upload.append(created - produced)
        poll.append(record.at - finished)
        end_to_end.append(record.at - produced)
    for record in hops:
        n = _sequence(orjson.loads(record.value).get("id"))
        if n is not None:
            hop.append(record.at - stamps[n] / 1000)
    return upload, poll, end_to_end, hop


def run(bench: Bench) -> ScenarioResult:
    result = ScenarioResult(3, "Latency at a steady rate")
    rate, seconds = bench.sizes.latency_rate, bench.sizes.latency_seconds
    total = int(rate * seconds)
    settings = bench.settings("s3")
    loaded = load_settings(environ=settings)
    linger_ms = loaded.uploader.linger_ms
    poll_interval = loaded.poller.poll_interval_seconds
    bench.create_topics(settings, DEFAULT_PARTITIONS, output_partitions(bench, total))
    input_topic = settings["CONNECTOR_INPUT_TOPIC"]
    output_topic = settings["CONNECTOR_OUTPUT_TOPIC"]
    bench.sim.reset()
    offset = bench.sim_clock_offset()

    results = TopicReader(
        bench.bootstrap, output_topic, bench.inspector.partitions(output_topic), keep=True,
        wait=READER_WAIT_SECONDS,
    ).start()  # fmt: skip
    hops = TopicReader(
        bench.bootstrap, input_topic, bench.inspector.partitions(input_topic), keep=True,
        read_committed=False, wait=READER_WAIT_SECONDS,
    ).start()  # fmt: skip
    proc = bench.start("run", settings, "s3-run")
    producer = Producer({**base_config(bench.bootstrap), "linger.ms": PRODUCER_LINGER_MS})
    try:
        bench.say("toloka-connector run: warm-up records")
        for n in range(WARMUP_RECORDS):
            producer.produce(input_topic, item_value("warm", n))
        producer.flush(30)
        wait_for(lambda: results.count >= WARMUP_RECORDS, timeout=120.0,
                   what="the warm-up results", guard=proc.check_alive)  # fmt: skip
        bench.say(f"steady input: {rate:,}/s for {seconds:g}s")
        stamps, achieved = _paced_produce(producer, input_topic, rate, seconds)
        wait_for(lambda: results.count >= WARMUP_RECORDS + total, timeout=120.0,
                   what=f"{total:,} results", guard=proc.check_alive)  # fmt: skip
    finally:
        code = proc.terminate()
        results.stop()
        hops.stop()
    routes: dict[str, int] = bench.sim.stats().get("requests_by_route", {})
    listings = int(routes.get("list_items", 0))
    page_size = loaded.poller.page_size
    upload, poll, end_to_end, hop = _latencies(results.kept, hops.kept, stamps, offset)
    if len(upload) != total:
        raise BenchError(f"{len(upload)} results for {total} records")
    up, po, e2e, kafka = (distribution(values) for values in (upload, poll, end_to_end, hop))
    poll_ms = poll_interval * 1000
    target_ms = linger_ms + 20
    result.rows += [
        Row("latency: upload side p50", up["p50_ms"], "ms", "Kafka hop p50", kafka["p50_ms"],
            f"≤ linger {linger_ms} + 20 ms", maximum=target_ms),
        Row("latency: upload side p99", up["p99_ms"], "ms", "Kafka hop p99", kafka["p99_ms"]),
        Row("latency: upload side max", up["max_ms"], "ms", "Kafka hop max", kafka["max_ms"]),
        Row("latency: poll side p50", po["p50_ms"], "ms", "poll interval (configured)",
            poll_ms),
        Row("latency: poll side p99", po["p99_ms"], "ms", "poll interval (configured)",
            poll_ms),
        Row("latency: poll side max", po["max_ms"], "ms", "poll interval (configured)",
            poll_ms),
        Row("latency: input rate achieved", achieved, "items/s", "asked", float(rate)),
    ]  # fmt: skip
    if bench.is_mock:
        result.notes.append(
            "Mock cluster: it answers a fetch only when fetch.wait.max.ms (500 ms) runs out, "
            "not when data arrives, so every consumer hop waits: these latencies say nothing "
            "about the connector; run with --broker kafka."
        )
    result.notes += [
        f"{total:,} records at {achieved:,.0f}/s for {seconds:g}s through `toloka-connector run`"
        f" (defaults: linger {linger_ms} ms, poll interval {poll_interval:g}s, page size "
        f"{loaded.poller.page_size}); zero simulator latency and processing delay; exit code "
        f"{code}.",
        f"Simulator clock offset from ours: {offset * 1000:+.1f} ms (corrected).",
        f"End to end (record timestamp → result readable): p50 {e2e['p50_ms']:.0f} ms, "
        f"p99 {e2e['p99_ms']:.0f} ms, max {e2e['max_ms']:.0f} ms.",
        "The poll side waits for the next listing: up to one poll interval, plus the "
        "transaction; lower CONNECTOR_POLL_INTERVAL_SECONDS to trade API calls for latency.",
        f"The poller made {listings:,} listing requests (page size {page_size:,}) for "
        f"{total + WARMUP_RECORDS:,} items; following the flow alone takes about one per poll "
        f"interval plus one per full page (~{seconds / poll_interval + total / page_size:.0f}): "
        "the rest are look-back scans of the late window "
        f"({loaded.poller.late_window_seconds:g}s, every "
        f"{loaded.poller.late_scan_interval_seconds:g}s), which list every item finished in "
        "it again.",
    ]
    result.raw.update(
        rate_asked=rate,
        rate_achieved=round(achieved),
        seconds=seconds,
        linger_ms=linger_ms,
        poll_interval_seconds=poll_interval,
        clock_offset_ms=round(offset * 1000, 2),
        upload_side=up,
        poll_side=po,
        end_to_end=e2e,
        kafka_hop=kafka,
        exit_code=code,
        listing_requests=listings,
        requests_by_route=routes,
    )
    return result
