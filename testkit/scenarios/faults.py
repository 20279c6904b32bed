"""The faults a chaos run injects: phases of the simulator's API fault knobs, and broker faults
(real Kafka: its process paused, stopped or killed; the mock cluster: request errors, a broker
down, a slow broker), each with its recovery."""

from __future__ import annotations

import random
from typing import Any

from confluent_kafka import KafkaError

from testkit.brokers import ApiKey, ControllableBroker
from testkit.scenarios.setup import API_MAX_RESPONSE_BYTES

# name -> simulator knobs while the phase lasts (every other fault knob is 0 meanwhile)
API_FAULT_PHASES: dict[str, dict[str, Any]] = {
    "429 storm (Retry-After 1)": {"http_429_ratio": 0.6, "retry_after": 1},
    "5xx (500, 503)": {"http_500_ratio": 0.15, "http_503_ratio": 0.15},
    "HTML 502": {"http_502_ratio": 0.3},
    "latency spike (1-2.5 s)": {"latency": 1.0, "latency_jitter": 1.5},
    "connection resets": {"reset_ratio": 0.2},
    "lost responses": {"lost_response_ratio": 0.15},
    # Answers that are not the API's: never followed or read, never taken as a success.
    "redirects (307)": {"redirect_ratio": 0.3, "redirect_status": 307},
    "oversized error pages (502)": {
        "oversized_page_ratio": 0.3,
        "oversized_page_status": 502,
        "oversized_page_bytes": 2 * API_MAX_RESPONSE_BYTES,
    },
}
CALM_KNOBS: dict[str, Any] = {
    "http_429_ratio": 0.0,
    "http_500_ratio": 0.0,
    "http_502_ratio": 0.0,
    "http_503_ratio": 0.0,
    "reset_ratio": 0.0,
    "lost_response_ratio": 0.0,
    "redirect_ratio": 0.0,
    "oversized_page_ratio": 0.0,
    "latency": 0.0,
    "latency_jitter": 0.0,
}
# Mock-cluster request errors: retriable codes a real cluster sends during leader moves,
# coordinator moves and load.
MOCK_REQUEST_ERRORS: dict[ApiKey, list[int]] = {
    ApiKey.PRODUCE: [KafkaError.NOT_LEADER_FOR_PARTITION, KafkaError.REQUEST_TIMED_OUT] * 2,
    ApiKey.FETCH: [KafkaError.NOT_LEADER_FOR_PARTITION] * 3,
    ApiKey.OFFSET_COMMIT: [KafkaError.COORDINATOR_NOT_AVAILABLE, KafkaError.NOT_COORDINATOR] * 2,
    ApiKey.FIND_COORDINATOR: [KafkaError.COORDINATOR_NOT_AVAILABLE] * 3,
    ApiKey.END_TXN: [KafkaError.NOT_COORDINATOR, KafkaError.CONCURRENT_TRANSACTIONS],
}


def broker_fault(broker: ControllableBroker, what: str, rng: random.Random) -> None:
    if what == "pause":
        broker.pause()
    elif what == "stop":
        broker.stop()
    elif what == "sigkill":
        broker.kill()
    elif what == "request_errors":
        for api_key, codes in MOCK_REQUEST_ERRORS.items():
            broker.push_request_errors(api_key, codes)
    elif what == "down_up":
        broker.broker_down(rng.choice([1, 2, 3]))
    elif what == "rtt":
        broker.set_rtt(rng.choice([1, 2, 3]), 800)
    else:
        raise ValueError(f"unknown broker fault {what!r}")


def broker_recover(broker: ControllableBroker, what: str) -> None:
    if what == "pause":
        broker.resume()
    elif what in {"stop", "sigkill"}:
        broker.restart()
    elif what == "down_up":
        for broker_id in (1, 2, 3):
            broker.broker_up(broker_id)
    elif what == "rtt":
        for broker_id in (1, 2, 3):
            broker.set_rtt(broker_id, 0)
    # request errors are consumed by the requests they fail
