"""The broker abstraction: capability table, refusals with reasons, generated Kafka settings."""

from __future__ import annotations

import base64
import subprocess
from pathlib import Path

import pytest

from connector.devtools.brokers.apache import ApacheKafkaBroker, new_cluster_id, server_properties
from connector.devtools.brokers.base import Broker, Capability
from connector.devtools.brokers.external import ExternalBroker
from connector.devtools.brokers.mock import MockClusterBroker
from connector.devtools.brokers.noida import NoidaBroker
from connector.devtools.brokers.security import (
    Certificates,
    ScramUser,
    SecuredListeners,
    make_certificates,
    openssl_available,
)
from connector.errors import BrokerCapabilityError
from connector.kafka.admin import TopicSpec
from testkit.brokers import ApiKey, ControllableExternal

CAPABILITIES = {
    # kind: transactions, evicts_killed_members, cooperative_rebalancing, fault_injection,
    # process_control, admin_create, secured_listeners
    ApacheKafkaBroker: (True, True, True, False, True, True, True),
    MockClusterBroker: (False, True, True, True, False, False, False),
    NoidaBroker: (True, False, False, False, False, True, False),
    ExternalBroker: (True, True, True, False, False, True, False),
}
ORDER = (
    Capability.TRANSACTIONS,
    Capability.EVICTS_KILLED_MEMBERS,
    Capability.COOPERATIVE_REBALANCING,
    Capability.FAULT_INJECTION,
    Capability.PROCESS_CONTROL,
    Capability.ADMIN_CREATE_TOPICS,
    Capability.SECURED_LISTENERS,
)


@pytest.mark.parametrize("broker_class", list(CAPABILITIES))
def test_capability_table_matches_dev_broker_notes(broker_class: type[Broker]) -> None:
    expected = dict(zip(ORDER, CAPABILITIES[broker_class], strict=True))
    assert {cap: cap not in broker_class.lacks for cap in ORDER} == expected
    assert all(reason.strip() for reason in broker_class.lacks.values())


def test_unsupported_operations_raise_with_the_reason() -> None:
    broker = ControllableExternal("127.0.0.1:9")
    assert broker.supports("transactions")
    assert not broker.supports(Capability.PROCESS_CONTROL)
    with pytest.raises(BrokerCapabilityError, match="not ours to stop") as raised:
        broker.restart()
    assert raised.value.capability is Capability.PROCESS_CONTROL
    with pytest.raises(BrokerCapabilityError, match="fault_injection"):
        broker.push_request_errors(ApiKey.PRODUCE, [6])
    broker.ensure_running()  # nothing to bring back: no error
    with pytest.raises(ValueError, match="teleport"):
        broker.supports("teleport")


def test_topic_spec_compaction_adds_cleanup_policy() -> None:
    assert TopicSpec("state", compacted=True, config={"segment.ms": "100"}).topic_config() == {
        "segment.ms": "100",
        "cleanup.policy": "compact",
    }
    assert TopicSpec("items", partitions=6).topic_config() == {}


def test_cluster_id_is_a_kafka_uuid_string() -> None:
    for _ in range(200):
        cluster_id = new_cluster_id()
        assert len(cluster_id) == 22
        assert not cluster_id.startswith("-")
        assert len(base64.urlsafe_b64decode(cluster_id + "==")) == 16


def test_server_properties_single_node_kraft() -> None:
    text = server_properties(Path("/data"), 19092, 19093)
    settings = dict(line.split("=", 1) for line in text.splitlines())
    assert settings["process.roles"] == "broker,controller"
    assert settings["controller.quorum.bootstrap.servers"] == "127.0.0.1:19093"
    assert settings["advertised.listeners"] == "PLAINTEXT://127.0.0.1:19092"
    assert settings["log.dirs"] == "/data"
    for key in (
        "offsets.topic.replication.factor",
        "transaction.state.log.replication.factor",
        "transaction.state.log.min.isr",
    ):
        assert settings[key] == "1"
    assert settings["group.initial.rebalance.delay.ms"] == "0"


def test_server_properties_with_secured_listeners() -> None:
    certificates = Certificates(Path("/certs"), "key-pw")
    secured = SecuredListeners(certificates, (ScramUser("alice", "alice-pw"),))
    text = server_properties(Path("/data"), 19092, 19093, (secured, 19094, 19095))
    settings = dict(line.split("=", 1) for line in text.splitlines())
    assert settings["listeners"] == (
        "PLAINTEXT://127.0.0.1:19092,SASL_SSL://127.0.0.1:19094,MTLS://127.0.0.1:19095,"
        "CONTROLLER://127.0.0.1:19093"
    )
    assert settings["advertised.listeners"] == (
        "PLAINTEXT://127.0.0.1:19092,SASL_SSL://127.0.0.1:19094,MTLS://127.0.0.1:19095"
    )
    assert settings["listener.security.protocol.map"] == (
        "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT,SASL_SSL:SASL_SSL,MTLS:SSL"
    )
    assert settings["inter.broker.listener.name"] == "PLAINTEXT"
    assert settings["listener.name.sasl_ssl.sasl.enabled.mechanisms"] == "SCRAM-SHA-512"
    assert settings["listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config"].startswith(
        "org.apache.kafka.common.security.scram.ScramLoginModule required"
    )
    assert settings["listener.name.mtls.ssl.client.auth"] == "required"
    assert settings["listener.name.mtls.ssl.truststore.location"] == "/certs/ca.pem"
    assert "authorizer.class.name" not in settings, "authentication is tested, not ACLs"
    assert secured.format_arguments() == [
        "--add-scram", "SCRAM-SHA-512=[name=alice,password=alice-pw]",
    ]  # fmt: skip


def test_a_broker_started_without_them_has_no_secured_listener_address() -> None:
    assert "SASL_SSL" not in server_properties(Path("/data"), 19092, 19093)


def test_the_certificates_chain_to_their_cas(tmp_path: Path) -> None:
    if not openssl_available():
        pytest.skip("openssl is not on PATH")
    made = make_certificates(tmp_path, "key-pw")
    assert make_certificates(tmp_path, "key-pw") == made, "made once, then reused"

    def verify(ca: Path, certificate: Path) -> bool:
        argv = ["openssl", "verify", "-CAfile", str(ca), str(certificate)]
        return subprocess.run(argv, capture_output=True, check=False).returncode == 0

    assert verify(made.ca, made.broker_key_store)
    assert verify(made.ca, made.client_certificate)
    assert verify(made.untrusted_ca, made.untrusted_client_certificate)
    assert not verify(made.ca, made.untrusted_client_certificate)
    assert not verify(made.untrusted_ca, made.broker_key_store)
    names = subprocess.run(
        ["openssl", "x509", "-in", str(made.broker_key_store), "-noout", "-ext",
         "subjectAltName"],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    assert "IP Address:127.0.0.1" in names
    assert "DNS:localhost" in names
    assert "ENCRYPTED PRIVATE KEY" in made.client_key.read_text()
