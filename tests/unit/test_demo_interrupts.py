"""`demo`'s Ctrl-C: the first stops the demo in order, a second does not wait for that, and the
handler never waits for a lock (the runner's handler, which only records the signal)."""

from __future__ import annotations

import argparse
import signal
import threading
from typing import Any

import pytest

from connector.commands import demo
from connector.demo.pipeline import DemoOptions


class _StandInEndedError(Exception):
    """The stand-in demo's checks passed (it has no summary to return)."""


def test_ctrl_c_inside_the_demos_stop_event_neither_hangs_nor_loses_the_orderly_stop(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Seen: the demo's handler set its stop event itself, so a Ctrl-C that came while the main
    thread was inside that event (`set()` by the first Ctrl-C's handler, or the progress loop's
    `wait()`) ran the handler inside it, waiting for the event's lock that it held: the demo
    hung. Here the handler runs while that lock is held, as there: it must return; the event
    is still set (the orderly stop), and a second Ctrl-C raises KeyboardInterrupt."""
    monkeypatch.setattr(demo, "configure_logging", lambda *_args: None)
    before = signal.getsignal(signal.SIGINT)

    def stand_in(_options: DemoOptions, interrupted: threading.Event) -> Any:
        handler = signal.getsignal(signal.SIGINT)
        assert callable(handler)

        def ctrl_c_inside_the_event() -> None:
            with interrupted._cond:  # type: ignore[attr-defined]  # inside set() or wait()
                handler(signal.SIGINT, None)

        inside = threading.Thread(target=ctrl_c_inside_the_event, daemon=True)
        inside.start()
        inside.join(5)
        assert not inside.is_alive(), "the Ctrl-C handler waited for the event's lock"
        assert interrupted.wait(5), "the first Ctrl-C did not stop the demo"
        with pytest.raises(KeyboardInterrupt):
            handler(signal.SIGINT, None)  # a second Ctrl-C: not waiting for the orderly stop
        raise _StandInEndedError

    monkeypatch.setattr(demo, "run_demo", stand_in)
    arguments = argparse.Namespace(
        items=10, projects=1, json=False, rate=0.0, broker="mock", metrics_port=0, timeout=1.0,
        keep_running=False, seed=7, format="json",
    )  # fmt: skip
    with pytest.raises(_StandInEndedError):
        demo.run(arguments)
    assert signal.getsignal(signal.SIGINT) is before, "the demo left its handler installed"
