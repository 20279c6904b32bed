"""Keepalives while the leader waits for the API.

A standby takes over when the leader wrote no cursor record for `leader_timeout_seconds`. The
leader writes one in every transaction and, when nothing moves, a keepalive (the cursor written
again) between listings; but a listing can take longer than the timeout (a slow API, a large
page, the client's retries). While one is in flight, the keepalive thread writes the keepalives
that fall due, on the same transactional producer: the loop is waiting for the API and has no
transaction open, so the two never overlap. Liveness then depends on the process and on Kafka,
not on how long one API call takes.

One thread per leadership, idle between listings. The two threads take turns under one lock:
the keepalive thread writes only while the loop is inside `listing()`, holding the lock; the
loop leaves `listing()` by taking the lock, so a keepalive in progress ends first, and whatever
it changed (the leader's state, its last write) is the loop's again, whole.

A keepalive that fails because a newer poller fenced this one is raised in the loop's thread
when the listing returns (fencing outranks whatever the call did), and the loop steps down. So
is anything else a keepalive raises (a failed producer, a bug): nothing is lost in the thread.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import TracebackType

from connector.errors import PageAbortedError

log = logging.getLogger(__name__)


class KeepalivesWhileListing:
    """`with KeepalivesWhileListing(write, due_in, retry_pause) as keepalives:` for a leadership,
    then `with keepalives.listing(): list_items(...)` around each listing. `due_in()` is the
    seconds until the next keepalive falls due (monotonic), `write()` writes one (raising a
    PublishError); after an aborted one the thread waits `retry_pause_seconds` (the broker is
    away: do not spin)."""

    def __init__(
        self,
        write: Callable[[], None],
        due_in: Callable[[], float],
        retry_pause_seconds: float,
    ) -> None:
        self._write = write
        self._due_in = due_in
        self._retry_pause = retry_pause_seconds
        self._turn = threading.Condition()
        self._listing = False
        self._closed = False
        self._failure: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="poller-keepalives", daemon=True)

    def __enter__(self) -> KeepalivesWhileListing:
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        with self._turn:
            self._closed = True
            self._turn.notify()
        self._thread.join()  # a keepalive in progress ends within the transaction timeout

    @contextmanager
    def listing(self) -> Iterator[None]:
        """Keepalives are written while the block runs; a keepalive's failure is raised after."""
        with self._turn:
            self._listing = True
            self._turn.notify()
        try:
            yield
        finally:
            with self._turn:
                self._listing = False
                failure, self._failure = self._failure, None
            if failure is not None:
                raise failure

    def _run(self) -> None:
        # Real waits, not the clock seam's: the seam's fake clock jumps when waited on.
        with self._turn:
            while not self._closed:
                if not self._listing or self._failure is not None:
                    self._turn.wait()
                    continue
                due_in = self._due_in()
                if due_in > 0:
                    self._turn.wait(due_in)
                    continue
                try:
                    self._write()
                except PageAbortedError as exc:
                    log.warning("keepalive transaction aborted while listing: %s", exc)
                    self._turn.wait(self._retry_pause)
                except BaseException as exc:  # raised in the loop's thread, where it belongs
                    self._failure = exc
