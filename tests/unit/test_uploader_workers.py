"""The uploader's request threads: kept and reused, never more than were busy at once nor more
than the limit, each starting the next waiting job itself."""

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


def test_no_more_jobs_run_at_once_than_the_limit_and_a_free_thread_starts_the_next() -> None:
    release = threading.Event()
    limit = [1]
    running: list[int] = []
    most = [0]
    ran_on: dict[int, str] = {}
    delivered: queue.SimpleQueue[int] = queue.SimpleQueue()

    def run(job: int) -> int:
        running.append(job)
        most[0] = max(most[0], len(running))
        ran_on[job] = threading.current_thread().name + str(threading.get_ident())
        release.wait(10)
        running.remove(job)
        return job

    workers = RequestWorkers(run, delivered.put, NAME, lambda: limit[0])
    for job in range(3):
        workers.submit(job)
    assert workers.threads == 1  # the others wait for it, not for threads of their own
    wait_for(lambda: running == [0], "the first job running alone")
    release.set()  # nothing is submitted any more: the thread goes on by itself
    assert [delivered.get(timeout=10) for _ in range(3)] == [0, 1, 2]
    assert most[0] == 1
    assert len(set(ran_on.values())) == 1
    release.clear()
    limit[0] = 2  # a larger limit: as many jobs at once
    for job in range(3, 6):
        workers.submit(job)
    wait_for(lambda: len(running) == 2, "two jobs running")
    assert workers.threads == 2
    release.set()
    assert sorted(delivered.get(timeout=10) for _ in range(3)) == [3, 4, 5]
    assert most[0] == 2
    workers.close()
    wait_for(lambda: live_workers() == 0, "the workers ending", 10)


def test_jobs_not_started_yet_can_be_withdrawn_and_never_run() -> None:
    release = threading.Event()
    ran: list[int] = []
    delivered: queue.SimpleQueue[int] = queue.SimpleQueue()

    def run(job: int) -> int:
        ran.append(job)
        release.wait(10)
        return job

    workers = RequestWorkers(run, delivered.put, NAME, lambda: 1)
    for job in range(3):
        workers.submit(job)
    wait_for(lambda: ran == [0], "the first job started")
    assert workers.withdraw() == [1, 2]
    release.set()
    assert delivered.get(timeout=10) == 0
    workers.submit(3)
    assert delivered.get(timeout=10) == 3
    assert ran == [0, 3]
    workers.close()
    wait_for(lambda: live_workers() == 0, "the worker ending", 10)
