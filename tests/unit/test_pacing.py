"""Pacing under a rate limit: the AIMD in-flight limit, the pause gate, the client that feeds
both from its answers (httpx.MockTransport, FakeClock: nothing sleeps), and the simulator's
token bucket on a fake clock."""

from __future__ import annotations

import random
import threading
from collections.abc import Iterator

import httpx
import orjson
import pytest
from prometheus_client import CollectorRegistry
from pydantic import SecretStr

from connector.errors import RateLimitedError
from connector.metrics import Metrics
from connector.simulator.knobs import Knobs
from connector.simulator.rate_limit import RateLimiter
from connector.toloka.client import TolokaClient
from connector.toloka.pacing import InFlightLimit, Pacing, PauseGate
from connector.toloka.retry import RetryPolicy
from testkit.clocks import FakeClock

LIMIT_GAUGE = "toloka_connector_upload_in_flight_limit"


def gauge(metrics: Metrics) -> float | None:
    return metrics.sample(LIMIT_GAUGE)


# --- the in-flight limit (AIMD) ----------------------------------------------------------------


def test_the_limit_starts_at_the_maximum_and_halves_on_each_429_down_to_one() -> None:
    metrics = Metrics(CollectorRegistry())
    limit = InFlightLimit(8, metrics)
    assert (limit.current, gauge(metrics)) == (8, 8)
    seen = []
    for _ in range(5):
        limit.throttled(limit.sent())
        seen.append(limit.current)
    assert seen == [4, 2, 1, 1, 1]
    assert gauge(metrics) == 1


def test_429s_of_requests_sent_before_a_decrease_do_not_halve_it_again() -> None:
    limit = InFlightLimit(16)
    generations = [limit.sent() for _ in range(6)]  # six requests in flight at once
    for generation in generations:  # all of them meet the same overload
        limit.throttled(generation)
    assert limit.current == 8
    limit.throttled(limit.sent())  # a request sent after the decrease: a new signal
    assert limit.current == 4


def test_the_limit_grows_by_one_per_two_rounds_of_successes_up_to_the_maximum() -> None:
    metrics = Metrics(CollectorRegistry())
    limit = InFlightLimit(6, metrics)
    limit.throttled(limit.sent())
    limit.throttled(limit.sent())
    assert limit.current == 1
    grown = []
    for _ in range(12):
        limit.succeeded()
        grown.append(limit.current)
    # Two successes at 1 → 2, four at 2 → 3 (the 6th), six at 3 → 4 (the 12th), …
    assert grown == [1, 2, 2, 2, 2, 3, 3, 3, 3, 3, 3, 4]
    for _ in range(100):
        limit.succeeded()
    assert (limit.current, gauge(metrics)) == (6, 6)


def test_the_limit_refuses_a_maximum_below_one() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        InFlightLimit(0)


# --- the pause gate ----------------------------------------------------------------------------


def test_an_open_gate_does_not_wait() -> None:
    clock = FakeClock()
    assert PauseGate(clock).wait(threading.Event())
    assert clock.waits == []


def test_a_paused_gate_holds_until_the_pause_ran_out() -> None:
    clock = FakeClock()
    gate = PauseGate(clock)
    gate.pause(3.0)
    gate.pause(1.0)  # a shorter pause does not shorten the running one
    assert gate.closed_for() == 3.0
    assert gate.wait(threading.Event())
    assert clock.waits == [3.0]
    assert gate.closed_for() == 0.0


def test_a_pause_that_grows_while_waiting_is_waited_out_too() -> None:
    clock = FakeClock()
    gate = PauseGate(clock)
    gate.pause(2.0)
    clock.on_wait = lambda: gate.pause(5.0) if len(clock.waits) == 1 else None
    assert gate.wait(threading.Event())
    # 5 s from the moment of the second 429 (the first wait's start): 3 s more after it.
    assert clock.waits == [2.0, 3.0]


def test_a_stop_ends_the_wait() -> None:
    clock = FakeClock()
    gate = PauseGate(clock)
    gate.pause(30.0)
    stop = threading.Event()
    clock.on_wait = stop.set
    assert not gate.wait(stop)
    assert not gate.wait(stop)  # stopped: no further wait either
    assert clock.waits == [30.0]


# --- the client feeds both -----------------------------------------------------------------------


class RateLimitedApi:
    """Answers the requests in `throttled` (by their order) 429, the rest 200; records the
    monotonic time each request left at."""

    def __init__(self, clock: FakeClock, throttled: set[int], retry_after: str | None) -> None:
        self.clock = clock
        self.throttled = throttled
        self.retry_after = retry_after
        self.sent_at: list[float] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.sent_at.append(self.clock.monotonic())
        if len(self.sent_at) - 1 in self.throttled:
            headers = {} if self.retry_after is None else {"Retry-After": self.retry_after}
            body = {"request_id": "r", "code": "TOO_MANY_REQUESTS", "message": "slow down"}
            return httpx.Response(429, content=orjson.dumps(body), headers=headers)
        return httpx.Response(200, content=orjson.dumps(["id-1"]))


@pytest.fixture
def clients() -> Iterator[list[TolokaClient]]:
    made: list[TolokaClient] = []
    yield made
    for client in made:
        client.close()


def paced_client(
    api: RateLimitedApi, pacing: Pacing, clients: list[TolokaClient], attempts: int = 1
) -> TolokaClient:
    client = TolokaClient(
        "https://toloka.test/api/app/v0", SecretStr("key"), "proj-1",
        retry=RetryPolicy(max_attempts=attempts, max_delay_seconds=20.0),
        transport=httpx.MockTransport(api), clock=api.clock, rng=random.Random(1),
        pacing=pacing,
    )  # fmt: skip
    clients.append(client)
    return client


