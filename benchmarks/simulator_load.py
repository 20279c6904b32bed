"""How fast the simulator serves: `python -m benchmarks.simulator_load [--url URL] ...`.

Without `--url` it starts a simulator subprocess on a free port. Clients are raw keep-alive
sockets replaying pre-encoded requests, so the client costs far less than the server and the
figure measures the server. Modes:
- `bulk`: `POST …/items/bulk` with `--items` items each (each client cycles through 100,000
  distinct items; repeats show as duplicates in the stats and cost the server the same);
- `list`: seeds `--seed-items` finished items, then pages through them with
  `sort=finished&after_id=…&limit=--items`, as the poller does.
Prints one JSON line: requests/s, items/s, and the status counts.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from collections import Counter
from urllib.parse import urlsplit

import orjson

from connector.simulator.process import start_simulator_process

API_KEY = "loadcheck-key"
PROJECT_ID = "loadcheck-project"
REQUEST_POOL_ITEMS = 100_000
"""Distinct items each bulk client prepares; it cycles through them (repeats count as duplicates
in the simulator's stats, which costs the server the same)."""


_TEXT = {"text": "Kate likes dogs and long walks in the park."}


async def _roundtrip(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, request: bytes
) -> tuple[int, bytes]:
    writer.write(request)
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head[9:12])
    length_at = head.lower().index(b"content-length:") + len(b"content-length:")
    length = int(head[length_at : head.index(b"\r\n", length_at)])
    return status, await reader.readexactly(length)


def _request(method: str, host: str, path: str, body: bytes = b"") -> bytes:
    head = (
        f"{method} {path} HTTP/1.1\r\nHost: {host}\r\nAuthorization: ApiKey {API_KEY}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


def _bulk_requests(url: str, items: int) -> list[bytes]:
    """Requests carrying REQUEST_POOL_ITEMS distinct items, built before the clock runs so the
    client spends its measured time on I/O."""
    parts = urlsplit(url)
    path = f"{parts.path}/app-projects/{PROJECT_ID}/items/bulk"
    client = os.urandom(4).hex()
    return [
        _request(
            "POST",
            parts.netloc,
            path,
            orjson.dumps(
                {"items": [{"id": f"{client}-{batch}-{n}"} | _TEXT for n in range(items)]}
            ),
        )
        for batch in range(max(1, REQUEST_POOL_ITEMS // items))
    ]


async def _bulk_client(
    url: str, requests: list[bytes], deadline: float, statuses: Counter[int]
) -> None:
    parts = urlsplit(url)
    reader, writer = await asyncio.open_connection(parts.hostname, parts.port)
    sent = 0
    while time.perf_counter() < deadline:
        status, _ = await _roundtrip(reader, writer, requests[sent % len(requests)])
        statuses[status] += 1
        sent += 1
    writer.close()


async def _list_client(url: str, limit: int, deadline: float, statuses: Counter[int]) -> None:
    """Pages through the finished items as the poller does, starting over at the end."""
    parts = urlsplit(url)
    reader, writer = await asyncio.open_connection(parts.hostname, parts.port)
    base = f"{parts.path}/app-projects/{PROJECT_ID}/items?sort=finished&limit={limit}"
    cursor = ""
    while time.perf_counter() < deadline:
        path = base + (f"&after_id={cursor}" if cursor else "")
        status, body = await _roundtrip(reader, writer, _request("GET", parts.netloc, path))
        statuses[status] += 1
        page = orjson.loads(body)
        cursor = page["content"][-1]["id"] if page["has_more"] else ""
    writer.close()


async def _measure(args: argparse.Namespace, url: str) -> dict[str, object]:
    if args.mode == "list":
        parts = urlsplit(url)
        reader, writer = await asyncio.open_connection(parts.hostname, parts.port)
        seed = orjson.dumps({"count": args.seed_items})
        await _roundtrip(reader, writer, _request("POST", parts.netloc, "/_simulator/seed", seed))
        writer.close()
    statuses: Counter[int] = Counter()
    if args.mode == "bulk":
        pools = [_bulk_requests(url, args.items) for _ in range(args.connections)]
    started = time.perf_counter()
    deadline = started + args.seconds
    if args.mode == "bulk":
        clients = [_bulk_client(url, pool, deadline, statuses) for pool in pools]
    else:
        clients = [
            _list_client(url, args.items, deadline, statuses) for _ in range(args.connections)
        ]
    await asyncio.gather(*clients)
    elapsed = time.perf_counter() - started
    ok = statuses[200]
    return {
        "mode": args.mode,
        "items_per_request": args.items,
        "connections": args.connections,
        "seconds": round(elapsed, 2),
        "requests_per_second": round(ok / elapsed),
        "items_per_second": round(ok * args.items / elapsed),
        "statuses": {str(status): count for status, count in statuses.items()},
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--url", help="a running simulator (key and project as this script's)")
    parser.add_argument("--mode", choices=("bulk", "list"), default="bulk")
    parser.add_argument("--items", type=int, default=100, help="items per request / page size")
    parser.add_argument("--connections", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--seed-items", type=int, default=200_000, help="list mode only")
    args = parser.parse_args()
    if args.url is not None:
        result = asyncio.run(_measure(args, args.url))
    else:
        with start_simulator_process(api_key=API_KEY, project_id=PROJECT_ID, seed=1) as sim:
            result = asyncio.run(_measure(args, sim.base_url))
    print(orjson.dumps(result).decode())
    return 0


if __name__ == "__main__":
    sys.exit(main())
