"""Heartbeats while the leader waits for the API.

A standby takes over when the leader wrote no cursor record for `leader_timeout_seconds`. The
leader writes one in every transaction and between listings, but a listing can take longer than
that (a slow API, a large page, the client's retries). While one is in flight, a helper thread
writes the heartbeats that fall due, on the same transactional producer: the leader's loop is
waiting for the API and has no transaction open, so the two never overlap. Liveness then depends
on the process and on Kafka, not on how long one API call takes.

A heartbeat that fails because a newer poller fenced this one ends the helper; the loop re-raises
that error once the call returns, and steps down. So does anything else a heartbeat raises (a
failed producer, a bug): nothing is lost in the helper thread.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from types import TracebackType

from connector.errors import PageAbortedError

log = logging.getLogger(__name__)

RETRY_SECONDS = 1.0
"""Wait after a heartbeat transaction that was aborted (the broker is away: do not spin)."""


class KeepalivesDuringCall:
    """`with KeepalivesDuringCall(write, due_in): call()` — `due_in()` is the seconds until the
    next heartbeat falls due (monotonic), `write()` writes one (raising a PublishError)."""

    def __init__(self, write: Callable[[], None], due_in: Callable[[], float]) -> None:
        self._write = write
        self._due_in = due_in
        self._done = threading.Event()
        self._failure: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="poller-keepalives", daemon=True)

    def __enter__(self) -> KeepalivesDuringCall:
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._done.set()
        self._thread.join()  # a heartbeat in progress ends within the transaction timeout
        if self._failure is not None:
            raise self._failure  # fencing outranks whatever the call did

    def _run(self) -> None:
        # A real wait, not the clock seam's: the seam's fake clock jumps when waited on.
        while not self._done.wait(max(self._due_in(), 0.0)):
            if self._due_in() > 0:
                continue
            try:
                self._write()
            except PageAbortedError as exc:
                log.warning("keepalive transaction aborted while listing: %s", exc)
                if self._done.wait(RETRY_SECONDS):
                    return
            except BaseException as exc:  # re-raised in the loop's thread, where it belongs
                self._failure = exc
                return
