"""The poller role: finished items of the app project → output topic, exactly once.

Layout: `scan` (what to list and what a page changes), `late_window` (the seen ids in memory),
`publisher` (output records, the page transaction), `state` (reading the state topic), `reset`
(replacing the cursor, for `reset-cursor`), `leadership` (leader/standby), `keepalive` (cursor
records while a listing is in flight), `loop` (standby and leader), `leading` (the leader's turn),
`listing` (its pages), `publishing` (pages into transactions), `commits` (the transactions),
`role` (build_poller). The state topic's records
and the leader's liveness rule are contracts: `connector.contract`.
"""

from connector.poller.reset import write_cursor
from connector.poller.role import Poller, PollerPipeline, build_poller, build_pollers
from connector.poller.state import read_cursor

__all__ = [
    "Poller",
    "PollerPipeline",
    "build_poller",
    "build_pollers",
    "read_cursor",
    "write_cursor",
]
