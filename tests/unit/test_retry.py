"""Retry policy, Retry-After parsing and the retry loop, on a fake clock (nothing really sleeps)."""

from __future__ import annotations

import email.utils
import random
import threading

import pytest
from hypothesis import given
from hypothesis import strategies as st

from connector.errors import NotFoundError, ServerError
from connector.toloka.retry import RetryPolicy, call_with_retries, parse_retry_after
from testkit.clocks import WALL_START, FakeClock

# --- Retry-After -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("header", "expected"),
    [("7", 7.0), (" 2.5 ", 2.5), ("0", 0.0), ("-3", 0.0)],
)
def test_retry_after_delta_seconds(header: str, expected: float) -> None:
    assert parse_retry_after(header, WALL_START) == expected


def test_retry_after_http_date_is_relative_to_now() -> None:
    header = email.utils.formatdate(WALL_START + 12, usegmt=True)
    assert parse_retry_after(header, WALL_START) == pytest.approx(12.0)


def test_retry_after_http_date_in_the_past_means_now() -> None:
    header = email.utils.formatdate(WALL_START - 60, usegmt=True)
    assert parse_retry_after(header, WALL_START) == 0.0


@pytest.mark.parametrize("header", [None, "", "soon", "nan", "inf", "Wed, 99 Foo 2015"])
def test_retry_after_absent_or_unreadable_is_none(header: str | None) -> None:
    assert parse_retry_after(header, WALL_START) is None


# --- backoff -------------------------------------------------------------------------------------


def test_envelope_doubles_up_to_the_cap() -> None:
    policy = RetryPolicy(base_delay_seconds=0.5, max_delay_seconds=5.0)
    envelopes = [policy.backoff_envelope(n) for n in range(1, 7)]
    assert envelopes == [0.5, 1.0, 2.0, 4.0, 5.0, 5.0]


def test_envelope_of_a_retry_after_days_does_not_overflow() -> None:
    policy = RetryPolicy(max_attempts=None, max_delay_seconds=30.0)
    assert policy.backoff_envelope(10**6) == 30.0


@given(seed=st.integers(), retry_number=st.integers(min_value=1, max_value=200))
def test_full_jitter_stays_inside_the_envelope(seed: int, retry_number: int) -> None:
    policy = RetryPolicy(base_delay_seconds=0.25, max_delay_seconds=20.0)
    delay = policy.delay_before_retry(retry_number, None, random.Random(seed))
    assert 0.0 <= delay <= policy.backoff_envelope(retry_number)


def test_full_jitter_spreads_over_the_whole_envelope() -> None:
    policy = RetryPolicy(base_delay_seconds=1.0, max_delay_seconds=100.0)
    rng = random.Random(42)
    delays = [policy.delay_before_retry(4, None, rng) for _ in range(500)]
    envelope = policy.backoff_envelope(4)
    assert min(delays) < envelope * 0.1
    assert max(delays) > envelope * 0.9
    assert len(set(delays)) == len(delays)


def test_retry_after_replaces_jitter_but_not_the_cap() -> None:
    policy = RetryPolicy(base_delay_seconds=1.0, max_delay_seconds=10.0)
    rng = random.Random(1)
    assert policy.delay_before_retry(1, 7.0, rng) == 7.0
    assert policy.delay_before_retry(1, 3600.0, rng) == 10.0


# --- budget --------------------------------------------------------------------------------------


def test_attempt_budget_counts_the_first_try() -> None:
    policy = RetryPolicy(max_attempts=3)
    assert policy.permits_retry(attempts_made=2, elapsed_at_next_attempt=0.0)
    assert not policy.permits_retry(attempts_made=3, elapsed_at_next_attempt=0.0)


def test_time_budget_bounds_the_start_of_the_next_attempt() -> None:
    policy = RetryPolicy(max_attempts=None, max_elapsed_seconds=10.0)
    assert policy.permits_retry(attempts_made=50, elapsed_at_next_attempt=10.0)
    assert not policy.permits_retry(attempts_made=1, elapsed_at_next_attempt=10.5)


