"""Brokers that refuse this client: wrong credentials, an untrusted certificate, the wrong security
protocol. Each refusal is told apart from an unreachable broker and names the settings to check.

librdkafka handles a refused connection like a broker it cannot reach: it retries with backoff,
forever, and a request made meanwhile ends in `_TRANSPORT` or `_TIMED_OUT` after its whole
timeout, without the reason. The reason reaches the application two ways, both only while the
client is polled: `error_cb` (`_AUTHENTICATION`, `_SSL`, `_TRANSPORT`) and a log line of facility
FAIL. Two refusals reach only the log line (below: a TLS listener closing a plaintext
connection, a SASL listener closing a connection that does not authenticate), so every client
that waits for Kafka's first answer reads its log lines (`RefusalWatch`: the one-shot commands,
and the running roles' topic watch); the running roles' clients report `error_cb` to the Kafka
availability tracker too.

`refusal(failure)` reads one failure description and says what it shows; None when it is no
refusal (connection refused, timeouts, name resolution: a broker that is down or unreachable
may come back). What librdkafka 2.16 says against Kafka 4.1, by the words recognised (the whole
texts are in tests/unit/test_kafka_refusals.py; tests/integration/test_secured_kafka.py runs
each case):

- a wrong password or user name: "SASL authentication error: Authentication failed …";
- a mechanism the listener does not offer: "SASL SCRAM-SHA-256 mechanism handshake failed: …
  broker's supported mechanisms: SCRAM-SHA-512"; SASL_PLAINTEXT to a PLAINTEXT listener says
  the same with no mechanism after the colon;
- a CA that did not sign the broker's certificate: "… certificate verify failed …";
- no client certificate, or one the broker does not trust: "… ssl/tls alert bad certificate"
  (in state APIVERSION_QUERY: TLS 1.3 finishes the client's side of the handshake first);
- SSL or SASL_SSL to a PLAINTEXT listener: "… connecting to a PLAINTEXT broker listener?";
- PLAINTEXT or SASL_PLAINTEXT to a TLS listener: "Disconnected: connection closed by peer: …
  (after 2ms in state APIVERSION_QUERY)", in a log line only. Other listeners close a
  connection so too (a broker over its `max.connections`, a load balancer without a healthy
  target), so this one counts only once the listener was seen to answer a TLS handshake
  (`speaks_tls`: one probe per address, remembered);
- SSL or PLAINTEXT to a SASL listener: "Disconnected: SSL connection closed by peer (after 2ms
  in state UP)", in a log line only: the broker answers ApiVersions, then closes the connection
  at the first request that is not SASL's. A connection closed so soon after it was made is
  counted as this refusal only when it happens again (`tentative`): a broker that shuts down
  closes young connections too.

Refusals that librdkafka finds before any connection (a certificate file it cannot read, a key
password that does not decrypt the key) stop the client's creation: those are configuration
errors (`connector.kafka_properties`), exit 2.
"""

from __future__ import annotations

import re
import socket
import ssl
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from confluent_kafka import KafkaError

from connector.errors import KafkaRefusedError
from connector.logs import CONNECTION_FAILURE_FACILITIES, kafka_logger

_ADDRESS = re.compile(
    r"^(?:\[thrd:[^\]]*\]: )?(?:(?P<protocol>[a-z_]+)://)?(?P<address>\S+?)/[^:\s]+: "
)
"""A failure's prefix: the thread (log lines only), then the broker (`sasl_ssl://host:port/id`;
no scheme for plaintext)."""
_TIMING = re.compile(r" \(after (?P<ms>\d+)ms in state (?P<state>[A-Z_]+)\)(?: \(_[A-Z_]+\))?$")
_SOON_AFTER_CONNECTING_MS = 1000
_SUPPORTED = re.compile(r"broker's supported mechanisms: ?(?P<mechanisms>[^()]*?)\s*$")
_CLIENT_CERTIFICATE_ALERTS = re.compile(
    r"alert (bad certificate|certificate required|unknown ca|certificate unknown|"
    r"certificate revoked|certificate expired|unsupported certificate|access denied)"
)
_TLS_PROTOCOLS = frozenset({"ssl", "sasl_ssl"})
_SASL_PROTOCOLS = frozenset({"sasl_ssl", "sasl_plaintext"})
_REFUSAL_CODES = frozenset({KafkaError._AUTHENTICATION, KafkaError._SSL, KafkaError._TRANSPORT})
"""The `error_cb` codes a refusal may come with (most `_TRANSPORT` errors are not one)."""

