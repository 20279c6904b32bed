"""Secured Kafka, for real: the console script through a SASL_SSL (SCRAM-SHA-512) listener and a
mutual-TLS listener of a real broker, with the settings the README's examples set, and every
misconfiguration ending in one line that names the settings to check.

- `run` uploads and publishes through each listener (the uploader's consumer group and commits,
  the poller's transactions), `check`, `produce-samples`, `status` and `tail` work through it;
- the brokers refusing the connection (credentials, mechanism, certificates, security protocol)
  is one line and exit 1 from the one-shot commands at once, and from `run`, `upload` and `poll`
  once CONNECTOR_KAFKA_REFUSAL_TIMEOUT_SECONDS has passed without any connection;
- a setting librdkafka refuses when the client is created (a file it cannot read, a key password
  that does not decrypt the key) is one line and exit 2;
- a refusal after the first connection (credentials removed, broker restarted) is an outage:
  the process stays up, not ready, naming the settings, and recovers (the same two runs).
"""

from __future__ import annotations

import logging
import re
import subprocess
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import orjson
import pytest
from confluent_kafka import Consumer, Producer
from confluent_kafka.admin import (
    AdminClient,
    ScramCredentialInfo,
    ScramMechanism,
    UserScramCredentialAlteration,
    UserScramCredentialDeletion,
    UserScramCredentialUpsertion,
)

from connector.devtools.brokers.security import ScramUser
from testkit.kafka import uncommitted, unique_name
from testkit.processes import ConnectorProcess, toloka_connector
from testkit.waiting import wait_for
from tests.fixtures.brokers import SecuredKafka
from tests.fixtures.console import Console
from tests.fixtures.simulator import SimulatorHandle
from tests.integration.test_probes import FAST_STATISTICS, wait_for_probe

pytestmark = pytest.mark.integration
quiet = logging.getLogger(__name__)  # the test's own librdkafka lines: not on stderr

README = Path(__file__).resolve().parents[2] / "README.md"
ITEMS = 30
REFUSAL_TIMEOUT_SECONDS = 1
Settings = dict[str, str]


def readme_example(listener: str) -> set[str]:
    """The variables the README's example for `listener` exports (the block after its
    `<!-- secured example: LISTENER -->` marker)."""
    text = README.read_text()
    start = text.index(f"<!-- secured example: {listener} -->")
    block = text[start : text.index("```\n", text.index("```sh", start) + 5)]
    return set(re.findall(r"^export (KAFKA_[A-Z_]+)=", block, flags=re.MULTILINE))


def listener_settings(kafka: SecuredKafka, listener: str) -> Settings:
    return kafka.sasl_ssl_settings() if listener == "SASL_SSL" else kafka.mtls_settings()


def connector_environ(kafka: Settings, simulator: SimulatorHandle) -> Settings:
    prefix = unique_name("secured")
    return {
        **kafka,
        "TOLOKA_API_KEY": simulator.api_key,
        "TOLOKA_BASE_URL": simulator.base_url,
        "TOLOKA_APP_PROJECT_ID": simulator.project_id,
        "CONNECTOR_INPUT_TOPIC": f"{prefix}.items",
        "CONNECTOR_OUTPUT_TOPIC": f"{prefix}.results",
        "CONNECTOR_DLQ_TOPIC": f"{prefix}.dlq",
        "CONNECTOR_STATE_TOPIC": f"{prefix}.state",
        "CONNECTOR_GROUP_ID": prefix,
        "CONNECTOR_LEADER_TIMEOUT_SECONDS": "2",
        "CONNECTOR_POLL_INTERVAL_SECONDS": "0.2",
        "CONNECTOR_IDLE_POLL_INTERVAL_SECONDS": "0.3",
        "CONNECTOR_KAFKA_REFUSAL_TIMEOUT_SECONDS": str(REFUSAL_TIMEOUT_SECONDS),
        **FAST_STATISTICS,
    }