def test_unbounded_policy_always_permits_a_retry() -> None:
    policy = RetryPolicy(max_attempts=None)
    assert policy.permits_retry(attempts_made=10**9, elapsed_at_next_attempt=1e9)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"max_attempts": 0},
        {"max_elapsed_seconds": -1.0},
        {"base_delay_seconds": -0.1},
        {"base_delay_seconds": 5.0, "max_delay_seconds": 1.0},
    ],
)
def test_nonsense_policies_are_refused(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        RetryPolicy(**kwargs)  # type: ignore[arg-type]


# --- the loop ------------------------------------------------------------------------------------


class FlakyCall:
    """Fails with the given errors in turn, then returns "done"."""

    def __init__(self, *errors: Exception) -> None:
        self.errors = list(errors)
        self.calls = 0

    def __call__(self) -> str:
        self.calls += 1
        if self.errors:
            raise self.errors.pop(0)
        return "done"


def run(call: FlakyCall, policy: RetryPolicy, clock: FakeClock, stop: threading.Event) -> str:
    retries: list[tuple[int, float]] = []
    result = call_with_retries(
        call,
        policy=policy,
        clock=clock,
        rng=random.Random(3),
        stop=stop,
        on_retry=lambda _error, attempt, delay: retries.append((attempt, delay)),
    )
    assert [delay for _, delay in retries] == clock.waits
    assert [attempt for attempt, _ in retries] == list(range(1, len(retries) + 1))
    return result


def test_loop_retries_retryable_errors_until_success() -> None:
    clock = FakeClock()
    call = FlakyCall(ServerError("a", status=503), ServerError("b", status=500))
    assert run(call, RetryPolicy(max_attempts=3), clock, threading.Event()) == "done"
    assert call.calls == 3
    assert len(clock.waits) == 2


def test_loop_raises_the_last_error_when_attempts_run_out() -> None:
    clock = FakeClock()
    errors = [ServerError(f"failure {n}", status=503) for n in range(5)]
    call = FlakyCall(*errors)
    with pytest.raises(ServerError) as raised:
        run(call, RetryPolicy(max_attempts=3), clock, threading.Event())
    assert raised.value is errors[2]
    assert call.calls == 3


def test_loop_does_not_retry_fatal_errors() -> None:
    clock = FakeClock()
    call = FlakyCall(NotFoundError("gone", status=404))
    with pytest.raises(NotFoundError):
        run(call, RetryPolicy(max_attempts=5), clock, threading.Event())
    assert call.calls == 1
    assert clock.waits == []


def test_loop_gives_up_when_the_next_attempt_would_start_past_the_time_budget() -> None:
    clock = FakeClock()
    call = FlakyCall(*[ServerError("busy", status=503, retry_after=3.0) for _ in range(10)])
    policy = RetryPolicy(max_attempts=None, max_elapsed_seconds=10.0, max_delay_seconds=30.0)
    with pytest.raises(ServerError):
        run(call, policy, clock, threading.Event())
    # attempts start at 0, 3, 6 and 9 s; one at 12 s would be past the budget
    assert call.calls == 4
    assert clock.waits == [3.0, 3.0, 3.0]


def test_a_stop_ends_the_wait_in_progress_and_raises() -> None:
    clock = FakeClock()
    stop = threading.Event()
    clock.on_wait = stop.set
    error = ServerError("down", status=503)
    call = FlakyCall(error, ServerError("down again", status=503))
    with pytest.raises(ServerError) as raised:
        run(call, RetryPolicy(max_attempts=None), clock, stop)
    assert raised.value is error
    assert call.calls == 1


def test_once_stopped_no_retry_is_even_scheduled() -> None:
    clock = FakeClock()
    stop = threading.Event()
    stop.set()
    call = FlakyCall(ServerError("down", status=503))
    with pytest.raises(ServerError):
        run(call, RetryPolicy(max_attempts=None), clock, stop)
    assert clock.waits == []
