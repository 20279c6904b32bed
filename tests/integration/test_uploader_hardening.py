"""The uploader against answers, sizes and broker faults of the real world, on the session's
broker and the simulator over TCP (real clients only).

- an answer that lists no created items (a redirect, an oversized page, whatever its status)
  never lets an offset pass an item that does not exist;
- a `too_large` dead letter keeps its value whole, and `replay-dlq --reason too_large` puts it
  through once the limit is raised;
- dead letters the broker never acknowledges (a record the topic refuses, a missing topic) pause
  the partitions holding them beyond a bound and stop the uploader after a deadline, with one
  line naming the cause;
- a full local producer queue means "poll and retry", never a crash;
- a clean stop (SIGINT) commits everything uploaded or dead-lettered: a restart writes no dead
  letter twice.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pytest
from confluent_kafka import Producer

from connector.kafka.admin import TopicSpec
from testkit.kafka import headers_of, unique_name
from testkit.waiting import wait_for
from tests.fixtures.brokers import ReadTopic, require
from tests.integration import test_uploader
from tests.integration.test_uploader import (
    BAD_KINDS,
    PARTITIONS,
    InProcess,
    Pipeline,
    created_keys,
    end_offsets,
    good_keys,
)

pytestmark = pytest.mark.integration

# The uploader tests' fixtures, under their own names so that tests ask for them as usual.
pipeline = test_uploader.pipeline
in_process = test_uploader.in_process
upload_process = test_uploader.upload_process
StartProcess = Callable[[dict[str, str]], subprocess.Popen[bytes]]

StartUploader = Callable[[dict[str, str]], InProcess]


def assert_no_offset_passes_a_missing_item(pipeline: Pipeline, count: int) -> None:
    """Every good record below its partition's committed offset has its item in Toloka."""
    committed = pipeline.committed()
    created = set(created_keys(pipeline.simulator))
    good = good_keys(count)
    passed = {f"item-{i}" for i in range(count)
              if i // PARTITIONS < committed.get(i % PARTITIONS, 0)}  # fmt: skip
    assert (passed & good) <= created, f"offsets {committed} pass items never created"


def faulted_requests(pipeline: Pipeline, status: int) -> int:
    return int(pipeline.simulator.stats()["requests_by_status"].get(str(status), 0))


@pytest.mark.parametrize(
    "fault",
    [
        {"redirect_ratio": 1.0, "redirect_status": 302},
        {"redirect_ratio": 1.0, "redirect_status": 308},
        {"oversized_page_ratio": 1.0, "oversized_page_status": 502},
        {"oversized_page_ratio": 1.0, "oversized_page_status": 200},
    ],
    ids=["redirect-302", "redirect-308", "oversized-502", "oversized-200"],
)
def test_an_answer_listing_no_created_items_never_lets_offsets_pass_them(
    pipeline: Pipeline, in_process: StartUploader, fault: dict[str, Any]
) -> None:
    status = fault.get("redirect_status") or fault["oversized_page_status"]
    pipeline.simulator.set_knobs(fault_scope="write", oversized_page_bytes=256 * 1024, **fault)
    count = 400
    pipeline.produce(count)
    # Below the fault's 256 KiB pages and above a listing of every item of the test (about
    # 140 KB): at 64 KiB the reconciliations of the lost answers, listing once the fault ended,
    # failed on the items' own listing until their 60 s timeout.
    uploader = in_process(pipeline.environ(batch_max_items="50",
                                           api_max_response_bytes="200000"))  # fmt: skip
    wait_for(lambda: faulted_requests(pipeline, status) >= 3, "bulk requests answered by the fault")
    wait_for(lambda: not uploader.role.readiness().ready, "the uploader reporting the failure",
             timeout=20)  # fmt: skip
    assert uploader.sample("items_uploaded_total") == 0
    assert_no_offset_passes_a_missing_item(pipeline, count)

    pipeline.simulator.set_knobs(redirect_ratio=0.0, oversized_page_ratio=0.0)
    wait_for(lambda: pipeline.committed() == end_offsets(count), "offsets committed to the end")
    uploader.finish()
    created = created_keys(pipeline.simulator)
    assert set(created) == good_keys(count)
    assert set(created.values()) == {1}, "an item not applied was created twice"
    assert uploader.sample("items_uploaded_total") == len(good_keys(count))


START_UP_FAULTS: dict[str, dict[str, Any]] = {
    "redirect-307": {"redirect_ratio": 1.0, "redirect_status": 307},
    "oversized-502": {"oversized_page_ratio": 1.0, "oversized_page_status": 502},
    # A proxy's page with a success status: too large to read, or small HTML that is not JSON.
    "oversized-200": {"oversized_page_ratio": 1.0, "oversized_page_status": 200},
    "html-200": {"oversized_page_ratio": 1.0, "oversized_page_status": 200,
                 "oversized_page_bytes": 2048},
    # A 4xx that says nothing about the key or the project (a proxy's own refusal).
    "html-400": {"oversized_page_ratio": 1.0, "oversized_page_status": 400,
                 "oversized_page_bytes": 2048},
    "oversized-409": {"oversized_page_ratio": 1.0, "oversized_page_status": 409},
}  # fmt: skip
"""Answers to the start-up reads that say nothing about the key or the project: waited out
(only 401, 403 and 404 are fatal at start-up)."""


def start_up_fault(name: str) -> tuple[dict[str, Any], int]:
    """The knobs of START_UP_FAULTS[name] (oversized pages of 256 KiB unless it says) and the
    status its answers carry."""
    fault = {"oversized_page_bytes": 256 * 1024, **START_UP_FAULTS[name]}
    return fault, fault.get("redirect_status") or fault["oversized_page_status"]


@pytest.mark.parametrize("fault_name", START_UP_FAULTS)
def test_a_proxy_answering_the_start_up_reads_is_waited_out(
    pipeline: Pipeline, in_process: StartUploader, fault_name: str
) -> None:
    fault, status = start_up_fault(fault_name)
    pipeline.simulator.set_knobs(fault_scope="read", **fault)
    uploader = in_process(pipeline.environ(api_max_response_bytes="65536",
                                           api_backoff_cap_seconds="0.2"))  # fmt: skip
    wait_for(lambda: f"HTTP {status}" in uploader.role.readiness().detail
             or not uploader.thread.is_alive(),
             "readiness naming the answer waited out")  # fmt: skip
    assert uploader.failure is None, f"the uploader gave up at start: {uploader.failure}"
    readiness = uploader.role.readiness()
    assert not readiness.ready
    assert "input_spec" in readiness.detail
    pipeline.simulator.set_knobs(redirect_ratio=0.0, oversized_page_ratio=0.0)
    count = 100
    pipeline.produce(count)
    wait_for(lambda: pipeline.committed() == end_offsets(count), "offsets committed to the end")
    uploader.finish()
    assert set(created_keys(pipeline.simulator)) == good_keys(count)


# --- too_large dead letters keep their value, and replay once the limit is raised -------------

DEFAULT_RECORD_LIMIT = 1_000_000
"""CONNECTOR_MAX_RECORD_BYTES's default, equal to librdkafka's default message.max.bytes."""


def test_a_too_large_record_is_dead_lettered_whole_and_replays_once_the_limit_is_raised(
    pipeline: Pipeline, in_process: StartUploader, read_topic: ReadTopic, tmp_path: Path
) -> None:
    # Above the default record limit, below what a default topic accepts (1,048,588 bytes).
    big = orjson.dumps({"id": "big", "text": "x" * 1_040_000})
    producer = Producer({"bootstrap.servers": pipeline.broker.bootstrap_servers,
                         "message.max.bytes": 2_000_000})  # fmt: skip
    producer.produce(pipeline.topic, value=big, key=b"big", partition=0)
    producer.produce(pipeline.topic, value=orjson.dumps({"id": "after", "text": "t"}), partition=0)
    assert producer.flush(30) == 0
    environ = pipeline.environ()
    del environ["CONNECTOR_MAX_RECORD_BYTES"]  # the default
    first = in_process(environ)
    wait_for(lambda: pipeline.committed().get(0) == 2, "both records done")
    first.finish()
    (letter,) = read_topic(pipeline.dlq)
    assert headers_of(letter)["error-reason"] == "too_large"
    assert letter.value() == big, "the dead letter lost the value"

    replay = subprocess.run(
        [sys.executable, "-m", "connector", "replay-dlq", "--reason", "too_large"],
        env={**os.environ, **environ}, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert replay.returncode == 0, replay.stdout + replay.stderr
    assert "replayed 1 record" in replay.stdout
    second = in_process({**environ, "CONNECTOR_MAX_RECORD_BYTES": str(2 * DEFAULT_RECORD_LIMIT)})
    wait_for(lambda: pipeline.simulator.creates("big") == 1, "the replayed record uploaded")
    # The replayed record is placed by its key, on whichever partition that names.
    wait_for(lambda: sum(max(at, 0) for at in pipeline.committed().values()) == 3,
             "the replayed record committed")  # fmt: skip
    second.finish()
    assert len(read_topic(pipeline.dlq)) == 1, "the replayed record was dead-lettered again"


# --- dead letters the broker never acknowledges ----------------------------------------------

DLQ_TIMEOUT_SECONDS = 6
MAX_PENDING_BYTES = 16 * 1024
BAD_RECORD = b"{" * 3000  # invalid JSON, larger than the refusing topic below accepts


def produce_values(bootstrap: str, topic: str, values: list[tuple[int, bytes]]) -> None:
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 20})
    for partition, value in values:
        producer.produce(topic, value=value, partition=partition)
        producer.poll(0)
    assert producer.flush(30) == 0


