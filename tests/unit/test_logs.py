"""Log formats, librdkafka routing, state-change lines and the secret-redaction safety net."""

from __future__ import annotations

import io
import json
import logging
import re
from collections.abc import Iterator
from typing import Any

import pytest
from confluent_kafka import Producer
from pydantic import SecretStr

from connector import logs
from connector.config import load_settings

SECRET = "tk-9f3a7c0e1b2d"


@pytest.fixture(autouse=True)
def restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    chatty = {name: logging.getLogger(name).level for name in ("httpx", "httpcore")}
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
    for name, chatty_level in chatty.items():
        logging.getLogger(name).setLevel(chatty_level)
    logs.clear_secrets()


def configured(log_format: str, level: str = "INFO") -> io.StringIO:
    stream = io.StringIO()
    logs.configure_logging(log_format, level, stream=stream)
    return stream


def json_lines(stream: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_text_lines_carry_utc_time_level_logger_and_message() -> None:
    stream = configured("text")
    logging.getLogger("connector.uploader").warning("paused %d partitions", 3)
    line = stream.getvalue()
    assert re.fullmatch(
        r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z "
        r"WARNING connector\.uploader: paused 3 partitions\n",
        line,
    ), line


def test_json_lines_are_one_object_per_line_with_extra_fields() -> None:
    stream = configured("json")
    logging.getLogger("connector.poller").info("page %s", 4, extra={"items": 1000})
    logging.getLogger("connector.poller").debug("not at INFO")
    [entry] = json_lines(stream)
    assert entry["level"] == "INFO"
    assert entry["logger"] == "connector.poller"
    assert entry["message"] == "page 4"
    assert entry["items"] == 1000
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", entry["time"])


def test_json_lines_carry_the_exception() -> None:
    stream = configured("json")
    try:
        raise ValueError("boom")
    except ValueError:
        logging.getLogger("connector").exception("failed")
    [entry] = json_lines(stream)
    assert entry["exception"].startswith("Traceback")
    assert "ValueError: boom" in entry["exception"]


@pytest.mark.parametrize("log_format", ["text", "json"])
def test_librdkafka_lines_reach_the_same_stream(log_format: str) -> None:
    stream = configured(log_format)
    # A consumer-only property on a producer makes librdkafka warn while the client starts;
    # poll() serves its log queue, so the line is there when poll returns.
    producer = Producer({"auto.offset.reset": "earliest", "logger": logs.kafka_logger()})
    producer.poll(0)
    output = stream.getvalue()
    assert "auto.offset.reset is a consumer property" in output
    if log_format == "json":
        entry = next(e for e in json_lines(stream) if "auto.offset.reset" in e["message"])
        assert entry["logger"] == "connector.librdkafka"
        assert entry["level"] == "WARNING"
        assert entry["kafka_facility"] == "CONFWARN"
        assert entry["kafka_client"].startswith("rdkafka#producer-")


def test_kafka_logger_is_one_logger_with_one_field_filter() -> None:
    first, second = logs.kafka_logger(), logs.kafka_logger()
    assert first is second
    assert len(first.filters) == 1


def test_state_change_lines_are_findable() -> None:
    stream = configured("json")
    logs.state_change("poller", "standby", "leader", "previous leader's session expired")
    [entry] = json_lines(stream)
    assert entry["message"] == "poller: standby -> leader (previous leader's session expired)"
    assert entry["event"] == "state_change"
    assert (entry["role"], entry["from_state"], entry["to_state"]) == (
        "poller",
        "standby",
        "leader",
    )


# --- redaction --------------------------------------------------------------------------------


@pytest.mark.parametrize("log_format", ["text", "json"])
def test_a_registered_secret_is_masked_in_message_arguments_and_exceptions(
    log_format: str,
) -> None:
    stream = configured(log_format)
    logs.register_secret(SecretStr(SECRET))
    log = logging.getLogger("connector.toloka")
    log.info("sending Authorization: ApiKey %s", SECRET)
    log.info(f"url https://x/?key={SECRET}")
    try:
        raise RuntimeError(f"bad header ApiKey {SECRET}")
    except RuntimeError:
        log.exception("request failed")
    output = stream.getvalue()
    assert SECRET not in output
    assert output.count(logs.MASK) == 3
    assert "ApiKey **********" in output


def test_secrets_in_extra_fields_are_masked_whatever_their_type() -> None:
    stream = configured("json")
    logs.register_secret(SECRET)
    logging.getLogger("connector").info(
        "config", extra={"password": SECRET, "conf": {"sasl.password": SECRET}}
    )
    [entry] = json_lines(stream)
    assert entry["password"] == logs.MASK
    assert SECRET not in stream.getvalue()


def test_a_secret_is_masked_in_its_json_escaped_form_too() -> None:
    secret = 'pa"ss\\word'
    stream = configured("json")
    logs.register_secret(secret)
    logging.getLogger("connector").info("cfg", extra={"conf": {"p": secret}})
    raw = stream.getvalue()
    assert 'pa\\"ss\\\\word' not in raw
    assert logs.MASK in raw


def test_too_short_or_empty_values_are_not_registered() -> None:
    stream = configured("text")
    logs.register_secret("", None, "abc")
    logging.getLogger("connector").info("abc stays readable")
    assert "abc stays readable" in stream.getvalue()


def test_the_longest_secret_is_masked_whole() -> None:
    stream = configured("text")
    logs.register_secret("abcd", "abcdefgh")
    logging.getLogger("connector").info("value abcdefgh")
    assert stream.getvalue().rstrip().endswith(f"value {logs.MASK}")


def test_a_malformed_log_call_cannot_leak_a_secret(capsys: pytest.CaptureFixture[str]) -> None:
    stream = configured("text")
    logs.register_secret(SECRET)
    logging.getLogger("connector").info("two %s %s", SECRET)  # noqa: PLE1206 - on purpose
    assert SECRET not in stream.getvalue()
    assert SECRET not in capsys.readouterr().err  # logging's own error report


def test_settings_secrets_are_registered_in_one_call() -> None:
    settings = load_settings(
        environ={
            "TOLOKA_API_KEY": SECRET,
            "TOLOKA_APP_PROJECT_ID": "p1",
            "KAFKA_SASL_USERNAME": "connector-user",
            "KAFKA_SASL_PASSWORD": "kafka-pass-123",
        }
    )
    stream = configured("text")
    logs.register_settings_secrets(settings)
    logging.getLogger("connector").info("%s %s %s", SECRET, "kafka-pass-123", "connector-user")
    assert stream.getvalue().rstrip().endswith(f"{logs.MASK} {logs.MASK} connector-user")


def test_librdkafka_connection_failures_are_debug_lines() -> None:
    """A broker that is down makes librdkafka log a FAIL line per attempt, dozens a second per
    client: the Kafka availability tracker reports the outage instead."""
    stream = configured("text")
    kafka_log = logs.kafka_logger()
    refused = "b:9092/bootstrap: Connect to ipv4#10.0.0.1:9092 failed: Connection refused"
    cut = "GroupCoordinator: kafka: error:0A000114:SSL routines::uninitialized"
    for _ in range(100):
        kafka_log.error("%s [%s] %s", "FAIL", "rdkafka#consumer-1", refused)
        kafka_log.error("%s [%s] %s", "SSL", "rdkafka#consumer-1", cut)
    kafka_log.warning("%s [%s] %s", "GETPID", "rdkafka#producer-2", "retrying")
    assert stream.getvalue().count("\n") == 1
    assert "GETPID" in stream.getvalue()
    stream = configured("text", "DEBUG")
    kafka_log.error("%s [%s] %s", "FAIL", "rdkafka#consumer-1", refused)
    assert f"DEBUG   connector.librdkafka: FAIL [rdkafka#consumer-1] {refused}" in stream.getvalue()
