"""Feed the compose stack's input topic with sample text-moderation items, forever.

Runs in the connector image (it has confluent-kafka). Every SAMPLE_BAD_RECORD_EVERY-th record is
not JSON, so the dead-letter panel has something to show too (0 turns that off).
Settings: KAFKA_BOOTSTRAP_SERVERS, CONNECTOR_INPUT_TOPIC, SAMPLE_ITEMS_PER_SECOND,
SAMPLE_BAD_RECORD_EVERY.
"""

from __future__ import annotations

import itertools
import json
import os
import signal
import sys
import threading
import time

from confluent_kafka import Producer

TEXTS = (
    "Great product, arrived on time.",
    "This is the worst service I have ever seen!!!",
    "Buy cheap watches at example dot com",
    "Could you tell me where the station is?",
    "I will find you and you will regret it",
    "Lovely weather in Belgrade today.",
)


def record(n: int, bad_every: int) -> bytes:
    if bad_every and n % bad_every == bad_every - 1:
        return b"{not json"
    return json.dumps({"id": f"sample-{n}", "text": TEXTS[n % len(TEXTS)]}).encode()


def main() -> int:
    topic = os.environ.get("CONNECTOR_INPUT_TOPIC", "toloka.items")
    rate = float(os.environ.get("SAMPLE_ITEMS_PER_SECOND", "20"))
    bad_every = int(os.environ.get("SAMPLE_BAD_RECORD_EVERY", "200"))
    producer = Producer(
        {
            "bootstrap.servers": os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "localhost:9092"),
            "linger.ms": 20,
        }
    )
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    start = time.monotonic()
    for n in itertools.count():
        if stop.is_set():
            break
        producer.produce(topic, record(n, bad_every), key=f"sample-{n}".encode())
        producer.poll(0)
        # Pace against the start time, so slow iterations do not lower the rate.
        stop.wait(max(0.0, start + (n + 1) / rate - time.monotonic()))
        if n % 1000 == 0:
            print(f"produced {n + 1} records to {topic}", file=sys.stderr, flush=True)
    producer.flush(10)
    return 0


if __name__ == "__main__":
    sys.exit(main())