def ok(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result.stdout


# --- through each listener -------------------------------------------------------------------

LISTENERS = ("SASL_SSL", "mTLS")


def produce_items(bootstrap: str, topic: str, count: int) -> None:
    producer = Producer({"bootstrap.servers": bootstrap})
    for n in range(count):
        producer.produce(topic, orjson.dumps({"id": f"item-{n}", "text": f"text {n}"}))
    assert producer.flush(30) == 0


def wait_until_published(
    bootstrap: str, env: Settings, run: ConnectorProcess, listener: str
) -> None:
    """Every item published (read as it comes by one read_committed consumer: reading the topic
    anew on every look would take a core from the processes under test), and the uploader's
    offsets of them committed."""
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": unique_name("published"),
            "isolation.level": "read_committed",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        },
        logger=quiet,
    )
    consumer.subscribe([env["CONNECTOR_OUTPUT_TOPIC"]])
    published = 0
    try:
        deadline = time.monotonic() + 90
        while published < ITEMS and run.process.poll() is None and time.monotonic() < deadline:
            published += sum(1 for m in consumer.consume(100, timeout=0.5) if m.error() is None)
    finally:
        consumer.close()
    assert published == ITEMS, f"{listener}: {published} published\n{run.output()[-3000:]}"
    wait_for(
        lambda: (
            uncommitted(bootstrap, env["CONNECTOR_INPUT_TOPIC"], env["CONNECTOR_GROUP_ID"]) == 0
        ),
        f"the uploader's offsets committed through {listener}",
        30,
    )


def test_run_uploads_and_publishes_through_each_secured_listener_and_survives_a_refusal_later(
    secured_kafka: SecuredKafka,
    simulator: SimulatorHandle,
    simulator_factory: Callable[..., SimulatorHandle],
    console: Console,
) -> None:
    """Both listeners at once (two processes, each with a simulator of its own): items through
    each, read back with `status` and `tail` through it. Then the SASL user's credentials go
    away and the broker restarts: every reconnection through SASL_SSL is refused for far longer
    than CONNECTOR_KAFKA_REFUSAL_TIMEOUT_SECONDS, yet that `run`, once connected, stays up, not
    ready, naming the settings, and is ready again once the credentials are back; the mutual-TLS
    `run` is ready again after the restart."""
    user = ScramUser(unique_name("rotating"), f"pw-{uuid.uuid4().hex}")
    credentials(
        secured_kafka, UserScramCredentialUpsertion(user.name, SCRAM, user.password.encode())
    )
    simulators = {"SASL_SSL": simulator, "mTLS": simulator_factory()}
    envs: dict[str, Settings] = {}
    for listener in LISTENERS:
        kafka = listener_settings(secured_kafka, listener)
        assert set(kafka) == readme_example(listener), "the README's example is what runs here"
        if listener == "SASL_SSL":
            kafka = {
                **kafka,
                "KAFKA_SASL_USERNAME": user.name,
                "KAFKA_SASL_PASSWORD": user.password,
            }
        # Reconnections at most a second apart (librdkafka's backoff grows to 10 s by default):
        # the recovery after the restart is seen sooner.
        envs[listener] = {
            **connector_environ(kafka, simulators[listener]),
            "KAFKA_RECONNECT_BACKOFF_MAX_MS": "1000",
        }
    with ThreadPoolExecutor(len(LISTENERS)) as pool:
        for checked in pool.map(lambda env: console.run("check", "--create-topics", env=env),
                                envs.values()):  # fmt: skip
            assert "all checks passed" in ok(checked)
    runs = {listener: console.start("run", env=env) for listener, env in envs.items()}
    for env in envs.values():
        produce_items(secured_kafka.plain, env["CONNECTOR_INPUT_TOPIC"], ITEMS)

    for listener, env in envs.items():
        wait_until_published(secured_kafka.plain, env, runs[listener], listener)

    def look(argv: list[str], env: Settings) -> str:
        return ok(console.run(*argv, env=env))

    with ThreadPoolExecutor(2 * len(LISTENERS)) as pool:
        statuses = [pool.submit(look, ["status", "--json"], env) for env in envs.values()]
        tails = [pool.submit(look, ["tail", env["CONNECTOR_OUTPUT_TOPIC"]], env)
                 for env in envs.values()]  # fmt: skip
        looks = {
            listener: (status.result(), tail.result())
            for listener, status, tail in zip(envs, statuses, tails, strict=True)
        }
    for listener, (status_json, tail) in looks.items():
        status = orjson.loads(status_json)
        assert status["uploader_lag"]["total"] == 0, listener
        assert status["cursor"] is not None, listener
        assert status["leader"]["holder"], listener
        published = [orjson.loads(line) for line in tail.splitlines()]
        assert len(published) == ITEMS, listener
        assert {record["headers"]["toloka-status"] for record in published} == {"COMPLETED"}

    sasl = runs["SASL_SSL"]
    credentials(secured_kafka, UserScramCredentialDeletion(user.name, SCRAM.mechanism))
    refusal = "refused the connection: SASL authentication failed; check KAFKA_SASL_USERNAME"
    try:
        secured_kafka.broker.restart()
        # The outage begins while the broker restarts; the refusals come once it is back.
        first = wait_for_probe(sasl, "/readyz", 503, lambda m: refusal in m)
        refused_after = unreachable_for(first) + REFUSAL_TIMEOUT_SECONDS + 1
        wait_for_probe(
            sasl, "/readyz", 503, lambda m: refusal in m and unreachable_for(m) > refused_after
        )
    finally:
        secured_kafka.broker.ensure_running()
    wait_for_probe(runs["mTLS"], "/readyz", 200)
    credentials(
        secured_kafka, UserScramCredentialUpsertion(user.name, SCRAM, user.password.encode())
    )
    wait_for_probe(sasl, "/readyz", 200)

    for run in runs.values():
        run.interrupt()
    for listener, run in runs.items():
        assert run.exit_code() == 0, (listener, run.output()[-3000:])
        output = run.output()
        assert "Traceback" not in output, listener
        lines = [line for line in output.splitlines() if "connector.state: kafka: " in line]
        outages = [line.split(": kafka: ")[1][:12] for line in lines]
        assert outages == ["up -> down (", "down -> up ("], (listener, lines)


