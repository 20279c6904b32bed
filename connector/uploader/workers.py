"""The threads that send the uploader's bulk requests.

Starting a thread per request made the loop wait for each new thread to run, which needs the GIL
from busy threads: about a fifth of the loop thread's time while draining (docs/benchmarks.md).
`RequestWorkers` keeps the threads and hands them work through a queue; it starts one more only
when every thread it has is busy, so it never holds more threads than requests were ever in
flight at once. They are daemon threads: a request still stuck after the drain timeout must not
hold the process exit.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from typing import Generic, TypeVar

JobT = TypeVar("JobT")
ResultT = TypeVar("ResultT")


class RequestWorkers(Generic[JobT, ResultT]):
    """`submit(job)` runs `run(job)` on a worker thread and passes the result to `deliver`; a
    worker counts as free again before it delivers, so a job submitted in answer to a delivery
    finds it free."""

    def __init__(
        self, run: Callable[[JobT], ResultT], deliver: Callable[[ResultT], None], name: str
    ) -> None:
        self._run = run
        self._deliver = deliver
        self._name = name
        self._jobs: queue.SimpleQueue[JobT | None] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._threads = 0
        self._busy = 0

    @property
    def threads(self) -> int:
        return self._threads

    def submit(self, job: JobT) -> None:
        with self._lock:
            self._busy += 1
            start = self._busy > self._threads
            if start:
                self._threads += 1
        if start:
            threading.Thread(target=self._work, name=self._name, daemon=True).start()
        self._jobs.put(job)

    def close(self) -> None:
        """Let the threads end once their job (if any) is done."""
        with self._lock:
            threads = self._threads
        for _ in range(threads):
            self._jobs.put(None)

    def _work(self) -> None:
        while True:
            job = self._jobs.get()
            if job is None:
                return
            result = self._run(job)
            with self._lock:
                self._busy -= 1
            self._deliver(result)
