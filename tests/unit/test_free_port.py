"""`free_port` chooses ports outgoing connections cannot take, and not alike in every worker."""

from __future__ import annotations

import random
import socket

import pytest

from connector.devtools.processes import LOOPBACK, fixed_port_choices, free_port


def test_a_free_port_is_outside_the_ephemeral_range_and_bindable() -> None:
    choices = fixed_port_choices()
    if choices is None:
        pytest.skip("this machine's ephemeral range leaves no room: the kernel picks")
    for _ in range(20):
        port = free_port()
        assert port in choices
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind((LOOPBACK, port))


def test_workers_seeded_alike_do_not_choose_alike() -> None:
    """A guard against choosing with `random`: the test runner seeds it with one seed in every
    worker, so its ports would be the same in each (20 draws alike by chance: about 1 in
    10^87)."""
    random.seed(1234)
    first = [free_port() for _ in range(20)]
    random.seed(1234)
    second = [free_port() for _ in range(20)]
    assert first != second