SCRAM = ScramCredentialInfo(ScramMechanism.SCRAM_SHA_512, 4096)


def credentials(kafka: SecuredKafka, change: UserScramCredentialAlteration) -> None:
    """Create, change or delete SCRAM credentials (through the plain listener)."""
    admin = AdminClient({"bootstrap.servers": kafka.plain}, logger=quiet)
    for future in admin.alter_user_scram_credentials([change]).values():
        future.result(timeout=30)


# --- refusals --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Misconfiguration:
    name: str
    settings: Callable[[SecuredKafka], Settings]
    names: str
    """What the one line must name."""


def without(settings: Settings, *names: str) -> Settings:
    return {key: value for key, value in settings.items() if key not in names}


SASL = SecuredKafka.sasl_ssl_settings
MTLS = SecuredKafka.mtls_settings
CLIENT_CERTIFICATE = ("KAFKA_SSL_CERTIFICATE_LOCATION", "KAFKA_SSL_KEY_LOCATION",
                      "KAFKA_SSL_KEY_PASSWORD")  # fmt: skip

REFUSED = [
    Misconfiguration(
        "wrong password",
        lambda k: {**SASL(k), "KAFKA_SASL_PASSWORD": f"wrong-{uuid.uuid4().hex}"},
        "check KAFKA_SASL_USERNAME and KAFKA_SASL_PASSWORD",
    ),
    Misconfiguration(
        "unknown user",
        lambda k: {**SASL(k), "KAFKA_SASL_USERNAME": "nobody"},
        "check KAFKA_SASL_USERNAME and KAFKA_SASL_PASSWORD",
    ),
    Misconfiguration(
        "a mechanism the listener does not offer",
        lambda k: {**SASL(k), "KAFKA_SASL_MECHANISM": "SCRAM-SHA-256"},
        "(it offers SCRAM-SHA-512); check KAFKA_SASL_MECHANISM",
    ),
    Misconfiguration(
        "untrusted CA, SASL_SSL",
        lambda k: {**SASL(k), "KAFKA_SSL_CA_LOCATION": str(k.certificates.untrusted_ca)},
        "check KAFKA_SSL_CA_LOCATION",
    ),
    Misconfiguration(
        "untrusted CA, mutual TLS",
        lambda k: {**MTLS(k), "KAFKA_SSL_CA_LOCATION": str(k.certificates.untrusted_ca)},
        "check KAFKA_SSL_CA_LOCATION",
    ),
    Misconfiguration(
        "no client certificate",
        lambda k: without(MTLS(k), *CLIENT_CERTIFICATE),
        "check KAFKA_SSL_CERTIFICATE_LOCATION and KAFKA_SSL_KEY_LOCATION",
    ),
    Misconfiguration(
        "a client certificate of a CA the broker does not trust",
        lambda k: {
            **without(MTLS(k), *CLIENT_CERTIFICATE),
            "KAFKA_SSL_CERTIFICATE_LOCATION": str(k.certificates.untrusted_client_certificate),
            "KAFKA_SSL_KEY_LOCATION": str(k.certificates.untrusted_client_key),
        },
        "check KAFKA_SSL_CERTIFICATE_LOCATION and KAFKA_SSL_KEY_LOCATION",
    ),
    Misconfiguration(
        "SSL against the plain port",
        lambda k: {**MTLS(k), "KAFKA_BOOTSTRAP_SERVERS": k.plain},
        "the listener does not speak TLS; check KAFKA_SECURITY_PROTOCOL",
    ),
    Misconfiguration(
        "SASL_SSL against the plain port",
        lambda k: {**SASL(k), "KAFKA_BOOTSTRAP_SERVERS": k.plain},
        "the listener does not speak TLS; check KAFKA_SECURITY_PROTOCOL",
    ),
    Misconfiguration(
        "SSL against the SASL_SSL port",
        lambda k: {**MTLS(k), "KAFKA_BOOTSTRAP_SERVERS": k.sasl_ssl},
        "as a SASL listener does to a client that does not authenticate; check "
        "KAFKA_SECURITY_PROTOCOL (SASL_SSL",
    ),
    Misconfiguration(
        "SASL_PLAINTEXT against the plain port",
        lambda k: {
            **without(SASL(k), "KAFKA_SSL_CA_LOCATION"),
            "KAFKA_BOOTSTRAP_SERVERS": k.plain,
            "KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT",
        },
        "the listener does not speak SASL; check KAFKA_SECURITY_PROTOCOL",
    ),
    Misconfiguration(
        "plaintext against the mutual-TLS port",
        lambda k: {"KAFKA_BOOTSTRAP_SERVERS": k.mtls},
        "check KAFKA_SECURITY_PROTOCOL (SSL or SASL_SSL",
    ),
    Misconfiguration(
        "plaintext against the SASL_SSL port",
        lambda k: {"KAFKA_BOOTSTRAP_SERVERS": k.sasl_ssl},
        "check KAFKA_SECURITY_PROTOCOL (SSL or SASL_SSL",
    ),
]
HEADLINE = ("wrong password", "untrusted CA, SASL_SSL", "no client certificate")


