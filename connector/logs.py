"""Logging: stdlib logging to stderr as text or JSON lines (`CONNECTOR_LOG_FORMAT`).

librdkafka's own log lines reach the same stream through the `logger=` client setting: clients
are given `kafka_logger()`.
"""

from __future__ import annotations

import logging
import sys
import time
from typing import Any

import orjson

_STANDARD_ATTRS = frozenset(logging.makeLogRecord({}).__dict__) | {"message", "asctime"}


class JsonLinesFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, and any `extra=` fields."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S") + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in record.__dict__.items():
            if key not in _STANDARD_ATTRS and not key.startswith("_"):
                entry[key] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return orjson.dumps(entry, default=str).decode()


def configure_logging(log_format: str = "text", level: str = "INFO") -> None:
    handler = logging.StreamHandler(sys.stderr)
    if log_format == "json":
        handler.setFormatter(JsonLinesFormatter())
    else:
        formatter = logging.Formatter(
            "%(asctime)s.%(msecs)03dZ %(levelname)-7s %(name)s: %(message)s", "%Y-%m-%dT%H:%M:%S"
        )
        handler.setFormatter(formatter)
    if handler.formatter is not None:
        handler.formatter.converter = time.gmtime  # the Z in the timestamps is true
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)


def kafka_logger() -> logging.Logger:
    """The logger librdkafka's lines go to (pass as the `logger` client setting)."""
    return logging.getLogger("connector.librdkafka")
