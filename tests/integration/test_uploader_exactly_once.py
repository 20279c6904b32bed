"""Exactly-once uploads (docs/exactly-once.md) against the session's broker and the simulator.

Each test makes the API or the process lose track of what was created (a lost answer, a SIGKILL
after the items were created and before the offsets were committed, a rebalance that abandons an
upload in flight, a listing that never answers) and counts the items per input in the API's own
listing. With `CONNECTOR_UPLOAD_RECONCILE=false` the first three create duplicates (the
at-least-once behaviour these tests were first run against).
"""

from __future__ import annotations

import signal
import subprocess
from collections import Counter
from collections.abc import Callable

import orjson
import pytest
from confluent_kafka import Producer

from testkit.brokers import ControllableBroker
from testkit.waiting import wait_for
from tests.fixtures.brokers import NewTopic, require
from tests.fixtures.simulator import SimulatorHandle
from tests.integration import test_uploader
from tests.integration.test_uploader import (
    PARTITIONS,
    InProcess,
    Pipeline,
    created_keys,
    end_offsets,
    good_keys,
)

pytestmark = pytest.mark.integration


@pytest.fixture
def pipeline(
    kafka_broker: ControllableBroker,
    simulator_factory: Callable[..., SimulatorHandle],
    new_topic: NewTopic,
) -> Pipeline:
    # A simulator of its own: the session's clock has been moved ahead by other tests, far past
    # any clock skew a reconciliation allows for (which is what these tests set on purpose).
    return Pipeline(kafka_broker, simulator_factory(), new_topic)


in_process = test_uploader.in_process
upload_process = test_uploader.upload_process


def reconciliations(uploader: InProcess, cause: str, outcome: str) -> float:
    return uploader.metrics.sample(
        "toloka_connector_reconciliations_total", {"cause": cause, "outcome": outcome}
    ) or 0.0  # fmt: skip


def reconciled(uploader: InProcess, result: str) -> float:
    return uploader.metrics.sample(
        "toloka_connector_reconciled_items_total", {"result": result}
    ) or 0.0  # fmt: skip


def lost_answers(simulator: SimulatorHandle) -> int:
    return int(simulator.stats()["requests_by_status"].get("reset", 0))


def test_the_normal_path_asks_the_api_nothing_more_than_the_bulk_requests(
    pipeline: Pipeline, in_process: Callable[[dict[str, str]], InProcess]
) -> None:
    count = 2000
    pipeline.produce(count)
    uploader = in_process(pipeline.environ(batch_max_items="100"))
    wait_for(lambda: pipeline.committed() == end_offsets(count), "offsets committed to the end")
    uploader.finish()

    routes = pipeline.simulator.stats()["requests_by_route"]
    assert set(routes) == {"get_project", "get_app", "bulk_create"}, routes
    assert set(created_keys(pipeline.simulator).values()) == {1}
    for cause in ("lost_answer", "takeover"):
        assert reconciliations(uploader, cause, "complete") == 0


def test_a_lost_answer_is_reconciled_and_only_what_is_missing_is_sent_again(
    pipeline: Pipeline, in_process: Callable[[dict[str, str]], InProcess]
) -> None:
    count = 2000
    # Items show in listings up to 1 s late: the first listing can miss them, the re-check not.
    pipeline.simulator.set_knobs(fault_scope="write", lost_response_ratio=0.3, listing_delay=1.0)
    pipeline.simulator.advance_clock(20)  # the API's clock is 20 s ahead: within the skew
    pipeline.produce(count)
    uploader = in_process(pipeline.environ(batch_max_items="100", reconcile_recheck_seconds="1.5",
                                          reconcile_clock_skew_seconds="30"))  # fmt: skip
    wait_for(lambda: pipeline.committed() == end_offsets(count), "offsets committed to the end")
    uploader.finish()
    pipeline.simulator.set_knobs(listing_delay=0.0)  # count every item

    created = created_keys(pipeline.simulator)
    assert set(created) == good_keys(count)
    assert set(created.values()) == {1}, "an item was created twice"
    assert lost_answers(pipeline.simulator) > 0  # the fault did happen
    complete = reconciliations(uploader, "lost_answer", "complete")
    assert complete == lost_answers(pipeline.simulator)
    assert reconciliations(uploader, "lost_answer", "failed") == 0
    # A lost answer of this simulator created its items: every one is found, none sent again.
    assert reconciled(uploader, "found") == pipeline.simulator.stats()["items_created"] - (
        uploader.sample("items_uploaded_total")
    )
    assert reconciled(uploader, "sent") == 0


def test_identical_inputs_stay_as_many_items_as_records_through_lost_answers(
    pipeline: Pipeline, in_process: Callable[[dict[str, str]], InProcess]
) -> None:
    values = [
        *[{"text": "the very same text"}] * 5,  # no key field: matched by the whole input
        *[{"id": "twice", "text": "keyed"}] * 2,  # one key, two records: two items
        *[{"id": f"unique-{n}", "text": "keyed"} for n in range(13)],
    ]
    producer = Producer({"bootstrap.servers": pipeline.broker.bootstrap_servers})
    for n, value in enumerate(values):
        producer.produce(pipeline.topic, orjson.dumps(value), partition=n % PARTITIONS)
    assert producer.flush(30) == 0
    # Every bulk answer is lost (the items are created): only reconciliation tells them apart.
    pipeline.simulator.set_knobs(fault_scope="write", lost_response_ratio=1.0)
    uploader = in_process(pipeline.environ(batch_max_items="20", linger_ms="500"))
    ends = Counter(n % PARTITIONS for n in range(len(values)))
    wait_for(lambda: pipeline.committed() == dict(ends), "offsets committed to the end")
    uploader.finish()

    with pipeline.simulator.client() as http:
        page = http.get(pipeline.simulator.items_url, params={"limit": "1000"}).json()
    inputs = Counter(orjson.dumps(item["input_data"], option=orjson.OPT_SORT_KEYS)
                     for item in page["content"])  # fmt: skip
    expected = Counter(orjson.dumps(value, option=orjson.OPT_SORT_KEYS) for value in values)
    assert inputs == expected
    assert reconciled(uploader, "found") == len(values)