@pytest.mark.parametrize(
    "cause", ["the topic refuses them", "the topic refuses them, the queue is full",
              "the topic is missing"],
)  # fmt: skip
def test_unacknowledged_dead_letters_pause_their_partitions_then_stop_the_uploader(
    pipeline: Pipeline, in_process: StartUploader, cause: str
) -> None:
    if cause.startswith("the topic refuses them"):
        # A topic's max.message.bytes comes with CreateTopics; the mock cluster ignores it.
        require(pipeline.broker, "admin_create_topics")
        pipeline.dlq = unique_name("refusing-dlq")
        pipeline.broker.create_topics(
            [TopicSpec(pipeline.dlq, config={"max.message.bytes": "1024"})]
        )
        # A full queue: the producer then refuses new records until reports are served.
        kafka = {"KAFKA_QUEUE_BUFFERING_MAX_MESSAGES": "1"} if "full" in cause else {}
    else:
        pipeline.dlq = unique_name("missing-dlq")
        kafka = {"KAFKA_ALLOW_AUTO_CREATE_TOPICS": "false",
                 "KAFKA_TOPIC_METADATA_PROPAGATION_MAX_MS": "1000"}  # fmt: skip
    bad = 3000
    good = [orjson.dumps({"id": f"good-{n}", "text": "t"}) for n in range(300)]
    # Partition 0 holds only bad records; the others only good ones.
    values = [(0, BAD_RECORD)] * bad + [(1 + n % 3, value) for n, value in enumerate(good)]
    produce_values(pipeline.broker.bootstrap_servers, pipeline.topic, values)
    uploader = in_process({
        **pipeline.environ(dlq_max_pending_bytes=str(MAX_PENDING_BYTES),
                           dlq_timeout_seconds=str(DLQ_TIMEOUT_SECONDS)),
        **kafka,
    })  # fmt: skip
    wait_for(lambda: pipeline.simulator.stats()["items_created"] == len(good),
             "the good records of the other partitions uploaded")  # fmt: skip
    wait_for(
        lambda: (
            (
                uploader.sample("paused_partitions") >= 1
                and uploader.sample("dead_letter_delivery_failures_total") >= 1
                # The pause and the readiness are updated at different points of a loop step
                # (seen: a look between them found the role still ready).
                and not uploader.role.readiness().ready
            )
            or uploader.failure is not None
        ),
        "the partition with unacknowledged dead letters paused",
    )
    assert uploader.failure is None, f"the uploader failed before its deadline: {uploader.failure}"
    readiness = uploader.role.readiness()
    assert not readiness.ready
    assert "dead letter" in readiness.detail
    uploader.thread.join(DLQ_TIMEOUT_SECONDS + 30)
    assert not uploader.thread.is_alive(), "the uploader went on past the deadline"
    failure = str(uploader.failure)
    assert "\n" not in failure
    assert pipeline.dlq in failure
    assert "CONNECTOR_DLQ_TIMEOUT_SECONDS" in failure
    # Bounded: the paused partition stopped being read long before its 3,000 records.
    consumed = uploader.sample("records_consumed_total")
    assert consumed < len(good) + bad / 2, f"{consumed} records read"
    committed = pipeline.committed()
    assert committed[0] < 0, "an offset passed an unacknowledged dead letter"
    assert {p: committed.get(p) for p in (1, 2, 3)} == {p: 100 for p in (1, 2, 3)}


