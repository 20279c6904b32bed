"""Refused connections told apart from unreachable brokers, each naming the settings to check.

The failure texts are librdkafka 2.16's, recorded against Kafka 4.1's SASL_SSL (SCRAM-SHA-512),
mutual-TLS and plain listeners (tests/integration/test_secured_kafka.py meets each for real).
"""

from __future__ import annotations

import contextlib
import logging
import re
import socket
import ssl
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import KafkaError

import connector.kafka.refusals as refusals
from connector.devtools.brokers.security import make_certificates, openssl_available
from connector.errors import KafkaRefusedError
from connector.kafka.refusals import (
    Refusal,
    RefusalWatch,
    known_to_speak_tls,
    refusal,
    refusal_of_error,
    speaks_tls,
)
from connector.kafka.steps import within

SASL = "sasl_ssl://127.0.0.1:55153/bootstrap: "
MTLS = "ssl://127.0.0.1:40631/bootstrap: "
PLAIN = "127.0.0.1:53691/bootstrap: "

REFUSALS = [
    (
        SASL + "SASL authentication error: Authentication failed during authentication due to "
        "invalid credentials with SASL mechanism SCRAM-SHA-512 (after 316ms in state AUTH_REQ)",
        "SASL authentication failed",
        "KAFKA_SASL_USERNAME and KAFKA_SASL_PASSWORD",
    ),
    (
        SASL + "SASL SCRAM-SHA-256 mechanism handshake failed: Broker: Unsupported SASL "
        "mechanism: broker's supported mechanisms: SCRAM-SHA-512 (after 303ms in state "
        "AUTH_HANDSHAKE)",
        "the broker does not offer this SASL mechanism (it offers SCRAM-SHA-512)",
        "KAFKA_SASL_MECHANISM",
    ),
    (
        "sasl_plaintext://127.0.0.1:53691/bootstrap: SASL SCRAM-SHA-512 mechanism handshake "
        "failed: Broker: Request not valid in current SASL state: broker's supported "
        "mechanisms:  (after 5ms in state AUTH_HANDSHAKE)",
        "the listener does not speak SASL",
        "KAFKA_SECURITY_PROTOCOL",
    ),
    (
        SASL + "SSL handshake failed: error:0A000086:SSL routines::certificate verify failed: "
        "broker certificate could not be verified, verify that ssl.ca.location is correctly "
        "configured or root CA certificates are installed (install ca-certificates package) "
        "(after 3ms in state SSL_HANDSHAKE)",
        "the broker's certificate could not be verified",
        "KAFKA_SSL_CA_LOCATION",
    ),
    (
        SASL + "error:0A000086:SSL routines::certificate verify failed (after 28ms in state "
        "SSL_HANDSHAKE)",
        "the broker's certificate could not be verified",
        "KAFKA_SSL_CA_LOCATION",
    ),
    (
        MTLS + "Receive failed: error:0A000412:SSL routines::ssl/tls alert bad certificate: SSL "
        "alert number 42 (after 1ms in state APIVERSION_QUERY)",
        "the broker did not accept the client certificate",
        "KAFKA_SSL_CERTIFICATE_LOCATION and KAFKA_SSL_KEY_LOCATION",
    ),
    (  # not seen here (Kafka's TLS stack answers bad_certificate), but OpenSSL names it so
        MTLS + "Receive failed: error:0A00045C:SSL routines::tlsv13 alert certificate required: "
        "SSL alert number 116 (after 2ms in state APIVERSION_QUERY)",
        "the broker did not accept the client certificate",
        "KAFKA_SSL_CERTIFICATE_LOCATION and KAFKA_SSL_KEY_LOCATION",
    ),
    (
        "ssl://127.0.0.1:53691/bootstrap: SSL handshake failed: Disconnected: SSL connection "
        "closed by peer: connecting to a PLAINTEXT broker listener? (after 10ms in state "
        "SSL_HANDSHAKE)",
        "the listener does not speak TLS",
        "KAFKA_SECURITY_PROTOCOL",
    ),
    (
        TLS_LISTENER_CLOSED := "[thrd:127.0.0.1:40631/bootstrap]: 127.0.0.1:40631/bootstrap: "
        "Disconnected: connection closed by peer: receive 0 after POLLIN (after 2ms in state "
        "APIVERSION_QUERY)",
        "the listener speaks TLS, this client does not",
        "KAFKA_SECURITY_PROTOCOL (SSL or SASL_SSL",
    ),
    (
        "[thrd:sasl_plaintext://127.0.0.1:55153/bootstrap]: sasl_plaintext://127.0.0.1:55153/"
        "bootstrap: Disconnected: connection closed by peer: receive 0 after POLLIN (after 2ms "
        "in state APIVERSION_QUERY)",
        "the listener speaks TLS, this client does not",
        "KAFKA_SECURITY_PROTOCOL (SSL or SASL_SSL",
    ),
    (
        "[thrd:ssl://127.0.0.1:55153/bootstrap]: ssl://127.0.0.1:55153/bootstrap: Disconnected: "
        "SSL connection closed by peer (after 2ms in state UP)",
        "as a SASL listener does to a client that does not authenticate",
        "KAFKA_SECURITY_PROTOCOL (SASL_SSL or SASL_PLAINTEXT",
    ),
]
SOON_CLOSED = REFUSALS[-1][0]


