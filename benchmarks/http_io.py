"""HTTP baselines against the simulator: raw bulk POSTs of pre-serialised bodies, and the naive
bridge (consume one record, POST it, commit it)."""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence

import httpx
import orjson
from confluent_kafka import Consumer, TopicPartition

from benchmarks.errors import BenchError
from benchmarks.kafka_io import base_config
from benchmarks.progress import Progress, Throughput
from connector.simulator.process import SimulatorProcess


def bulk_bodies(values: Sequence[bytes], per_body: int) -> list[bytes]:
    """`{"items":[...]}` bodies of `per_body` items, joined from the record values as they are."""
    return [
        b'{"items":[' + b",".join(values[start : start + per_body]) + b"]}"
        for start in range(0, len(values), per_body)
    ]


def raw_bulk_posts(
    sim: SimulatorProcess, bodies: Sequence[bytes], per_body: int, concurrency: int
) -> Progress:
    """POST every body to `…/items/bulk` from `concurrency` threads sharing one httpx client
    (as the uploader does with CONNECTOR_MAX_IN_FLIGHT); every answer must be 200."""
    url = f"{sim.items_url}/bulk"
    headers = {"Content-Type": "application/json"}
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    lock = threading.Lock()
    progress = Progress()
    state = {"next": 0, "done": 0}
    failures: list[str] = []

    with sim.client(limits=limits) as client:
        client.get(sim.items_url, params={"limit": 1}).raise_for_status()  # connect first

        def worker() -> None:
            while not failures:
                with lock:
                    index = state["next"]
                    state["next"] += 1
                if index >= len(bodies):
                    return
                response = client.post(url, content=bodies[index], headers=headers)
                if response.status_code != 200:
                    failures.append(f"{response.status_code}: {response.text[:200]}")
                    return
                with lock:
                    state["done"] += per_body
                    progress.record(state["done"])

        progress.started = time.perf_counter()
        threads = [threading.Thread(target=worker, daemon=True) for _ in range(concurrency)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    if failures:
        raise BenchError(f"raw bulk POST failed: {failures[0]}")
    return progress


def naive_bridge(
    bootstrap: str,
    sim: SimulatorProcess,
    *,
    topic: str,
    partitions: Sequence[int],
    group: str,
    count: int,
    timeout: float,
) -> Throughput:
    """Consume one record, POST it as a single item, commit its offset synchronously; repeat."""
    consumer = Consumer(
        {
            **base_config(bootstrap),
            "group.id": group,
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
            # It reads a sample only: do not prefetch the whole backlog.
            "queued.max.messages.kbytes": 1024,
            "queued.min.messages": 1000,
            "fetch.max.bytes": 1_048_576,
            "max.partition.fetch.bytes": 65_536,
        }
    )
    consumer.assign([TopicPartition(topic, p) for p in partitions])
    done = 0
    deadline = time.monotonic() + timeout
    started: float | None = None
    try:
        with sim.client() as client:
            while done < count:
                if time.monotonic() > deadline:
                    raise BenchError(f"the naive bridge moved {done} of {count} in {timeout}s")
                message = consumer.poll(1.0)
                if message is None or message.error() is not None:
                    continue
                value = message.value()
                if value is None:
                    continue
                if started is None:
                    started = time.perf_counter()
                body = orjson.dumps({"input_data": orjson.loads(value)})
                response = client.post(
                    sim.items_url, content=body, headers={"Content-Type": "application/json"}
                )
                if response.status_code != 200:
                    raise BenchError(f"naive bridge POST: {response.status_code}")
                consumer.commit(message=message, asynchronous=False)
                done += 1
    finally:
        consumer.close()
    assert started is not None
    return Throughput(done, time.perf_counter() - started)