def refused(name: str) -> Misconfiguration:
    return next(case for case in REFUSED if case.name == name)


def test_each_refusal_ends_a_one_shot_command_at_once_with_one_line_naming_the_setting(
    secured_kafka: SecuredKafka, simulator: SimulatorHandle
) -> None:
    # Every refusal through status; the three the issue names through check and tail too.
    runs = [(case, "status") for case in REFUSED] + [
        (refused(name), command) for name in HEADLINE for command in ("check", "tail")
    ]

    def attempt(
        case: Misconfiguration, command: str
    ) -> tuple[str, float, subprocess.CompletedProcess[str]]:
        env = {
            **case.settings(secured_kafka),
            "TOLOKA_API_KEY": simulator.api_key,
            "TOLOKA_BASE_URL": simulator.base_url,
            "TOLOKA_APP_PROJECT_ID": simulator.project_id,
        }
        argv = {"tail": ["tail", "toloka.results"]}.get(command, [command])
        started = time.monotonic()
        # Half the command's own Kafka timeout (10 s for tail and check, 30 s for status): a
        # command still waiting then has not failed "at once".
        result = toloka_connector(*argv, env=env, timeout=15 if command == "status" else 5)
        return command, time.monotonic() - started, result

    with ThreadPoolExecutor(4) as pool:
        outcomes = list(pool.map(lambda run: attempt(*run), runs))
    for (case, _), (command, _took, result) in zip(runs, outcomes, strict=True):
        where = f"{command} with {case.name}: {result.stdout[-2000:]}{result.stderr[-2000:]}"
        assert result.returncode == 1, where
        assert "Traceback" not in result.stdout + result.stderr, where
        if command == "check":
            [line] = [line for line in result.stdout.splitlines() if "Kafka reachable" in line]
            assert line.startswith("FAIL  Kafka reachable: Kafka at "), where
        else:
            assert result.stdout == "", where
            [line] = result.stderr.splitlines()
            assert line.startswith(f"toloka-connector {command}: Kafka at "), where
        assert "refused the connection: " in line, where
        assert case.names in line, where