@pytest.mark.parametrize(("failure", "what", "check"), REFUSALS)
def test_each_refusal_says_what_happened_and_the_settings_to_check(
    failure: str, what: str, check: str
) -> None:
    found = refusal(failure)
    assert found is not None
    assert what in found.what
    assert found.check.startswith(check)
    assert not found.detail.startswith(("sasl_ssl://", "ssl://", "127.0.0.1", "[thrd:"))
    assert "(after " not in found.detail, "timings differ on every attempt"
    assert found.tentative is (failure == SOON_CLOSED)
    # Only a plaintext connection closed before its first answer waits for a TLS handshake.
    listener = re.search(r"(127\.0\.0\.1:\d+)/bootstrap: Disconnected", failure)
    assert found.tls_listener == (listener[1] if listener and "speaks TLS" in what else None)


@pytest.fixture
def listeners(tmp_path: Path) -> Iterator[dict[str, str]]:
    """A TLS listener (requiring a client certificate), a plain one that closes what it gets
    (as Kafka's plain listener does with a TLS hello), and a closed port."""
    if not openssl_available():
        pytest.skip("openssl is not on PATH")
    certificates = make_certificates(tmp_path, "pw")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(certificates.broker_key_store)
    context.verify_mode = ssl.CERT_REQUIRED
    context.load_verify_locations(certificates.ca)
    servers = {"tls": socket.create_server(("127.0.0.1", 0)),
               "plain": socket.create_server(("127.0.0.1", 0))}  # fmt: skip
    stop = threading.Event()

    def serve(name: str, server: socket.socket) -> None:
        server.settimeout(0.1)
        while not stop.is_set():
            try:
                connection, _ = server.accept()
            except TimeoutError:
                continue
            with connection:
                if name == "tls":
                    with contextlib.suppress(OSError):
                        context.wrap_socket(connection, server_side=True).recv(1)
                else:
                    connection.recv(5)

    threads = [threading.Thread(target=serve, args=item, daemon=True) for item in servers.items()]
    for thread in threads:
        thread.start()
    closed = socket.create_server(("127.0.0.1", 0))
    closed_port = closed.getsockname()[1]
    closed.close()
    yield {
        **{name: f"127.0.0.1:{server.getsockname()[1]}" for name, server in servers.items()},
        "closed": f"127.0.0.1:{closed_port}",
    }
    stop.set()
    for thread in threads:
        thread.join()
    for server in servers.values():
        server.close()


def test_only_a_listener_that_answers_a_tls_handshake_speaks_tls(
    listeners: dict[str, str],
) -> None:
    assert speaks_tls(listeners["tls"]) is True
    assert speaks_tls(listeners["plain"]) is False
    assert speaks_tls(listeners["closed"]) is False
    assert known_to_speak_tls(listeners["tls"]) is True, "remembered"
    assert known_to_speak_tls(listeners["plain"]) is False, "remembered"
    assert known_to_speak_tls("127.0.0.1:1") is None, "never probed"
    # Not reached at all (a broker restarting): no answer either way, so nothing remembered, and
    # the TLS refusal seen then can still be confirmed once the listener is back.
    assert known_to_speak_tls(listeners["closed"]) is None
    disconnected = (
        f"{listeners['plain']}/bootstrap: Disconnected: connection closed by peer: "
        "receive 0 after POLLIN (after 2ms in state APIVERSION_QUERY)"
    )
    found = refusal(disconnected)
    assert found is not None
    assert not found.confirmed(), "a plain listener that closes connections refuses nothing"


NOT_REFUSALS = [
    PLAIN + "Connect to ipv4#127.0.0.1:53691 failed: Connection refused (after 0ms in state "
    "CONNECT)",
    "nope:9092/bootstrap: Failed to resolve 'nope:9092': Name or service not known (after 1ms "
    "in state CONNECT)",
    # A broker closing an established connection (idle, or shutting down).
    "127.0.0.1:47907/1: Disconnected: connection closed by peer: receive 0 after POLLIN (after "
    "1916ms in state UP)",
    # A TLS connection closed before its first answer, without an alert: no telling why.
    MTLS + "Disconnected: connection closed by peer: receive 0 after POLLIN (after 3ms in state "
    "APIVERSION_QUERY)",
    # A connection of a SASL client closed young, or one closed after a while (idle).
    "sasl_ssl://127.0.0.1:55153/1: Disconnected: SSL connection closed by peer (after 2ms in "
    "state UP)",
    "ssl://127.0.0.1:55153/1: Disconnected: SSL connection closed by peer (after 600012ms in "
    "state UP)",
    "1/1 brokers are down",
    "Failed to get metadata: Local: Broker transport failure",
]


