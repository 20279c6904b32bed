"""The uploader's request threads: kept and reused, never more than were busy at once."""

from __future__ import annotations

import queue
import threading

from connector.uploader.workers import RequestWorkers
from testkit.waiting import wait_for

NAME = "test-request-worker"


def live_workers() -> int:
    return sum(1 for thread in threading.enumerate() if thread.name == NAME)


def test_threads_are_reused_and_never_more_than_the_jobs_in_flight() -> None:
    release = threading.Event()
    delivered: queue.SimpleQueue[int] = queue.SimpleQueue()

    def run(job: int) -> int:
        release.wait(10)
        return job * 10

    workers = RequestWorkers(run, delivered.put, NAME, lambda: 4)
    for job in range(3):
        workers.submit(job)
    assert workers.threads == 3
    release.set()
    assert sorted(delivered.get(timeout=10) for _ in range(3)) == [0, 10, 20]
    for job in range(3, 9):  # one at a time, each submitted once the last was delivered
        workers.submit(job)
        assert delivered.get(timeout=10) == job * 10
    assert workers.threads == 3
    workers.close()
    wait_for(lambda: live_workers() == 0, "the workers ending", 10)


def test_a_job_submitted_when_a_result_is_delivered_finds_its_worker_free() -> None:
    delivered: list[int] = []
    workers: RequestWorkers[int, int]

    def deliver(result: int) -> None:
        delivered.append(result)
        if result < 5:
            workers.submit(result + 1)  # as the loop sends the next batch on a completion

    workers = RequestWorkers(lambda job: job, deliver, NAME, lambda: 4)
    workers.submit(0)
    wait_for(lambda: len(delivered) == 6, "the chain of jobs", 10)
    assert workers.threads == 1
    workers.close()
    wait_for(lambda: live_workers() == 0, "the worker ending", 10)
