"""The uploader (`toloka-connector upload`, a process) against the simulator's rate limit over
TCP: a 429 with Retry-After holds every request of the uploader, not just the one that got it,
and nothing is lost or created twice on the way. The simulator counts the requests that arrive
while a Retry-After it sent is running; the uploader must send none."""

from __future__ import annotations

import subprocess
from collections.abc import Callable

import pytest

from testkit.waiting import wait_for
from tests.integration import test_uploader
from tests.integration.test_uploader import Pipeline, created_keys, end_offsets, good_keys

pytestmark = pytest.mark.integration

pipeline = test_uploader.pipeline
upload_process = test_uploader.upload_process
StartProcess = Callable[[dict[str, str]], subprocess.Popen[bytes]]

COUNT = 200


def test_a_429_with_retry_after_holds_every_request_and_loses_nothing(
    pipeline: Pipeline, upload_process: StartProcess
) -> None:
    # Answers take 0.37 s, and one request a second is accepted after a burst of 3: the first
    # four requests in flight meet a 429 (Retry-After 1 s) while three others are still being
    # answered; their completions must not send anything before the second is over. (0.37 s is
    # no fraction of a second, so that a completion never falls on a Retry-After's end.)
    pipeline.simulator.set_knobs(latency=0.37, rate_limit=1.0, rate_limit_burst=3, retry_after=1)
    pipeline.produce(COUNT)
    process = upload_process(pipeline.environ(batch_max_items="25", max_in_flight="4"))
    wait_for(lambda: pipeline.committed() == end_offsets(COUNT), "offsets committed to the end",
             guard=lambda: _alive(process))  # fmt: skip

    stats = pipeline.simulator.stats()
    pipeline.simulator.set_knobs(rate_limit=0.0)  # the checks below list items themselves
    assert stats["rate_limited"] >= 1, stats  # the limit was met
    assert stats["requests_during_retry_after"] == 0, stats
    created = created_keys(pipeline.simulator)
    assert set(created) == good_keys(COUNT)
    assert set(created.values()) == {1}, "an item was created twice"
    process.terminate()
    assert process.wait(60) == 0


def _alive(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is not None:
        raise AssertionError(f"the uploader exited with {process.returncode}")
