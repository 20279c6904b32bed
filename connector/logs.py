"""Logging: stdlib logging to stderr as text or JSON lines (`CONNECTOR_LOG_FORMAT`).

- librdkafka's own log lines reach the same stream through the `logger=` client setting: clients
  are given `kafka_logger()`, whose records also carry `kafka_facility` and `kafka_client` fields.
  Its connection failures (facility FAIL) are DEBUG lines: an outage is reported by the Kafka
  availability tracker instead, once when it begins and once when it ends.
- Role state changes (standby → leader, paused → resumed …) are logged with `state_change()`, one
  line each with `event="state_change"`, `role`, `from_state`, `to_state`, so they can be found.
- Secrets never reach the stream: `register_secret()` the API key and any credential once they
  are loaded; every line is then masked before it is written (the record's message, arguments,
  exception text and extra fields, and — as a last net — the formatted line itself, in the
  plain and JSON-escaped forms of each secret). Code should still never log a secret: this is the
  safety net for the one that slips through in an exception message or a librdkafka line.
"""

from __future__ import annotations

import logging
import sys
import threading
import time
from collections.abc import Iterable
from typing import IO, Any, Protocol

import orjson
from pydantic import SecretStr

MASK = "**********"
# Shorter values would mask ordinary words all over the logs; no real credential is this short.
MIN_SECRET_LENGTH = 4

_STANDARD_ATTRS = frozenset(logging.makeLogRecord({}).__dict__) | {"message", "asctime"}
_KAFKA_LOGGER_NAME = "connector.librdkafka"
_STATE_LOGGER_NAME = "connector.state"


# --- secrets -----------------------------------------------------------------------------------

_secrets_lock = threading.Lock()
_secret_forms: tuple[str, ...] = ()  # replaced whole, so readers need no lock


def register_secret(*values: str | SecretStr | None) -> None:
    """Mask these values wherever they would appear in a log line, from now on.

    Empty values, None and values shorter than MIN_SECRET_LENGTH are ignored.
    """
    global _secret_forms  # noqa: PLW0603 - one process-wide set, like logging's own state
    added: set[str] = set()
    for value in values:
        plain = value.get_secret_value() if isinstance(value, SecretStr) else value
        if not plain or len(plain) < MIN_SECRET_LENGTH:
            continue
        added.add(plain)
        added.add(orjson.dumps(plain).decode()[1:-1])  # as it appears inside a JSON string
    with _secrets_lock:
        # Longest first, so a secret that contains another is masked whole.
        _secret_forms = tuple(sorted(added | set(_secret_forms), key=len, reverse=True))


class HoldsSecrets(Protocol):
    """What holds secrets (`connector.config.Settings`), seen from below it."""

    def secrets(self) -> Iterable[str]: ...


def register_settings_secrets(settings: HoldsSecrets) -> None:
    """Register every secret the settings hold: the API key and secret librdkafka properties."""
    register_secret(*settings.secrets())


def clear_secrets() -> None:
    """Forget every registered secret (for tests)."""
    global _secret_forms  # noqa: PLW0603
    with _secrets_lock:
        _secret_forms = ()


def redact(text: str) -> str:
    """`text` with every registered secret replaced by MASK."""
    for form in _secret_forms:
        if form in text:
            text = text.replace(form, MASK)
    return text


class RedactingFilter(logging.Filter):
    """Masks registered secrets in a record; attach it to any handler that writes logs out."""

    _exceptions = logging.Formatter()

    def filter(self, record: logging.LogRecord) -> bool:
        if not _secret_forms:
            return True
        try:
            message = record.getMessage()
        except Exception:
            # The formatter will fail too and logging prints msg and args raw: mask them now.
            message = f"{record.msg} {record.args!r}"
        record.msg, record.args = redact(message), None
        if record.exc_info and not record.exc_text:
            record.exc_text = self._exceptions.formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        if record.stack_info:
            record.stack_info = redact(record.stack_info)
        for key, value in list(record.__dict__.items()):
            if key not in _STANDARD_ATTRS and isinstance(value, str):
                setattr(record, key, redact(value))
        return True


