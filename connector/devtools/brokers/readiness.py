"""Wait until a freshly started broker answers Kafka requests: probe, never sleep a fixed time."""

from __future__ import annotations

import logging
import subprocess
import time
from pathlib import Path

from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient

from connector.devtools.processes import log_tail, port_accepts, wait_until
from connector.errors import BrokerError

logger = logging.getLogger(__name__)


def wait_until_serving(
    proc: subprocess.Popen[bytes], port: int, log_path: Path, timeout: float, what: str
) -> None:
    """Return once the broker on `port` answers a Metadata request listing itself.

    Raises BrokerError with the end of the server log when the process exits or time runs out.
    """
    deadline = time.monotonic() + timeout

    def alive_and(condition: bool) -> bool:
        if proc.poll() is not None:
            raise BrokerError(
                f"{what} exited with code {proc.returncode} while starting; "
                f"end of {log_path}:\n{log_tail(log_path)}"
            )
        return condition

    try:
        # The TCP probe first: an AdminClient pointed at a closed port logs connection errors.
        wait_until(lambda: alive_and(port_accepts(port)), timeout, f"{what} to listen")
        # Route librdkafka's own log lines to logging instead of our stderr.
        admin = AdminClient({"bootstrap.servers": f"127.0.0.1:{port}"}, logger=logger)
        wait_until(
            lambda: alive_and(_lists_brokers(admin)),
            max(deadline - time.monotonic(), 0.1),
            f"{what} to answer Metadata",
        )
    except BrokerError as error:
        if proc.poll() is None:
            raise BrokerError(f"{error}; end of {log_path}:\n{log_tail(log_path)}") from None
        raise


def _lists_brokers(admin: AdminClient) -> bool:
    try:
        return bool(admin.list_topics(timeout=1.0).brokers)
    except KafkaException:
        return False