@pytest.mark.parametrize("failure", NOT_REFUSALS)
def test_an_unreachable_or_restarting_broker_is_no_refusal(failure: str) -> None:
    assert refusal(failure) is None


def test_only_connection_failure_codes_are_read() -> None:
    text = REFUSALS[0][0]
    assert refusal_of_error(KafkaError(KafkaError._AUTHENTICATION, text)) is not None
    assert refusal_of_error(KafkaError(KafkaError._TRANSPORT, REFUSALS[5][0])) is not None
    assert refusal_of_error(KafkaError(KafkaError._ALL_BROKERS_DOWN, text)) is None
    assert refusal_of_error(KafkaError(KafkaError._TRANSPORT, NOT_REFUSALS[0])) is None


def test_the_line_names_where_what_the_settings_and_librdkafkas_words() -> None:
    found = Refusal("SASL authentication failed", "KAFKA_SASL_PASSWORD", "Authentication failed")
    assert found.describe("b1:9093,b2:9093") == (
        "Kafka at b1:9093,b2:9093 refused the connection: SASL authentication failed; check "
        "KAFKA_SASL_PASSWORD (librdkafka: Authentication failed)"
    )
    assert found.describe("b1:9093", 31.4).startswith(
        "Kafka at b1:9093 refused every connection for 31s since start-up: SASL authentication"
    )


class FakeClient:
    """A client whose `poll()` serves the callbacks librdkafka queued: an error, a log line."""

    def __init__(self, config: dict[str, Any]) -> None:
        self.config = config
        self.queued: list[Callable[[], None]] = []

    def log(self, level: int, line: str) -> None:
        self.queued.append(
            lambda: self.config["logger"].log(level, "%s [%s] %s", "FAIL", "rdkafka#x-1", line)
        )

    def poll(self, timeout: float) -> int:
        queued, self.queued = self.queued, []
        for serve in queued:
            serve()
        return len(queued)


def test_a_watch_raises_once_a_refusal_was_served_and_leaves_the_clients_errors_alone() -> None:
    watch = RefusalWatch("b1:9093")
    config = watch.config({"bootstrap.servers": "b1:9093"})
    # A consumer with an error_cb would no longer see generic errors among its messages.
    assert "error_cb" not in config
    client = FakeClient(config)
    client.log(logging.ERROR, NOT_REFUSALS[0])
    watch.raise_if_refused(client)  # an unreachable broker: the wait goes on
    client.log(logging.ERROR, REFUSALS[0][0])
    with pytest.raises(KafkaRefusedError) as raised:
        watch.raise_if_refused(client)
    assert str(raised.value).startswith("Kafka at b1:9093 refused the connection: SASL auth")
    assert raised.value.refusal.check == "KAFKA_SASL_USERNAME and KAFKA_SASL_PASSWORD"


def test_a_refusal_only_logged_is_seen_whatever_the_log_level(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(refusals._tls_answers, "127.0.0.1:40631", True)  # probed before
    caplog.set_level(logging.ERROR)  # the INFO line is never made into a record
    watch = RefusalWatch("b1:9093")
    client = FakeClient(watch.config({"bootstrap.servers": "b1:9093"}))
    client.log(logging.INFO, TLS_LISTENER_CLOSED)
    with pytest.raises(KafkaRefusedError, match="check KAFKA_SECURITY_PROTOCOL"):
        watch.raise_if_refused(client)
    assert caplog.records == []


def test_a_tentative_refusal_holds_once_it_is_seen_again() -> None:
    watch = RefusalWatch("b1:9093")
    client = FakeClient(watch.config({"bootstrap.servers": "b1:9093"}))
    client.log(logging.WARNING, SOON_CLOSED)
    watch.raise_if_refused(client)  # once: a broker shutting down does that too
    client.log(logging.WARNING, SOON_CLOSED)
    with pytest.raises(KafkaRefusedError, match="as a SASL listener does"):
        watch.raise_if_refused(client)


def test_librdkafkas_lines_still_reach_the_log_through_the_watch(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger="connector.librdkafka")
    watch = RefusalWatch("b1:9093")
    client = FakeClient(watch.config({"bootstrap.servers": "b1:9093"}))
    client.log(logging.ERROR, NOT_REFUSALS[0])
    client.poll(0)
    [record] = caplog.records
    assert record.getMessage().endswith("Connection refused (after 0ms in state CONNECT)")
    assert record.levelno == logging.DEBUG, "connection failures stay DEBUG lines"


def test_within_ends_the_wait_when_between_raises() -> None:
    from confluent_kafka import KafkaException  # noqa: PLC0415

    calls: list[float] = []

    def unanswered(step: float) -> None:
        calls.append(step)
        raise KafkaException(KafkaError(KafkaError._TRANSPORT, "no answer"))

    def refused() -> None:
        if len(calls) == 2:
            raise KafkaRefusedError(Refusal("w", "KAFKA_X", "d"), "b1:9093")

    with pytest.raises(KafkaRefusedError):
        within(unanswered, 30.0, refused)
    assert len(calls) == 2