class _RedactingHandler(logging.StreamHandler[IO[str]]):
    """Masks the finished line too: catches secrets inside non-string extra fields."""

    def format(self, record: logging.LogRecord) -> str:
        return redact(super().format(record))


# --- formats -----------------------------------------------------------------------------------


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
        if record.exc_info or record.exc_text:
            # exc_text first: the redacting filter may have masked it already.
            entry["exception"] = record.exc_text or self.formatException(record.exc_info)  # type: ignore[arg-type]
        if record.stack_info:
            entry["stack"] = record.stack_info
        return orjson.dumps(entry, default=str).decode()


def text_formatter() -> logging.Formatter:
    return logging.Formatter(
        "%(asctime)s.%(msecs)03dZ %(levelname)-7s %(name)s: %(message)s", "%Y-%m-%dT%H:%M:%S"
    )


def configure_logging(
    log_format: str = "text", level: str = "INFO", *, stream: IO[str] | None = None
) -> None:
    """Send every log line (the connector's and librdkafka's) to `stream` (stderr by default)."""
    handler = _RedactingHandler(stream if stream is not None else sys.stderr)
    handler.setFormatter(JsonLinesFormatter() if log_format == "json" else text_formatter())
    if handler.formatter is not None:
        handler.formatter.converter = time.gmtime  # the Z in the timestamps is true
    handler.addFilter(RedactingFilter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # httpx logs every request at INFO: thousands of lines a minute. The client logs what
    # matters (retries, outages); the per-request lines stay for DEBUG.
    for chatty in ("httpx", "httpcore"):
        logging.getLogger(chatty).setLevel(level if level == "DEBUG" else "WARNING")


# --- librdkafka and state changes ----------------------------------------------------------------


CONNECTION_FAILURE_FACILITIES = frozenset({"FAIL"})
"""librdkafka's line for each failed or lost broker connection: while a broker is down it comes
dozens of times a second per client. `connector.kafka.availability` reports the outage instead,
once when it begins and once when it ends; the lines themselves stay for DEBUG."""
_DEBUG_FACILITIES = CONNECTION_FAILURE_FACILITIES | {"SSL"}
"""Also DEBUG: the OpenSSL error queue librdkafka logs (facility SSL) next to a TLS connection
that failed or was cut, e.g. `GroupCoordinator: kafka: error:0A000114:SSL routines::uninitialized`
at ERROR while a broker restarts (seen). The failure itself is the FAIL line, and the outage or
refusal its one line."""


class _LibrdkafkaFields(logging.Filter):
    """Lifts facility and client name out of confluent-kafka's "%s [%s] %s" log calls, and
    moves connection failures down to DEBUG."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if record.msg == "%s [%s] %s" and isinstance(args, tuple) and len(args) == 3:
            facility = str(args[0])
            record.kafka_facility, record.kafka_client = facility, str(args[1])
            if facility in _DEBUG_FACILITIES:
                record.levelno, record.levelname = logging.DEBUG, "DEBUG"
                # The logger let the record through at its original level: judge it again.
                return logging.getLogger(record.name).isEnabledFor(logging.DEBUG)
        return True


def kafka_logger() -> logging.Logger:
    """The logger librdkafka's lines go to (pass as the `logger` client setting)."""
    logger = logging.getLogger(_KAFKA_LOGGER_NAME)
    if not any(isinstance(f, _LibrdkafkaFields) for f in logger.filters):
        logger.addFilter(_LibrdkafkaFields())
    return logger


def state_change(role: str, from_state: str, to_state: str, reason: str = "") -> None:
    """One INFO line for a role's change of state, e.g. the poller going standby → leader."""
    logging.getLogger(_STATE_LOGGER_NAME).info(
        "%s: %s -> %s%s",
        role,
        from_state,
        to_state,
        f" ({reason})" if reason else "",
        extra={
            "event": "state_change",
            "role": role,
            "from_state": from_state,
            "to_state": to_state,
            "reason": reason,
        },
    )
