"""The poller role: finished items of the app project → output topic, exactly once.

Layout: `cursor` (state record format, late-window bookkeeping), `scan` (what to list and what a
page changes), `publisher` (output records, the page transaction), `state` (reading the state
topic; the cursor function API), `leadership` (leader/standby), `loop`, `role` (build_poller).
"""

from connector.poller.cursor import Cursor, initial_cursor
from connector.poller.role import Poller, build_poller
from connector.poller.state import read_cursor, write_cursor

__all__ = [
    "Cursor",
    "Poller",
    "build_poller",
    "initial_cursor",
    "read_cursor",
    "write_cursor",
]