SECURITY_PROTOCOL = "KAFKA_SECURITY_PROTOCOL"
CLIENT_CERTIFICATE = (
    "KAFKA_SSL_CERTIFICATE_LOCATION and KAFKA_SSL_KEY_LOCATION (a certificate signed by a CA "
    "the broker trusts)"
)


_PROBE_TIMEOUT_SECONDS = 2.0
_tls_answers: dict[str, bool] = {}
_tls_answers_lock = threading.Lock()


def speaks_tls(address: str) -> bool:
    """Whether the listener at `host:port` answers a TLS handshake (whatever it then thinks of
    this client); an answer is remembered, so each address is probed until it answers once (a
    listener that cannot be reached gives none: False, probed again next time)."""
    with _tls_answers_lock:
        known = _tls_answers.get(address)
    if known is not None:
        return known
    host, _, port = address.rpartition(":")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE  # only whether it speaks TLS: nothing is sent over it
    try:
        raw = socket.create_connection((host.strip("[]"), int(port)), _PROBE_TIMEOUT_SECONDS)
    except (OSError, ValueError):
        return False  # not reached (a broker restarting): no answer to remember
    try:
        with raw, context.wrap_socket(raw):
            answered = True
    except ssl.SSLError as exc:  # an alert is TLS too (a listener refusing this client)
        answered = "ALERT" in str(exc.reason or "")
    except OSError:  # reached, and it hung up on the handshake: it does not speak TLS
        answered = False
    with _tls_answers_lock:
        _tls_answers[address] = answered
    return answered


def known_to_speak_tls(address: str) -> bool | None:
    """What `speaks_tls` found for `address`, without probing (None: not probed yet)."""
    with _tls_answers_lock:
        return _tls_answers.get(address)


@dataclass(frozen=True)
class Refusal:
    """What a refused connection shows: `what` happened, the settings to `check`, and
    librdkafka's own words (`detail`, without the broker address and timing).

    `tls_listener`: the address of a listener that closed a plaintext connection before its
    first answer; the refusal holds only if that listener speaks TLS (`confirmed()`).
    `tentative`: the refusal holds only once it is seen a second time."""

    what: str
    check: str
    detail: str
    tls_listener: str | None = None
    tentative: bool = False

    def confirmed(self) -> bool:
        """Whether this is a refusal for sure (may probe the listener once: up to 2 s)."""
        return self.tls_listener is None or speaks_tls(self.tls_listener)

    def known(self) -> bool:
        """Whether this is known to be a refusal, without probing."""
        return self.tls_listener is None or known_to_speak_tls(self.tls_listener) is True

    def describe(self, bootstrap_servers: str, lasting: float | None = None) -> str:
        """One line: where, what (for how long since start-up), the settings to check, then
        librdkafka's words."""
        refused = (
            "refused the connection"
            if lasting is None
            else f"refused every connection for {lasting:.0f}s since start-up"
        )
        return (
            f"Kafka at {bootstrap_servers} {refused}: {self.what}; "
            f"check {self.check} (librdkafka: {self.detail})"
        )


