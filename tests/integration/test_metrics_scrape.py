"""A running `toloka-connector run` after real traffic exports every metric family, with values
that match the traffic (records in, items up, dead letters, results out, transactions)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import orjson
import pytest
from confluent_kafka import Producer
from prometheus_client.parser import text_string_to_metric_families

from connector.devtools.processes import free_port
from testkit.brokers import ControllableBroker
from testkit.waiting import wait_for
from tests.fixtures.brokers import NewTopic, ReadTopic
from tests.fixtures.promtool import find_promtool, run_promtool
from tests.fixtures.simulator import SimulatorHandle

pytestmark = pytest.mark.integration

VALID = 150
MALFORMED = {
    b"{not json": "invalid_json",
    b"[1, 2]": "not_an_object",
    b'{"id": "x"}': "invalid_item",
}

FAMILIES = (
    "toloka_connector_build_info",
    "toloka_connector_records_consumed_total",
    "toloka_connector_items_uploaded_total",
    "toloka_connector_dead_letters_total",
    "toloka_connector_upload_batch_items",
    "toloka_connector_api_request_duration_seconds",
    "toloka_connector_api_retries_total",
    "toloka_connector_upload_requests_in_flight",
    "toloka_connector_upload_in_flight_limit",
    "toloka_connector_paused_partitions",
    "toloka_connector_consumer_lag_messages",
    "toloka_connector_results_published_total",
    "toloka_connector_transactions_total",
    "toloka_connector_poll_page_items",
    "toloka_connector_cursor_age_seconds",
    "toloka_connector_item_processing_seconds",
    "toloka_connector_end_to_end_seconds",
    "toloka_connector_poller_leader",
    "toloka_connector_items_outstanding",
    "toloka_connector_role_ready",
    "toloka_connector_loop_heartbeat_timestamp_seconds",
)


class Samples:
    def __init__(self, text: str) -> None:
        self.text = text
        self.families = {f.name: f for f in text_string_to_metric_families(text)}

    def value(self, sample: str, **labels: str) -> float:
        total = 0.0
        for family in self.families.values():
            for s in family.samples:
                if s.name == sample and all(s.labels.get(k) == v for k, v in labels.items()):
                    total += s.value
        return total

    def has_family(self, name: str) -> bool:
        # The parser names counters without `_total` and infos without `_info`.
        bare = name.removesuffix("_total").removesuffix("_info")
        return name in self.families or bare in self.families


@pytest.fixture
def running_connector(
    kafka_broker: ControllableBroker,
    new_topic: NewTopic,
    simulator: SimulatorHandle,
    tmp_path: Path,
) -> Iterator[tuple[str, dict[str, str]]]:
    port = free_port()
    topics = {
        "CONNECTOR_INPUT_TOPIC": new_topic(3),
        "CONNECTOR_OUTPUT_TOPIC": new_topic(3),
        "CONNECTOR_DLQ_TOPIC": new_topic(1),
        "CONNECTOR_STATE_TOPIC": new_topic(1, compacted=True),
    }
    env = {
        **os.environ,
        **topics,
        "TOLOKA_API_KEY": simulator.api_key,
        "TOLOKA_BASE_URL": simulator.base_url,
        "TOLOKA_APP_PROJECT_ID": simulator.project_id,
        "KAFKA_BOOTSTRAP_SERVERS": kafka_broker.bootstrap_servers,
        "CONNECTOR_GROUP_ID": f"scrape-{port}",
        "CONNECTOR_METRICS_PORT": str(port),
        "CONNECTOR_POLL_INTERVAL_SECONDS": "0.2",
        "CONNECTOR_IDLE_POLL_INTERVAL_SECONDS": "0.3",
        "KAFKA_STATISTICS_INTERVAL_MS": "500",
    }
    log = (tmp_path / "connector.log").open("w")
    process = subprocess.Popen(
        [sys.executable, "-m", "connector", "run"], env=env, stdout=log, stderr=log
    )
    try:
        yield f"http://127.0.0.1:{port}", topics
    finally:
        process.terminate()
        assert process.wait(60) == 0, (tmp_path / "connector.log").read_text()[-3000:]
        log.close()


def test_every_family_after_real_traffic(
    running_connector: tuple[str, dict[str, str]],
    kafka_broker: ControllableBroker,
    read_topic: ReadTopic,
    simulator: SimulatorHandle,
) -> None:
    url, topics = running_connector
    simulator.set_knobs(processing_delay=0.2)
    producer = Producer({"bootstrap.servers": kafka_broker.bootstrap_servers})
    for number in range(VALID):
        item = {"id": f"scrape-{number}", "text": f"text number {number}"}
        producer.produce(topics["CONNECTOR_INPUT_TOPIC"], orjson.dumps(item), f"k{number}")
    for value in MALFORMED:
        producer.produce(topics["CONNECTOR_INPUT_TOPIC"], value)
    assert producer.flush(30) == 0

    def scrape() -> Samples:
        return Samples(httpx.get(f"{url}/metrics", timeout=10).text)

    def settled() -> bool:
        try:
            samples = scrape()
        except httpx.TransportError:
            return False  # the server is not up yet
        published = samples.value("toloka_connector_results_published_total")
        return published == VALID and samples.value("toloka_connector_dead_letters_total") == 3

    wait_for(settled, "every result published and every malformed record dead-lettered", 120)
    outputs = read_topic(topics["CONNECTOR_OUTPUT_TOPIC"])
    assert len(outputs) == VALID

    samples = scrape()
    missing = [name for name in FAMILIES if not samples.has_family(name)]
    assert not missing
    assert samples.value("toloka_connector_records_consumed_total") == VALID + len(MALFORMED)
    assert samples.value("toloka_connector_items_uploaded_total") == VALID
    for reason in MALFORMED.values():
        assert samples.value("toloka_connector_dead_letters_total", reason=reason) == 1
    assert samples.value("toloka_connector_upload_batch_items_sum") == VALID
    assert samples.value(
        "toloka_connector_api_request_duration_seconds_count",
        operation="bulk_create", status_class="2xx",
    ) >= 1  # fmt: skip
    assert samples.value(
        "toloka_connector_api_request_duration_seconds_count",
        operation="list_items", status_class="2xx",
    ) >= 1  # fmt: skip
    assert samples.value("toloka_connector_transactions_total", outcome="committed") >= 1
    assert samples.value("toloka_connector_transactions_total", outcome="aborted") == 0
    assert samples.value("toloka_connector_poll_page_items_sum") >= VALID
    assert samples.value("toloka_connector_item_processing_seconds_count") == VALID
    assert samples.value("toloka_connector_end_to_end_seconds_count") == VALID
    assert samples.value("toloka_connector_items_outstanding") == 0
    assert samples.value("toloka_connector_poller_leader") == 1
    assert samples.value("toloka_connector_role_ready", role="uploader") == 1
    assert samples.value("toloka_connector_role_ready", role="poller") == 1
    assert 0 <= samples.value("toloka_connector_cursor_age_seconds") < 600
    assert samples.value("toloka_connector_upload_requests_in_flight") == 0
    # No 429 in this run: the uploader keeps CONNECTOR_MAX_IN_FLIGHT (4 by default) in flight.
    assert samples.value("toloka_connector_upload_in_flight_limit") == 4
    wait_for(
        lambda: any(
            s.labels.get("topic") == topics["CONNECTOR_INPUT_TOPIC"]
            for s in scrape().families["toloka_connector_consumer_lag_messages"].samples
        ),
        "consumer lag from librdkafka statistics",
        30,
    )
    lag = scrape().families["toloka_connector_consumer_lag_messages"].samples
    assert all(0 <= s.value <= VALID + len(MALFORMED) for s in lag)
    assert simulator.api_key not in samples.text
    if find_promtool() is not None:  # the exposition checks live in test_health without it
        run_promtool("check", "metrics", stdin=samples.text.encode())
