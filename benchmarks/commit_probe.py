"""`python -m benchmarks.commit_probe`: how long `commit_transaction` of a poller page takes, and
what lengthens it (benchmarks/analysis.md, 2026-12-01 poller findings).

Against a real Kafka broker started here, transactions of 1,000 records (450-byte JSON values,
the poller's three headers, 6 partitions) are produced and committed by producers with the
settings of each variant, taking turns transaction by transaction (after a warm-up), first alone,
then with a listing thread beside: one that waits `--listing-wait` seconds (the API's answer)
and then reads a page of 1,000 items as the poller does (orjson, `Item.from_api`,
`output_record`), over and over. Printed: the median milliseconds of the produce loop and of
`commit_transaction` per variant, the broker's CPU per record while that variant's transactions
ran (its process's CPU time from the start of each transaction to the end of its commit), and
how many delivery callbacks Python saw.
"""

from __future__ import annotations

import argparse
import statistics
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

import orjson
import psutil
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic

from connector.devtools.brokers.start import start_broker
from connector.poller.publisher import output_record
from connector.toloka.models import ItemPage

RECORDS = 1000
POLLER = {"delivery.report.only.error": True, "enable.idempotence": True}
Record = tuple[bytes, bytes, list[tuple[str, str | bytes | None]]]


def items(count: int) -> list[dict[str, Any]]:
    stamp = "2026-11-30T10:00:00.123456"
    return [
        {"id": uuid.uuid4().hex, "app_project_id": "p1", "status": "COMPLETED",
         "input_data": {"text": "x" * 220}, "output_data": {"verdict": "ok"},
         "created_at": stamp, "started_at": stamp, "finished_at": stamp}
        for _ in range(count)
    ]  # fmt: skip


class Variant:
    """A producer, and how each transaction is produced with it."""

    def __init__(
        self, bootstrap: str, config: dict[str, Any], *, state: str, broker: psutil.Process
    ) -> None:
        self.producer = Producer(
            {"bootstrap.servers": bootstrap, "linger.ms": 5, **config,
             "transactional.id": f"commit-probe-{uuid.uuid4().hex[:8]}"}
        )  # fmt: skip
        self.producer.init_transactions(30)
        self.callback = "delivery.report.only.error" in config
        self.state = state
        self.reports = 0
        self.produce_ms: list[float] = []
        self.commit_ms: list[float] = []
        self.broker = broker
        self.broker_cpu = 0.0

    def on_delivery(self, error: Any, message: Any) -> None:
        self.reports += 1

    def transaction(self, topics: tuple[str, str], records: list[Record], keep: bool) -> None:
        output, state_topic = topics
        send = self.producer.produce
        callback = self.on_delivery if self.callback else None
        broker_cpu = sum(self.broker.cpu_times()[:2])
        started = time.perf_counter()
        self.producer.begin_transaction()
        if self.state == "first":
            send(state_topic, value=b"s" * 300, key=b"cursor", partition=0, on_delivery=callback)
        for key, value, headers in records:
            send(output, value=value, key=key, partition=-1, headers=headers, on_delivery=callback)
        if self.state == "last":
            send(state_topic, value=b"s" * 300, key=b"cursor", partition=0, on_delivery=callback)
        produced = time.perf_counter()
        self.producer.commit_transaction(30)
        if keep:
            self.broker_cpu += sum(self.broker.cpu_times()[:2]) - broker_cpu
            self.produce_ms.append((produced - started) * 1e3)
            self.commit_ms.append((time.perf_counter() - produced) * 1e3)


def listing_thread(page: bytes, wait: float) -> Callable[[], None]:
    """Start a thread that lists pages as the poller's prefetch thread does; returns its stop."""
    stop = threading.Event()

    def run() -> None:
        while not stop.wait(wait):
            for item in ItemPage.from_api({"content": orjson.loads(page)}).content:
                output_record(item, key_field="id", app_project_id="p1")

    thread = threading.Thread(target=run, daemon=True)
    thread.start()

    def end() -> None:
        stop.set()
        thread.join()

    return end


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--transactions", type=int, default=60, help="per variant and setting")
    parser.add_argument("--listing-wait", type=float, default=0.01)
    args = parser.parse_args()
    listed = items(RECORDS)
    page = orjson.dumps(listed)
    records: list[Record] = [
        (item["id"].encode(), orjson.dumps(item),
         [("toloka-item-id", item["id"].encode()), ("toloka-status", b"COMPLETED"),
          ("toloka-app-project-id", b"p1")])
        for item in listed
    ]  # fmt: skip
    with start_broker("kafka") as broker:
        bootstrap = broker.bootstrap_servers
        pid = getattr(broker, "pid", None)  # (Apache Kafka's: the java process)
        if pid is None:
            raise SystemExit("the broker's process is not known: its CPU cannot be read")
        process = psutil.Process(pid)
        topics = (f"probe-out-{uuid.uuid4().hex[:6]}", f"probe-state-{uuid.uuid4().hex[:6]}")
        admin = AdminClient({"bootstrap.servers": bootstrap})
        created = admin.create_topics([NewTopic(topics[0], 6, 1), NewTopic(topics[1], 1, 1)])
        for future in created.values():
            future.result()
        time.sleep(2)  # the broker serves a topic a moment after it answers CreateTopics
        variants = {
            "raw (the baseline's settings)": Variant(bootstrap, {}, state="none", broker=process),
            "poller, no state record": Variant(bootstrap, POLLER, state="none", broker=process),
            "poller, state record last": Variant(bootstrap, POLLER, state="last", broker=process),
            "poller, state record first": Variant(bootstrap, POLLER, state="first", broker=process),
        }
        results: dict[str, tuple[float, float, float]] = {}
        for beside in (None, args.listing_wait):
            stop = listing_thread(page, beside) if beside is not None else None
            for variant in variants.values():
                variant.produce_ms.clear()
                variant.commit_ms.clear()
                variant.broker_cpu = 0.0
            for round_number in range(args.transactions + 20):
                for variant in variants.values():
                    variant.transaction(topics, records, keep=round_number >= 20)
            if stop is not None:
                stop()
            for name, variant in variants.items():
                label = f"{name}{', listing thread beside' if beside is not None else ''}"
                results[label] = (
                    statistics.median(variant.produce_ms),
                    statistics.median(variant.commit_ms),
                    variant.broker_cpu / (len(variant.commit_ms) * RECORDS) * 1e6,
                )
        print(f"{'variant':60} {'produce ms':>10} {'commit ms':>10} {'broker µs/record':>16}")
        for label, (produce_ms, commit_ms, broker_us) in results.items():
            print(f"{label:60} {produce_ms:10.2f} {commit_ms:10.2f} {broker_us:16.2f}")
        for name, variant in variants.items():
            print(f"{name}: {variant.reports} delivery callbacks in Python")


if __name__ == "__main__":
    main()