def refusal(failure: str) -> Refusal | None:
    """The refusal a librdkafka connection failure shows, or None when it shows none."""
    address = _ADDRESS.match(failure)
    protocol = (address.group("protocol") if address else None) or "plaintext"
    listener = address.group("address") if address else None
    detail = failure[address.end() :] if address else failure
    timing = _TIMING.search(detail)
    state = timing.group("state") if timing else ""
    after_ms = int(timing.group("ms")) if timing else None
    detail = detail[: timing.start()] if timing else detail

    if "mechanism handshake failed" in detail:
        supported = _SUPPORTED.search(detail)
        offered = supported.group("mechanisms").strip() if supported else ""
        if supported is not None and not offered:
            return Refusal("the listener does not speak SASL", SECURITY_PROTOCOL, detail)
        offers = f" (it offers {offered})" if offered else ""
        return Refusal(
            f"the broker does not offer this SASL mechanism{offers}",
            "KAFKA_SASL_MECHANISM",
            detail,
        )
    if "SASL authentication error" in detail or "Authentication failed" in detail:
        return Refusal(
            "SASL authentication failed", "KAFKA_SASL_USERNAME and KAFKA_SASL_PASSWORD", detail
        )
    if "SASL" in detail and "failed" in detail:
        return Refusal("SASL authentication failed", "the KAFKA_SASL_* settings", detail)
    if "connecting to a PLAINTEXT broker listener" in detail:
        return Refusal("the listener does not speak TLS", SECURITY_PROTOCOL, detail)
    if "certificate verify failed" in detail:
        return Refusal(
            "the broker's certificate could not be verified",
            "KAFKA_SSL_CA_LOCATION (the CA that signed the brokers' certificates; the "
            "certificate must also name the host of KAFKA_BOOTSTRAP_SERVERS)",
            detail,
        )
    if _CLIENT_CERTIFICATE_ALERTS.search(detail):
        return Refusal(
            "the broker did not accept the client certificate (none, or one it does not trust)",
            CLIENT_CERTIFICATE,
            detail,
        )
    if "SSL handshake failed" in detail:
        return Refusal(
            "the TLS handshake failed", f"{SECURITY_PROTOCOL} and the KAFKA_SSL_* settings", detail
        )
    if (
        protocol not in _TLS_PROTOCOLS
        and state == "APIVERSION_QUERY"
        and detail.startswith("Disconnected")
        and listener is not None
    ):
        return Refusal(
            "the listener speaks TLS, this client does not",
            f"{SECURITY_PROTOCOL} (SSL or SASL_SSL for a TLS listener)",
            detail,
            tls_listener=listener,
        )
    if (
        protocol not in _SASL_PROTOCOLS
        and state == "UP"
        and detail.startswith("Disconnected")
        and after_ms is not None
        and after_ms < _SOON_AFTER_CONNECTING_MS
    ):
        return Refusal(
            "the listener closed the connection as soon as it was made, as a SASL listener "
            "does to a client that does not authenticate",
            f"{SECURITY_PROTOCOL} (SASL_SSL or SASL_PLAINTEXT, with KAFKA_SASL_*, for a SASL "
            "listener)",
            detail,
            tentative=True,
        )
    return None


def refusal_of_error(error: KafkaError) -> Refusal | None:
    """The refusal an `error_cb` error shows, or None."""
    return refusal(error.str()) if error.code() in _REFUSAL_CODES else None


class _ObservingLogger:
    """A client's `logger`: hands each connection failure line to `observe`, whatever the log
    level (a line below it is never made into a record), then logs every line as before."""

    def __init__(self, observe: Callable[[str], None]) -> None:
        self._observe = observe
        self._logger = kafka_logger()

    def log(self, level: int, msg: str, *args: Any) -> None:
        if msg == "%s [%s] %s" and len(args) == 3 and args[0] in CONNECTION_FAILURE_FACILITIES:
            self._observe(str(args[2]))
        self._logger.log(level, msg, *args)


class Pollable(Protocol):
    def poll(self, timeout: float) -> Any: ...


class RefusalWatch:
    """The refusals one client met. `config()` wires a client's configuration to it;
    `raise_if_refused(client)` serves the client's callbacks and raises KafkaRefusedError once
    a refusal came. For a one-shot command's first contact with Kafka: it fails at once instead
    of at the end of its timeout.

    It reads the client's log lines only: every refusal is a FAIL line, and a consumer given an
    `error_cb` no longer sees librdkafka's generic errors among its messages, which the
    commands' reads act on."""

    def __init__(self, bootstrap_servers: str) -> None:
        self.bootstrap_servers = bootstrap_servers
        self._lock = threading.Lock()
        self._refused: Refusal | None = None
        self._tentative: set[str] = set()
        """The tentative refusals seen once (by `what`)."""

    def config(self, config: Mapping[str, Any]) -> dict[str, Any]:
        """`config` with the logger that reports to this watch (and logs as before)."""
        return {**config, "logger": _ObservingLogger(lambda line: self._seen(refusal(line)))}

    def _seen(self, refused: Refusal | None) -> None:
        if refused is None:
            return
        with self._lock:
            if refused.tentative and refused.what not in self._tentative:
                self._tentative.add(refused.what)
            else:
                self._refused = refused

    def raise_if_refused(self, client: Pollable) -> None:
        """Only for a client with nothing to consume (an admin client, a producer, a consumer
        before it is assigned): its `poll(0)` serves callbacks only."""
        client.poll(0)
        with self._lock:
            refused = self._refused
        if refused is not None and refused.confirmed():
            raise KafkaRefusedError(refused, self.bootstrap_servers)
