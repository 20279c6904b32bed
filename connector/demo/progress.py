"""Live progress of the demo: a table redrawn in place on a terminal, plain lines otherwise."""

from __future__ import annotations

import sys
import time
from dataclasses import astuple, dataclass
from typing import TextIO

from rich.console import Console
from rich.live import Live
from rich.table import Table

PLAIN_LINE_EVERY_SECONDS = 2.0


@dataclass(frozen=True)
class Counts:
    produced: int
    uploaded: int
    finished: int
    published: int
    dead_lettered: int

    def line(self, elapsed: float) -> str:
        return (
            f"[{elapsed:5.1f}s] produced {self.produced}  uploaded {self.uploaded}  "
            f"finished in Toloka {self.finished}  published {self.published}  "
            f"dead-lettered {self.dead_lettered}"
        )


def _table(counts: Counts, total: int, elapsed: float) -> Table:
    table = Table(title=f"toloka-connector demo — {elapsed:.1f}s", title_justify="left")
    table.add_column("stage")
    table.add_column("items", justify="right")
    table.add_column("of", justify="right")
    for stage, value in zip(
        (
            "produced to Kafka",
            "uploaded to Toloka",
            "finished in Toloka",
            "published to Kafka",
            "dead-lettered",
        ),
        astuple(counts),
        strict=True,
    ):
        table.add_row(stage, str(value), str(total))
    return table


class ProgressView:
    """`update()` as often as you like; it redraws at most a few times a second."""

    def __init__(self, total: int, stream: TextIO = sys.stderr) -> None:
        self._total = total
        self._stream = stream
        self._started = time.monotonic()
        self._live: Live | None = None
        self._last_line_at = 0.0
        self._last_counts: Counts | None = None
        if stream.isatty():
            self._live = Live(console=Console(file=stream), refresh_per_second=4)
            self._live.start()

    def update(self, counts: Counts) -> None:
        elapsed = time.monotonic() - self._started
        if self._live is not None:
            self._live.update(_table(counts, self._total, elapsed))
            return
        due = elapsed - self._last_line_at >= PLAIN_LINE_EVERY_SECONDS
        if due and counts != self._last_counts:
            print(counts.line(elapsed), file=self._stream, flush=True)
            self._last_line_at, self._last_counts = elapsed, counts

    def close(self, counts: Counts) -> None:
        elapsed = time.monotonic() - self._started
        if self._live is not None:
            self._live.update(_table(counts, self._total, elapsed))
            self._live.stop()
        elif counts != self._last_counts:
            print(counts.line(elapsed), file=self._stream, flush=True)
