"""`KAFKA_<PROPERTY>` passthrough: variable and property names, which are secret, which the
connector owns, and librdkafka's verdict on the rest.

A `KAFKA_<PROPERTY>` variable is a librdkafka property upper-cased with dots as underscores
(`KAFKA_SECURITY_PROTOCOL` → `security.protocol`). librdkafka itself decides whether a name and
value are valid: a throwaway producer is created with them, which reads no network.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from connector.interrupts import librdkafka_call
from connector.logs import MASK

_SECRET_PROPERTY_WORDS = ("password", "secret", "jaas", "key.pem", "ssl.key", "token")

_OFFSETS_ARE_OURS = (
    "the connector commits an input offset only once its record is uploaded or dead-lettered "
    "(CONNECTOR_COMMIT_INTERVAL_MS sets how often)"
)
OWNED_KAFKA_PROPERTIES: Mapping[str, str] = {
    "group.id": "use CONNECTOR_GROUP_ID (the poller and the tools derive theirs from it)",
    "enable.auto.commit": _OFFSETS_ARE_OURS,
    "enable.auto.offset.store": _OFFSETS_ARE_OURS,
    "auto.commit.interval.ms": _OFFSETS_ARE_OURS,
    "auto.commit.enable": _OFFSETS_ARE_OURS,
    "isolation.level": (
        "the connector reads with read_committed, so no cursor or record of an aborted "
        "transaction is ever taken for real"
    ),
    "enable.idempotence": (
        "the connector's producers are idempotent, so a retried send never writes a dead "
        "letter or a replayed record twice"
    ),
    "transactional.id": (
        "the poller's is toloka-connector-poller-<TOLOKA_APP_PROJECT_ID>, so that each new "
        "leader fences the previous one"
    ),
    "transaction.timeout.ms": "use CONNECTOR_TRANSACTION_TIMEOUT_SECONDS",
    "enable.partition.eof": "each of the connector's consumers needs its own value",
    "delivery.report.only.error": (
        "a dead letter or a replayed record counts as written only when its delivery report "
        "comes, so those producers need every report; the poller's asks only for failures"
    ),
    "logger": "librdkafka's lines go to the connector's log (CONNECTOR_LOG_LEVEL)",
}
"""librdkafka properties the connector sets on its clients itself, and why a user's value would
be wrong or ignored. Every other property a user sets reaches every client unchanged; what the
connector merely defaults (`linger.ms`, `auto.offset.reset`, `partition.assignment.strategy` …)
the user's value replaces (tests/unit/test_kafka_properties.py checks both)."""

RAISED_KAFKA_PROPERTIES: Mapping[str, str] = {
    "message.max.bytes": (
        "producers that copy records they read (dead letters, replays) raise it so that any "
        "record the consumer can receive fits whole; a larger value of the user's stands"
    ),
}
"""librdkafka properties the connector may raise above a user's value (never lower)."""

# confluent-kafka's own keys, handled in Python: neither reaches librdkafka as a property.
PYTHON_CLIENT_KEYS = frozenset({"default.topic.config"})

# Every producer the connector makes is idempotent (the poller's is transactional, which implies
# it), so a property that contradicts idempotence is a configuration error, found at start-up.
_PRODUCER_GUARANTEES = {"enable.idempotence": "true"}


def transactional_producer_settings(
    kafka_config: Mapping[str, Any], transactional_id: str, transaction_timeout_seconds: float
) -> dict[str, Any]:
    """The settings of a transactional producer (the poller's, `reset-cursor`'s): checked here
    at start-up, used by `connector.kafka.transactions`."""
    return {
        "linger.ms": 5,  # a default: a user's KAFKA_LINGER_MS wins
        **kafka_config,
        # Only failed deliveries are read (a refusal); a report of each record delivered would
        # build a Message and call Python for it.
        "delivery.report.only.error": True,
        "enable.idempotence": True,  # transactions need it: a KAFKA_ setting cannot turn it off
        "transactional.id": transactional_id,
        "transaction.timeout.ms": int(transaction_timeout_seconds * 1000),
    }


def is_secret_kafka_property(prop: str) -> bool:
    return any(word in prop for word in _SECRET_PROPERTY_WORDS)


def mask_kafka_value(prop: str, value: str) -> str:
    return MASK if is_secret_kafka_property(prop) else value


def kafka_variable(prop: str) -> str:
    return "KAFKA_" + prop.replace(".", "_").upper()


def kafka_property(variable: str) -> str:
    return variable.removeprefix("KAFKA_").lower().replace("_", ".")


_silent = logging.getLogger("connector.config.librdkafka")
_silent.addHandler(logging.NullHandler())
_silent.propagate = False


