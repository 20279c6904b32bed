"""100,000 hostile records through a real `toloka-connector upload`: every record must end
uploaded or dead-lettered with the reason `decode_item` gives it, and the process must never
crash. Records come from a seeded generator; a few records nested deeper than orjson encodes
(defect 1 of docs/reliability.md: they crash-looped the uploader until decode_item refused them)
are produced only once everything before them was committed, so that the corpus is accounted
for whatever they do."""

from __future__ import annotations

import collections
import json
import random
import time
import uuid
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import orjson
from confluent_kafka import Consumer, Producer, TopicPartition

from connector.kafka.admin import TopicSpec
from connector.kafka.produce import produce_when_room
from connector.simulator.process import start_simulator_process
from connector.toloka.models import FieldSpec
from connector.uploader.decode import Refusal, decode_item
from connector.validation import ItemValidator
from testkit.brokers import ControllableBroker
from testkit.kafka import headers_of, read_all
from testkit.processes import ConnectorProcess

MAX_RECORD_BYTES = 16 * 1024
PARTITIONS = 4
UPLOAD = "upload"
CRASH = "crash"
TEXT_MODERATION = ItemValidator(
    {"id": FieldSpec(type="string"), "text": FieldSpec(type="string", required=True)}
)


def _random_json(rng: random.Random, depth: int = 0) -> object:
    roll = rng.random()
    if depth > 3 or roll < 0.5:
        return rng.choice(
            [None, True, False, rng.randint(-(2**63), 2**63), rng.random() * 1e300, "",
             "é\u0000\u2028😀", "x" * rng.randint(0, 50), -0.0]
        )  # fmt: skip
    if roll < 0.75:
        return [_random_json(rng, depth + 1) for _ in range(rng.randint(0, 4))]
    return {f"k{n}": _random_json(rng, depth + 1) for n in range(rng.randint(0, 4))}


def hostile_record(seq: int, rng: random.Random) -> bytes | None:
    good = {"id": f"h-{seq}", "text": f"hostile {seq}"}
    kind = rng.randrange(20)
    if kind < 6:
        return orjson.dumps(good)
    if kind == 6:
        return rng.randbytes(rng.randint(0, 200))
    if kind == 7:
        data = bytearray(orjson.dumps(good))
        for _ in range(rng.randint(1, 3)):
            data[rng.randrange(len(data))] = rng.randrange(256)
        return bytes(data)
    if kind == 8:
        return b'{"id": "h-%d", "text": "\xc3\x28 \xed\xa0\x80"}' % seq
    if kind == 9:
        token = rng.choice([b"NaN", b"Infinity", b"-Infinity", b"1e400", b"1" * 500])
        return b'{"id": "h-%d", "text": "t", "score": %s}' % (seq, token)
    if kind == 10:
        space = b" " if rng.random() < 0.5 else b""
        return b'{"id":"h-%d",%s"text":"a","text":"b"}' % (seq, space)
    if kind == 11:
        wrong: object = rng.choice([1, 1.5, True, None, [], {}, ["t"]])
        return orjson.dumps({"id": f"h-{seq}", "text": wrong})
    if kind == 12:
        return orjson.dumps({"id": f"h-{seq}"})
    if kind == 13:
        return orjson.dumps(
            {**good, "text": "x" * rng.randint(MAX_RECORD_BYTES, 4 * MAX_RECORD_BYTES)}
        )
    if kind == 14:
        depth = rng.randint(1, 200)
        return b'{"id":"h-%d","text":"t","deep":%s%s}' % (seq, b"[" * depth, b"]" * depth)
    if kind == 15:
        return orjson.dumps({**good, "extra": _random_json(rng)})
    if kind == 16:
        return rng.choice([None, b"", b"null", b"[]", b'"text"', b"42", b"true", b" "])
    if kind == 17:
        return json.dumps({**good, "text": "é😀\u2028"}, ensure_ascii=rng.random() < 0.5,
                          indent=rng.choice([None, 2])).encode()  # fmt: skip
    if kind == 18:
        return orjson.dumps({**good, "id": rng.choice([7, None, ["x"], {"a": 1}])})
    return orjson.dumps(_random_json(rng))


def poison_record(seq: int) -> bytes:
    """Nested deeper than orjson encodes (255..1024 levels): `invalid_json` since the fix of
    defect 1 (before it, decode_item raised and the uploader crash-looped)."""
    return b'{"id":"h-%d","text":"t","deep":%s%s}' % (seq, b"[" * 300, b"]" * 300)


def expected(value: bytes | None) -> str:
    """What the uploader must do with `value`: UPLOAD, a dead-letter reason, or CRASH (a bug)."""
    try:
        decoded = decode_item(value, MAX_RECORD_BYTES, TEXT_MODERATION)
    except Exception:
        return CRASH
    return decoded.reason if isinstance(decoded, Refusal) else UPLOAD


