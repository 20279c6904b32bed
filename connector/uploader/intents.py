"""What each offset commit of the uploader says about the records beyond it: the upload intent
(`connector.contract.upload_intents`) put in the commit's metadata.

Per input partition of the current assignment the log keeps the requests sent whose records
the committed offset has not passed yet: (highest offset of the partition in the request,
wall-clock time it was sent), in sending order; an entry is settled once a commit position
passes its highest offset. On a shared topic the lanes' requests interleave, so the entries are
not in offset order: the settled ones at the front are dropped, and the first one left is the
oldest unsettled one (those behind it that are settled go when it does). A commit then says
`since` = the oldest unsettled entry's time, or the time of the commit when there is none (a
request sent later is sent after it); a final commit (a stop, a hand-over) with nothing
unsettled says "settled".

Before the first request of an assignment holds a record of a partition, the partition's intent
must be recorded by a commit that has landed (`unrecorded`, `recorded`): until then the
committed metadata is the previous owner's, which may say "settled". What the previous owner may
have sent and this owner has not reconciled yet is kept as an inherited entry (`inherit`), so
that a crash of this owner hands it on.
"""

from __future__ import annotations

import sys
from collections import deque
from collections.abc import Iterable

from connector.clock import Clock
from connector.contract.upload_intents import UploadIntent, encode_intent

_UNBOUNDED = sys.maxsize


class IntentLog:
    """Owned by the loop's thread."""

    def __init__(self, clock: Clock) -> None:
        self._clock = clock
        self._sent: dict[int, deque[tuple[int, float]]] = {}
        self._recorded: set[int] = set()

    def assign(self, partitions: Iterable[int]) -> None:
        for partition in partitions:
            self._sent[partition] = deque()
            self._recorded.discard(partition)

    def forget(self, partitions: Iterable[int]) -> None:
        for partition in partitions:
            self._sent.pop(partition, None)
            self._recorded.discard(partition)

    def inherit(self, partition: int, since: float, end_offset: int | None) -> None:
        """A previous owner may have sent records of `partition` below `end_offset` (None: no
        bound known) since `since`."""
        last = _UNBOUNDED if end_offset is None else end_offset - 1
        self._sent.setdefault(partition, deque()).appendleft((last, since))

    def unrecorded(self, partitions: Iterable[int]) -> set[int]:
        """Those of `partitions` whose intent this assignment has not recorded yet."""
        return {partition for partition in partitions if partition not in self._recorded}

    def recorded(self, partitions: Iterable[int]) -> None:
        self._recorded.update(partitions)

    def sent(self, highest_offsets: dict[int, int], at: float) -> None:
        """A request holding records of these partitions (partition → its highest offset in
        the request) is being sent."""
        for partition, offset in highest_offsets.items():
            entries = self._sent.get(partition)
            if entries is not None:
                entries.append((offset, at))

    def metadata(self, partition: int, position: int, *, final: bool) -> str:
        """The commit metadata for committing `partition` at `position`: nothing more will be
        sent for it when `final`."""
        entries = self._sent.get(partition)
        while entries and entries[0][0] < position:
            entries.popleft()
        if entries:
            return encode_intent(UploadIntent(entries[0][1]))
        return encode_intent(UploadIntent(None if final else self._clock.time()))
