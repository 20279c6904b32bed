"""A look-back scan listed beside the main scan while the main scan has a backlog.

A look-back scan lists every item finished in the late window behind the cursor again, to find
the few that showed up late (`connector.poller.late_window`). Run in the loop's turn, it stops
the main scan for as long as it lists: with a backlog of items finished within the window, that
is everything published so far, page by page (seen: half the throughput of the poller against
an API answering in 250 ms). `BackgroundLookBack` lists those pages on a thread of its own
instead, and hands the loop only a page that holds an item not published yet, or the page that
ends the scan; a page of items all published before needs no transaction and nothing from the
loop.

Exactly once stays the loop's: the thread reads the leader's state (the cursor and the ids the
window tracks) to skip pages, and never changes it. The loop plans a handed page against the
state as it is then (an item the main scan published meanwhile is not published again) and
commits it. An id the thread found published stays published (the window drops an id only once
it lies below every scan's floor), unless a transaction of the main scan added it and then did
not commit (a single page's as well as one spanning pages, `publishing`: the state shows a page
as soon as it is added): the state goes back, and so does the main scan, to before that
transaction's first page, and lists the id again. Either way a page it skipped
needs nothing. A look-back scan still
starts every `late_scan_interval_seconds`, and its horizon moves only when it completes.

What the loop does with it: it takes the hand-over between two pages of the main scan; a
listing that failed is listed again in the loop's turn (`foreground`), where the loop's error
handling applies (a smaller page, a dead-lettered item, a wait); when the main scan reaches the
end, the look-back scan goes on in the loop's turn from where the thread stood (`cancel`).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass

from connector.poller.late_window import PollerState
from connector.poller.scan import ListingRequest, Scan, look_back_after, next_request, view_page
from connector.toloka.models import ItemPage


@dataclass(frozen=True)
class HandOver:
    scan: Scan
    """The look-back scan at the handed page (the scan that listed it)."""
    page: ItemPage | None
    """None: the listing failed (`error`); the loop lists it again in its own turn."""
    error: BaseException | None = None


class BackgroundLookBack:
    """One look-back scan's listings on a daemon thread, until a page for the loop."""

    def __init__(
        self, state: PollerState, scan: Scan, list_page: Callable[[ListingRequest], ItemPage]
    ) -> None:
        self._state = state
        self._list_page = list_page
        self._position = scan
        self._cancelled = False
        self._lock = threading.Lock()
        self._handed: Future[HandOver] = Future()
        # A daemon thread: a listing still stuck in the API when the process ends must not hold
        # the exit (the client's retries end at stop).
        threading.Thread(target=self._run, name="poller-look-back", daemon=True).start()

    def done(self) -> bool:
        """A page (or a failure) waits for the loop."""
        return self._handed.done()

    def take(self) -> HandOver:
        """What the thread handed over (call once `done()`)."""
        return self._handed.result(timeout=0)

    def cancel(self) -> Scan:
        """Stop listing; the scan at the page the thread would list next (its listing in flight,
        if any, is dropped when it returns)."""
        with self._lock:
            self._cancelled = True
            return self._position

    def _run(self) -> None:
        scan = self._position
        try:
            while True:
                page = self._list_page(next_request(self._state, scan))
                view = view_page(self._state, scan, page)
                if view.publish or view.caught_up or view.out_of_range:
                    self._handed.set_result(HandOver(scan, page))
                    return
                scan = look_back_after(scan, view)
                with self._lock:
                    if self._cancelled:
                        return
                    self._position = scan
        except BaseException as failure:  # listed again in the loop's turn, which handles it
            self._handed.set_result(HandOver(scan, None, failure))