def current_limit(pacing: Pacing) -> int:
    assert pacing.limit is not None
    return pacing.limit.current


def test_a_429_with_retry_after_holds_every_other_request_of_the_client(
    clients: list[TolokaClient],
) -> None:
    clock = FakeClock()
    api = RateLimitedApi(clock, throttled={0}, retry_after="5")
    pacing = Pacing.adaptive(4, clock)
    client = paced_client(api, pacing, clients)
    with pytest.raises(RateLimitedError):  # one attempt: the 429 reaches the caller
        client.bulk_create([{"text": "a"}])
    answered_at = clock.monotonic()
    # Another request of the same client (another batch's) waits the pause out before it leaves.
    assert client.bulk_create([{"text": "b"}]).ids == ["id-1"]
    assert api.sent_at[1] == answered_at + 5.0
    assert clock.waits == [5.0]
    assert current_limit(pacing) == 2


def test_the_request_that_got_the_429_retries_once_the_pause_ran_out(
    clients: list[TolokaClient],
) -> None:
    clock = FakeClock()
    api = RateLimitedApi(clock, throttled={0}, retry_after="3600")
    pacing = Pacing.adaptive(4, clock)
    client = paced_client(api, pacing, clients, attempts=2)
    assert client.bulk_create([{"text": "a"}]).ids == ["id-1"]
    # Both the retry's own delay and the pause are capped by the policy (20 s): one wait.
    assert api.sent_at[1] - api.sent_at[0] == 20.0
    assert clock.waits == [20.0]


def test_a_429_without_retry_after_shrinks_the_limit_but_pauses_nothing(
    clients: list[TolokaClient],
) -> None:
    clock = FakeClock()
    api = RateLimitedApi(clock, throttled={0}, retry_after=None)
    pacing = Pacing.adaptive(4, clock)
    client = paced_client(api, pacing, clients)
    with pytest.raises(RateLimitedError):
        client.bulk_create([{"text": "a"}])
    assert pacing.gate.closed_for() == 0.0
    client.bulk_create([{"text": "b"}])
    assert clock.waits == []
    assert current_limit(pacing) == 2


def test_successes_grow_the_limit_back(clients: list[TolokaClient]) -> None:
    clock = FakeClock()
    api = RateLimitedApi(clock, throttled={0, 1}, retry_after="1")
    pacing = Pacing.adaptive(4, clock)
    client = paced_client(api, pacing, clients)
    for text in "ab":
        with pytest.raises(RateLimitedError):
            client.bulk_create([{"text": text}])
    assert current_limit(pacing) == 1
    for _ in range(2 * (1 + 2 + 3)):  # two rounds at 1, at 2 and at 3
        client.bulk_create([{"text": "c"}])
    assert current_limit(pacing) == 4


def test_a_429_of_one_pipeline_holds_every_client_of_the_process(
    clients: list[TolokaClient],
) -> None:
    """One API key for every pipeline: another pipeline's uploader and the pollers (a pause
    without an in-flight limit) wait the Retry-After out too."""
    clock = FakeClock()
    api = RateLimitedApi(clock, throttled={0}, retry_after="5")
    first = Pacing.adaptive(4, clock)
    other = Pacing.adaptive(4, clock, gate=first.gate)
    listing = Pacing(first.gate)
    with pytest.raises(RateLimitedError):
        paced_client(api, first, clients).bulk_create([{"text": "a"}])
    answered_at = clock.monotonic()
    assert paced_client(api, other, clients).bulk_create([{"text": "b"}]).ids == ["id-1"]
    assert paced_client(api, listing, clients).bulk_create([{"text": "c"}]).ids == ["id-1"]
    assert api.sent_at[1:] == [answered_at + 5.0, answered_at + 5.0]
    assert (current_limit(first), current_limit(other)) == (2, 4), "each uploader its own limit"


# --- the simulator's token bucket ----------------------------------------------------------------


class Ticks:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_the_bucket_admits_its_burst_then_answers_retry_after_until_a_token_is_back() -> None:
    ticks = Ticks()
    limiter = RateLimiter(ticks)
    knobs = Knobs(rate_limit=2.0, rate_limit_burst=3)
    assert [limiter.admit(knobs) for _ in range(4)] == [None, None, None, 1]
    assert not limiter.in_retry_after()  # a request arriving now was on its way already
    ticks.now += 0.5  # one token back (2 per second)
    assert limiter.in_retry_after()
    assert limiter.admit(knobs) is None
    assert limiter.admit(knobs) == 1
    ticks.now += 1.0
    assert not limiter.in_retry_after()


def test_retry_after_is_the_whole_seconds_until_a_token_and_at_least_the_knob() -> None:
    ticks = Ticks()
    limiter = RateLimiter(ticks)
    slow = Knobs(rate_limit=0.25, rate_limit_burst=1)  # a token every 4 s
    assert limiter.admit(slow) is None
    assert limiter.admit(slow) == 4
    ticks.now += 4.0
    assert limiter.admit(slow) is None
    fast = Knobs(rate_limit=10.0, rate_limit_burst=1, retry_after=2)
    assert limiter.admit(fast) == 2


def test_without_a_rate_limit_every_request_passes() -> None:
    limiter = RateLimiter(Ticks())
    assert all(limiter.admit(Knobs()) is None for _ in range(1000))
