"""The uploader against answers, sizes and broker faults of the real world, on the session's
broker and the simulator over TCP (real clients only).

- an answer that lists no created items (a redirect, an oversized page, whatever its status)
  never lets an offset pass an item that does not exist;
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from tests.fixtures.waiting import wait_for
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

# The uploader tests' fixtures, under their own names so that tests ask for them as usual.
pipeline = test_uploader.pipeline
in_process = test_uploader.in_process

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
    uploader = in_process(pipeline.environ(batch_max_items="50",
                                           api_max_response_bytes="65536"))  # fmt: skip
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


@pytest.mark.parametrize(
    "fault",
    [
        {"redirect_ratio": 1.0, "redirect_status": 307},
        {"oversized_page_ratio": 1.0, "oversized_page_status": 502},
    ],
    ids=["redirect-307", "oversized-502"],
)
def test_a_proxy_answering_the_start_up_reads_is_waited_out(
    pipeline: Pipeline, in_process: StartUploader, fault: dict[str, Any]
) -> None:
    status = fault.get("redirect_status") or fault["oversized_page_status"]
    pipeline.simulator.set_knobs(fault_scope="read", oversized_page_bytes=256 * 1024, **fault)
    uploader = in_process(pipeline.environ(api_max_response_bytes="65536"))
    wait_for(lambda: faulted_requests(pipeline, status) >= 3 or uploader.failure is not None,
             "the start-up reads answered")  # fmt: skip
    assert uploader.failure is None, f"the uploader gave up at start: {uploader.failure}"
    assert "input_spec" in uploader.role.readiness().detail
    pipeline.simulator.set_knobs(redirect_ratio=0.0, oversized_page_ratio=0.0)
    count = 100
    pipeline.produce(count)
    wait_for(lambda: pipeline.committed() == end_offsets(count), "offsets committed to the end")
    uploader.finish()
    assert set(created_keys(pipeline.simulator)) == good_keys(count)