# --- a full local producer queue ------------------------------------------------------------


def test_a_full_producer_queue_is_waited_out_and_loses_nothing(
    pipeline: Pipeline, in_process: StartUploader, read_topic: ReadTopic
) -> None:
    count = 1000  # 80 dead letters through a queue of 2
    pipeline.produce(count)
    uploader = in_process({**pipeline.environ(batch_max_items="100"),
                           "KAFKA_QUEUE_BUFFERING_MAX_MESSAGES": "2"})  # fmt: skip
    wait_for(lambda: pipeline.committed() == end_offsets(count), "offsets committed to the end")
    uploader.finish()
    assert set(created_keys(pipeline.simulator)) == good_keys(count)
    letters = Counter(headers_of(letter)["seq"] for letter in read_topic(pipeline.dlq))
    assert set(letters) == {str(i) for i in range(count) if i % 50 in BAD_KINDS}
    assert set(letters.values()) == {1}


# --- a clean stop commits what it did: nothing is written twice after a restart ---------------


def test_after_sigint_and_restart_no_dead_letter_is_written_twice(
    pipeline: Pipeline, upload_process: StartProcess, read_topic: ReadTopic
) -> None:
    count = 6000
    pipeline.simulator.set_knobs(latency=0.05)
    pipeline.produce(count)
    environ = pipeline.environ(batch_max_items="50", linger_ms="200")
    first = upload_process(environ)
    wait_for(lambda: pipeline.simulator.stats()["items_created"] >= 1000, "uploads under way")
    first.send_signal(signal.SIGINT)
    assert first.wait(60) == 0
    stopped_at = pipeline.committed()
    assert sum(stopped_at.values()) < count, "the first run finished everything: no restart"

    second = upload_process(environ)
    wait_for(lambda: pipeline.committed() == end_offsets(count), "offsets committed to the end")
    second.send_signal(signal.SIGINT)
    assert second.wait(60) == 0
    letters = Counter(
        (int(headers["source-partition"]), int(headers["source-offset"]))
        for headers in map(headers_of, read_topic(pipeline.dlq))
    )
    expected = {(i % PARTITIONS, i // PARTITIONS) for i in range(count) if i % 50 in BAD_KINDS}
    assert set(letters) == expected
    twice = sorted(source for source, n in letters.items() if n > 1)
    assert not twice, f"{len(twice)} of {len(letters)} dead letters written twice: {twice[:5]}"
    created = created_keys(pipeline.simulator)
    assert set(created) == good_keys(count)
    assert set(created.values()) == {1}, "a clean stop left an upload to be repeated"
