"""What a registry value format costs per item against JSON: `python -m benchmarks.formats
[--items N]`.

Two paths, each per item, in this process (no Kafka, no API): the uploader's decode (record bytes
→ the validated JSON item it uploads: `decode_item` for json, `RegistryItemDecoder` for the
others) and the poller's encode (the API's item → the output value: `encode_json` for json; for
the others the encoding producer's work, the JSON record read back and encoded with
confluent-kafka's serializer). The registry simulator serves the schemas; its cache is warm
before the clock runs, so the figures are the codecs' cost, not the registry's. Prints one JSON
line per format: microseconds per item for each path, the value's bytes, and each path's cost
as a multiple of JSON's.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from typing import Any

import orjson
from confluent_kafka.schema_registry import SchemaRegistryClient

from connector.demo.formats import sample_serializer
from connector.devtools.registry.server import RegistrySimulator
from connector.formats.decoding import DECODERS
from connector.formats.encoding import result_encoder
from connector.poller.publisher import encode_json
from connector.simulator.solutions import TEXT_MODERATION
from connector.uploader.decode import RegistryItemDecoder, decode_item
from connector.validation import ItemValidator

FORMATS = ("json", "avro", "protobuf", "json_schema")


def finished_item(number: int) -> dict[str, Any]:
    """A finished item as the API lists it, of the simulator's default app."""
    return {
        "id": f"0190c2b5-7d4e-7000-8000-{number:012d}",
        "app_project_id": "bench-project",
        "status": "COMPLETED",
        "input_data": {"id": f"item-{number}", "text": "The delivery arrived two days late."},
        "output_data": {"result": ["OK"], "confidence": 0.93},
        "errors": None,
        "created_at": "2024-05-01T10:00:00.000",
        "started_at": "2024-05-01T10:00:01.000",
        "finished_at": "2024-05-01T10:00:03.000",
    }


def per_item_us(work: Callable[[int], object], items: int) -> float:
    started = time.perf_counter()
    for number in range(items):
        work(number)
    return (time.perf_counter() - started) / items * 1e6


def measure(value_format: str, registry: RegistrySimulator, items: int) -> dict[str, Any]:
    specs = (TEXT_MODERATION.input_spec, TEXT_MODERATION.output_spec)
    validator = ItemValidator(specs[0])
    results = [finished_item(n) for n in range(items)]
    inputs = [r["input_data"] for r in results]
    if value_format == "json":
        encode: Callable[[dict[str, Any]], bytes] = encode_json
        records = [orjson.dumps(i) for i in inputs]
        decode: Callable[[bytes | None, int, Any], object] = decode_item
        outputs = [encode_json(r) for r in results]

        def encode_output(n: int) -> object:
            return encode_json(results[n])
    else:
        client = SchemaRegistryClient({"url": registry.url})
        encode = result_encoder(
            value_format, client, topic="bench", subject=f"bench-{value_format}", specs=specs
        )
        # Inputs as a producer writes them, under its own schema (the demo's `DemoTask`).
        serialize = sample_serializer(value_format, registry.url, "bench-input")
        records = [serialize(i) for i in inputs]
        decode = RegistryItemDecoder(DECODERS[value_format](client))
        decode(records[0], 1 << 20, validator)  # the writer's schema cached before the clock
        outputs = [encode(r) for r in results]
        json_results = [encode_json(r) for r in results]

        def encode_output(n: int) -> object:
            return encode(orjson.loads(json_results[n]))

    decode_us = per_item_us(lambda n: decode(records[n], 1 << 20, validator), items)
    encode_us = per_item_us(encode_output, items)
    return {
        "format": value_format,
        "items": items,
        "uploader_decode_us_per_item": round(decode_us, 2),
        "poller_encode_us_per_item": round(encode_us, 2),
        "output_value_bytes": round(sum(map(len, outputs)) / items, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.formats")
    parser.add_argument("--items", type=int, default=20_000)
    args = parser.parse_args()
    with RegistrySimulator() as registry:
        rows = [measure(value_format, registry, args.items) for value_format in FORMATS]
    base = rows[0]
    for row in rows:
        row["decode_vs_json"] = round(
            row["uploader_decode_us_per_item"] / base["uploader_decode_us_per_item"], 1
        )
        row["encode_vs_json"] = round(
            row["poller_encode_us_per_item"] / base["poller_encode_us_per_item"], 1
        )
        print(orjson.dumps(row).decode(), flush=True)


if __name__ == "__main__":
    main()