LONG_RUNNING = [
    ("run", "wrong password"),
    ("run", "untrusted CA, SASL_SSL"),
    ("run", "no client certificate"),
    ("run", "plaintext against the mutual-TLS port"),
    ("upload", "a mechanism the listener does not offer"),
    ("poll", "a client certificate of a CA the broker does not trust"),
]


def test_each_refusal_since_start_up_stops_a_long_running_command_with_one_line(
    secured_kafka: SecuredKafka, simulator: SimulatorHandle, console: Console
) -> None:
    started: list[tuple[str, Misconfiguration, ConnectorProcess]] = []
    for command, name in LONG_RUNNING:
        case = refused(name)
        env = connector_environ(case.settings(secured_kafka), simulator)
        started.append((command, case, console.start(command, env=env)))
    for command, case, process in started:
        code = process.exit_code(timeout=60)
        output = process.output()
        where = f"{command} with {case.name}:\n{output[-3000:]}"
        assert code == 1, where
        assert "Traceback" not in output, where
        last = output.splitlines()[-1]
        address = case.settings(secured_kafka)["KAFKA_BOOTSTRAP_SERVERS"]
        assert last.startswith(
            f"toloka-connector {command}: Kafka at {address} refused every connection for "
        ), where
        assert "since start-up: " in last, where
        assert case.names in last, where
        assert "did not finish" not in output, where


def unreachable_for(readiness: str) -> int:
    """N of "Kafka unreachable for Ns" in a readiness message (-1 without it)."""
    found = re.search(r"Kafka unreachable for (\d+)s", readiness)
    return int(found.group(1)) if found else -1


# --- refused when the client is made ---------------------------------------------------------

AT_CREATION = [
    Misconfiguration(
        "a CA file that cannot be read",
        lambda k: {**SASL(k), "KAFKA_SSL_CA_LOCATION": str(k.certificates.folder / "none.pem")},
        "KAFKA_SSL_CA_LOCATION: cannot read ",
    ),
    Misconfiguration(
        "a client certificate that cannot be read",
        lambda k: {**MTLS(k), "KAFKA_SSL_CERTIFICATE_LOCATION": "/nonexistent/client.pem"},
        "KAFKA_SSL_CERTIFICATE_LOCATION: cannot read /nonexistent/client.pem",
    ),
    Misconfiguration(
        "a key password that does not decrypt the key",
        lambda k: {**MTLS(k), "KAFKA_SSL_KEY_PASSWORD": "not-the-key-password"},
        "KAFKA_SSL_KEY_LOCATION, KAFKA_SSL_KEY_PASSWORD: ",
    ),
    Misconfiguration(
        "no SASL password",
        lambda k: without(SASL(k), "KAFKA_SASL_PASSWORD"),
        "KAFKA_SASL_USERNAME, KAFKA_SASL_PASSWORD: ",
    ),
]


def test_a_setting_librdkafka_refuses_at_client_creation_is_exit_2_naming_it(
    secured_kafka: SecuredKafka, simulator: SimulatorHandle
) -> None:
    runs = [(case, "run") for case in AT_CREATION] + [(AT_CREATION[0], "status")]

    def attempt(case: Misconfiguration, command: str) -> subprocess.CompletedProcess[str]:
        env = connector_environ(case.settings(secured_kafka), simulator)
        return toloka_connector(command, env=env, timeout=30)

    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda run: attempt(*run), runs))
    for (case, command), result in zip(runs, results, strict=True):
        where = (command, case.name, result.stdout, result.stderr)
        assert result.returncode == 2, where
        [line] = result.stderr.splitlines()
        assert line.startswith(case.names), where
        assert "not-the-key-password" not in line, where
