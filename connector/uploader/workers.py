"""The threads that send the uploader's bulk requests.

Starting a thread per request made the loop wait for each new thread to run, which needs the GIL
from busy threads: about a fifth of the loop thread's time while draining (docs/benchmarks.md).
`RequestWorkers` keeps the threads and hands them work through a queue; it starts one more only
when every thread it has is busy and it may run another job, so it never holds more threads than
requests were ever in flight at once. They are daemon threads: a request still stuck after the
drain timeout must not hold the process exit.

Jobs may be submitted ahead of a free thread: they wait in order, and a thread that finishes a
request starts the next waiting one at once, before the loop thread has even seen the outcome.
Handing each batch over from the loop left a slot idle for 4-5 ms on average (the loop noticed
the outcome only between two `consume()` calls and the thread then waited for the GIL to start):
a third of the slots' time while draining a backlog (benchmarks/analysis.md). A job that waits
can be taken back (`withdraw`) until a thread starts it.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable
from typing import Generic, TypeVar

JobT = TypeVar("JobT")
ResultT = TypeVar("ResultT")


class RequestWorkers(Generic[JobT, ResultT]):
    """`submit(job)` runs `run(job)` on a worker thread and passes the result to `deliver`,
    at most `limit()` jobs at once (read again as each job starts: it may change), in the order
    submitted; a worker counts as free again before it delivers, so a job submitted in answer to
    a delivery finds it free."""

    def __init__(
        self,
        run: Callable[[JobT], ResultT],
        deliver: Callable[[ResultT], None],
        name: str,
        limit: Callable[[], int],
    ) -> None:
        self._run = run
        self._deliver = deliver
        self._name = name
        self._limit = limit
        self._changed = threading.Condition()
        self._waiting: deque[JobT] = deque()
        self._threads = 0
        self._running = 0
        self._closed = False

    @property
    def threads(self) -> int:
        return self._threads

    def submit(self, job: JobT) -> None:
        with self._changed:
            self._waiting.append(job)
            idle = self._threads - self._running
            start = idle < len(self._waiting) and self._threads < self._limit()
            if start:
                self._threads += 1
            self._changed.notify()
        if start:
            threading.Thread(target=self._work, name=self._name, daemon=True).start()

    def withdraw(self) -> list[JobT]:
        """Take back the jobs no thread has started yet, oldest first."""
        with self._changed:
            jobs = list(self._waiting)
            self._waiting.clear()
        return jobs

    def close(self) -> None:
        """Let the threads end once their job (if any) is done; jobs still waiting never run."""
        with self._changed:
            self._closed = True
            self._waiting.clear()
            self._changed.notify_all()

    def _work(self) -> None:
        while True:
            with self._changed:
                while not self._closed and not (self._waiting and self._running < self._limit()):
                    self._changed.wait()
                if self._closed:
                    self._threads -= 1
                    return
                job = self._waiting.popleft()
                self._running += 1
            result = self._run(job)
            with self._changed:
                self._running -= 1
                self._changed.notify()  # a job held back by the limit may start now
            self._deliver(result)
