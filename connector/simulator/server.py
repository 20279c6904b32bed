"""Run the simulator until SIGTERM or SIGINT."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Callable

from connector.simulator.app import API_PREFIX, Simulator
from connector.simulator.http import start_server


def base_url(host: str, port: int) -> str:
    shown = f"[{host}]" if ":" in host else host
    return f"http://{shown}:{port}{API_PREFIX}"


async def serve(sim: Simulator, host: str, port: int, on_ready: Callable[[str], None]) -> None:
    """Serve until a termination signal; `on_ready` gets the base URL once the port is bound
    (port 0 binds a free port)."""
    server = await start_server(sim.handle, host, port)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    bound_port = server.sockets[0].getsockname()[1]
    on_ready(base_url(host, bound_port))
    try:
        await stop.wait()
    finally:
        server.close()  # open keep-alive connections die with the process