def test_a_crash_after_the_items_were_created_and_before_the_commit_creates_nothing_twice(
    pipeline: Pipeline, upload_process: Callable[[dict[str, str]], subprocess.Popen[bytes]]
) -> None:
    require(pipeline.broker, "evicts_killed_members")
    count = 3000
    pipeline.produce(count)
    # No periodic commit: whatever the first process uploads is uncommitted when it is killed.
    environ = pipeline.environ(batch_max_items="100", commit_interval_ms="3600000")
    first = upload_process(environ)
    wait_for(lambda: pipeline.simulator.stats()["items_created"] >= 500, "uploads under way")
    first.send_signal(signal.SIGKILL)
    first.wait(30)
    created_at_kill = pipeline.simulator.stats()["items_created"]
    # Mostly only the intents at offset 0 are committed; a rebalance under load may commit what
    # was done by then. Either way, items created and not committed are what is tested.
    committed_at_kill = sum(max(offset, 0) for offset in pipeline.committed().values())
    assert created_at_kill > committed_at_kill, "nothing uncommitted at the kill: proves nothing"

    second = upload_process({**environ, "CONNECTOR_COMMIT_INTERVAL_MS": "100"})
    wait_for(lambda: pipeline.committed() == end_offsets(count), "offsets committed to the end")
    second.send_signal(signal.SIGTERM)
    assert second.wait(60) == 0

    created = created_keys(pipeline.simulator)
    assert set(created) == good_keys(count)
    assert set(created.values()) == {1}, "an item was created twice"


@pytest.mark.slow
def test_a_rebalance_that_abandons_an_upload_in_flight_hands_it_over_without_duplicates(
    pipeline: Pipeline, in_process: Callable[[dict[str, str]], InProcess]
) -> None:
    require(pipeline.broker, "cooperative_rebalancing")
    # Each bulk answer takes 2 s and a revoked partition is handed over at once (no drain):
    # the new owner gets partitions whose uploads are still in flight, and lists what they
    # created after the re-check delay. Small fetches mix the partitions in every batch.
    pipeline.simulator.set_knobs(latency=2.0)
    count = 2000
    pipeline.produce(count)
    environ = {
        **pipeline.environ(batch_max_items="50", max_in_flight="8", drain_timeout_seconds="0",
                           reconcile_recheck_seconds="3"),
        "KAFKA_MAX_PARTITION_FETCH_BYTES": "2000",
    }  # fmt: skip
    first = in_process(environ)
    wait_for(lambda: pipeline.simulator.stats()["items_created"] >= 200, "uploads under way")
    second = in_process(environ)
    wait_for(lambda: bool(second.role.assignment()), "the second uploader assigned")
    wait_for(lambda: pipeline.committed() == end_offsets(count), "offsets committed to the end")
    first.finish()
    second.finish()

    created = created_keys(pipeline.simulator)
    assert set(created) == good_keys(count)
    assert set(created.values()) == {1}, "an item was created twice"
    # The hand-over did find items the first uploader's abandoned uploads had created.
    handed_over = reconciliations(first, "takeover", "complete") + reconciliations(
        second, "takeover", "complete"
    )
    assert handed_over >= 1
    assert reconciled(first, "found") + reconciled(second, "found") > 0


def test_when_the_listing_never_answers_the_batch_is_sent_again_at_least_once_and_said_so(
    pipeline: Pipeline, in_process: Callable[[dict[str, str]], InProcess]
) -> None:
    count = 200
    uploader = in_process(pipeline.environ(
        batch_max_items="200", linger_ms="500", api_max_attempts="2",
        reconcile_timeout_seconds="1",
    ))  # fmt: skip
    wait_for(lambda: len(uploader.role.assignment()) == PARTITIONS, "the uploader assigned")
    # Every request, listings included, is applied and its answer lost.
    pipeline.simulator.set_knobs(fault_scope="all", lost_response_ratio=1.0)
    pipeline.produce(count)
    wait_for(lambda: reconciliations(uploader, "lost_answer", "failed") >= 2,
             "reconciliations that could not list")  # fmt: skip
    pipeline.simulator.set_knobs(lost_response_ratio=0.0)
    wait_for(lambda: pipeline.committed() == end_offsets(count), "offsets committed to the end")
    uploader.finish()

    created = created_keys(pipeline.simulator)
    assert set(created) == good_keys(count)  # nothing lost, nothing held forever
    # The fallback is at-least-once: the batch was sent again with no listing to go by.
    assert max(created.values()) >= 2
    assert uploader.sample("possible_duplicate_uploads_total") > 0