def new_producer_error(conf: Mapping[str, str]) -> str | None:
    """librdkafka's complaint about a configuration, or None when a client starts with it.

    The throwaway producer is given no `bootstrap.servers` (librdkafka only stores and parses
    it at creation): with it, every producer created here would connect, and on a SASL cluster
    authenticate, once per property checked. Ctrl-C is held while librdkafka runs (its logger
    is a Python callback).
    """
    from confluent_kafka import KafkaException, Producer  # noqa: PLC0415 - heavy import

    offline = {prop: value for prop, value in conf.items() if prop != "bootstrap.servers"}
    try:
        with librdkafka_call():
            Producer({**offline, "logger": _silent})
    except KafkaException as exc:
        return str(exc.args[0].str() if exc.args else exc)
    return None


def librdkafka_problems(properties: Mapping[str, str]) -> list[str]:
    """One line per KAFKA_<PROPERTY> that librdkafka rejects, naming the variable.

    Properties are added one at a time, so a name or value error is pinned on its property;
    errors that only appear when the client starts (a SASL mechanism this build lacks, `acks=1`
    next to the connector's idempotence) concern the properties together, and are pinned on
    those that fail on their own.
    """
    problems: list[str] = []
    accepted: dict[str, str] = {}
    for prop, value in sorted(properties.items()):
        error = new_producer_error({**accepted, prop: value})
        if error is None or error.startswith("Failed to create"):
            accepted[prop] = value
        elif "No such configuration property" in error:
            problems.append(f"{kafka_variable(prop)}: is not a librdkafka property")
        elif is_secret_kafka_property(prop):
            problems.append(f"{kafka_variable(prop)}: has an invalid value")
        else:
            problems.append(f"{kafka_variable(prop)}: {value!r} is rejected by librdkafka: {error}")
    if problems:
        return problems
    error = new_producer_error({**accepted, **_PRODUCER_GUARANTEES})
    if error is None:
        return []
    for prop, value in accepted.items():
        if is_secret_kafka_property(prop) and value:
            error = error.replace(value, MASK)
    error = error.removeprefix("Failed to create producer: ")
    named = _named_in(error, accepted)
    unreadable = next(
        (problem for prop in named if (problem := _unreadable_file(prop, accepted)) is not None),
        None,
    )
    if unreadable is not None:
        return [unreadable]
    if not named:
        named = [
            prop
            for prop, value in accepted.items()
            if prop != "bootstrap.servers"
            and new_producer_error({prop: value, **_PRODUCER_GUARANTEES}) is not None
        ] or list(accepted)
    named, hint = _with_related(named, error)
    names = ", ".join(kafka_variable(prop) for prop in named)
    return [f"{names}: librdkafka cannot start the connector's clients with this: {error}{hint}"]


_DOTTED_NAME = re.compile(r"\b[a-z][a-z0-9_]*(?:\.[a-z0-9_]+)+\b")


def _named_in(error: str, accepted: Mapping[str, str]) -> list[str]:
    """The properties librdkafka's error names, in its order: those set ("ssl.key.location
    failed: …") and those missing ("sasl.username and sasl.password must be set"). Not those
    the connector sets itself, nor the ones librdkafka quotes in its idempotence checks
    ("`max.in.flight` must be set <= 5"): they name a property set under another of its names,
    which the fallback finds."""
    named: list[str] = []
    for word in _DOTTED_NAME.findall(error):
        if word in named or word in OWNED_KAFKA_PROPERTIES:
            continue
        if word in accepted:
            named.append(word)
        elif f"`{word}`" not in error:
            unknown = new_producer_error({word: ""})
            if unknown is None or "No such configuration property" not in unknown:
                named.append(word)
    return named


def _unreadable_file(prop: str, accepted: Mapping[str, str]) -> str | None:
    """A file property whose file cannot be read: said plainly, not in OpenSSL's words
    ("BIO lib", "system lib")."""
    path = accepted.get(prop)
    if not prop.endswith(".location") or not path or path == "probe":
        return None
    try:
        with Path(path).open("rb"):
            return None
    except IsADirectoryError:
        return None  # a directory of CA certificates is what ssl.ca.location may name
    except OSError as exc:
        return f"{kafka_variable(prop)}: cannot read {path} ({exc.strerror})"


def _with_related(named: list[str], error: str) -> tuple[list[str], str]:
    """`named` plus the settings that go with them in the error's cause, and a hint."""
    if "ssl.key.location" not in named:
        return named, ""
    if "key values mismatch" in error:
        return [*named, "ssl.certificate.location"], " (the key is not the certificate's)"
    return [*named, "ssl.key.password"], (
        " (a key that is not PEM, or one KAFKA_SSL_KEY_PASSWORD does not decrypt)"
    )
