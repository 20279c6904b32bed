"""`free_port` chooses ports outgoing connections cannot take, and not alike in every worker."""

from __future__ import annotations

import random
import socket

from connector.devtools.processes import FIXED_PORTS_FROM, LOOPBACK, _ephemeral_low, free_port


def test_a_free_port_is_below_the_ephemeral_range_and_bindable() -> None:
    low = _ephemeral_low()
    for _ in range(20):
        port = free_port()
        assert FIXED_PORTS_FROM <= port < low
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind((LOOPBACK, port))


def test_workers_seeded_alike_do_not_choose_alike() -> None:
    """The test runner seeds `random` with one seed in every worker: ports drawn from it would
    be the same in each (20 draws alike by chance: about 1 in 10^87)."""
    random.seed(1234)
    first = [free_port() for _ in range(20)]
    random.seed(1234)
    second = [free_port() for _ in range(20)]
    assert first != second