@dataclass
class HostileOutcome:
    records: int
    expected: collections.Counter[str]
    uploaded: int
    dead_letters: collections.Counter[str]
    wrong_reasons: list[tuple[int, str, str]]
    missing: int
    repeated_dead_letters: int
    crashes: list[str]
    elapsed: float
    final_exit_code: int | None
    notes: list[str] = field(default_factory=list)

    def failures(self) -> list[str]:
        found = []
        if self.crashes:
            found.append(f"the uploader crashed {len(self.crashes)} times: {self.crashes[:3]}")
        if self.wrong_reasons:
            found.append(f"wrong dead-letter reasons: {self.wrong_reasons[:5]}")
        if self.missing:
            found.append(f"{self.missing} records neither uploaded nor dead-lettered")
        if self.uploaded < self.expected[UPLOAD] or (
            not self.crashes and self.uploaded != self.expected[UPLOAD]
        ):
            found.append(f"{self.uploaded} items created, {self.expected[UPLOAD]} expected")
        if self.final_exit_code not in (0, None):
            found.append(f"exit code {self.final_exit_code} after SIGTERM")
        return found


def _committed(bootstrap: str, group: str, topic: str) -> dict[int, int]:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group})
    try:
        found = consumer.committed([TopicPartition(topic, p) for p in range(PARTITIONS)], 10)
    except Exception:
        return {}
    finally:
        consumer.close()
    return {tp.partition: tp.offset for tp in found}


def run_hostile(
    broker: ControllableBroker,
    workdir: Path,
    *,
    count: int = 100_000,
    seed: int = 5,
    poison: int = 5,
    max_crashes: int = 4,
    timeout: float = 600.0,
) -> HostileOutcome:
    workdir.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)  # noqa: S311 - a reproducible corpus
    tag = f"hostile-{seed}-{uuid.uuid4().hex[:6]}"
    topic, dlq = f"{tag}-in", f"{tag}-dlq"
    broker.create_topics([TopicSpec(topic, partitions=PARTITIONS), TopicSpec(dlq, partitions=1)])
    values = [hostile_record(seq, rng) for seq in range(count - poison)]
    values += [poison_record(seq) for seq in range(count - poison, count)]
    want = {seq: expected(value) for seq, value in enumerate(values)}
    producer = Producer({"bootstrap.servers": broker.bootstrap_servers, "linger.ms": 20,
                         "enable.idempotence": True, "message.max.bytes": 2_000_000})  # fmt: skip

    def produce(first: int, last: int) -> dict[int, int]:
        for seq in range(first, last):
            produce_when_room(
                partial(producer.produce, topic, value=values[seq], partition=seq % PARTITIONS,
                        headers=[("seq", str(seq).encode())]),
                producer.poll,
                wait_seconds=0.1,
            )  # fmt: skip
            producer.poll(0)
        assert producer.flush(120) == 0
        return {p: len(range(p, last, PARTITIONS)) for p in range(PARTITIONS)}

    ends = produce(0, count - poison)
    poisoned = False

    sim = start_simulator_process(api_key=f"hostile-{seed}", project_id="hostile", seed=seed)
    group = f"{tag}-group"
    environ = {
        "TOLOKA_API_KEY": sim.api_key,
        "TOLOKA_BASE_URL": sim.base_url,
        "TOLOKA_APP_PROJECT_ID": sim.project_id,
        "KAFKA_BOOTSTRAP_SERVERS": broker.bootstrap_servers,
        "KAFKA_SESSION_TIMEOUT_MS": "6000",
        "CONNECTOR_INPUT_TOPIC": topic,
        "CONNECTOR_DLQ_TOPIC": dlq,
        "CONNECTOR_GROUP_ID": group,
        "CONNECTOR_MAX_RECORD_BYTES": str(MAX_RECORD_BYTES),
        "CONNECTOR_BATCH_MAX_ITEMS": "1000",
    }
    started = time.monotonic()
    crashes: list[str] = []
    runs = 0
    process = ConnectorProcess(["upload"], environ, workdir / "upload-0.log")
    final_exit: int | None = None
    try:
        deadline = time.monotonic() + timeout
        # A crash loop ends the wait too: the verdict then names what was left.
        while time.monotonic() < deadline and len(crashes) < max_crashes:
            if _committed(broker.bootstrap_servers, group, topic) == ends:
                if poisoned or not poison:
                    break
                ends = produce(count - poison, count)
                poisoned = True
            if not process.alive():
                tail = process.output().strip().splitlines()[-1:] or [""]
                crashes.append(f"exit {process.process.returncode}: {tail[0][:300]}")
                if len(crashes) >= max_crashes:
                    break
                runs += 1
                process = ConnectorProcess(["upload"], environ, workdir / f"upload-{runs}.log")
            time.sleep(0.5)  # between probes of the committed offsets
        if process.alive():
            final_exit = process.terminate()
    finally:
        if process.alive():
            process.kill()
    letters = read_all(broker.bootstrap_servers, dlq, timeout=120)
    stats = sim.stats()
    sim.stop()
    got: dict[int, str] = {}
    repeated = 0
    for letter in letters:
        headers = headers_of(letter)
        seq = int(headers["seq"])
        repeated += seq in got
        got[seq] = headers.get("error-reason", "")
    wrong = [(seq, want[seq], reason) for seq, reason in got.items() if want[seq] != reason]
    refusals = {seq for seq, what in want.items() if what not in (UPLOAD, CRASH)}
    return HostileOutcome(
        records=count,
        expected=collections.Counter(want.values()),
        uploaded=int(stats["items_created"]),
        dead_letters=collections.Counter(got.values()),
        wrong_reasons=wrong,
        missing=len(refusals - set(got)),
        repeated_dead_letters=repeated,
        crashes=crashes,
        elapsed=time.monotonic() - started,
        final_exit_code=final_exit,
    )
