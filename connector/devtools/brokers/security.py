"""Secured listeners for the real-Kafka development broker, and the certificates they need.

Two listeners beside the plain one (which stays for inter-broker traffic, readiness probes and
every test that does not ask for security):

- `SASL_SSL`: TLS with the broker's certificate, then SASL/SCRAM-SHA-512. The users are written
  into the metadata log when the storage is formatted (`kafka-storage format --add-scram
  'SCRAM-SHA-512=[name=alice,password=…]'`, KIP-900), so they exist from the first start;
- `MTLS` (protocol SSL): TLS with `ssl.client.auth=required`: a client must present a
  certificate signed by the test CA.

No authorizer is configured, so every authenticated principal may do everything (Kafka's default
without `authorizer.class.name`): these listeners test authentication, not ACLs.

The certificates are PEM files made with `openssl` (no keystore to convert: Kafka reads PEM key
stores and trust stores since 2.7, KIP-651): a CA; the broker's certificate for 127.0.0.1 and
localhost (librdkafka checks the host name by default); a client certificate signed by the CA
whose key is encrypted with a password (what `ssl.key.password` is for); and a second CA the
broker does not trust, with a client certificate of its own, for the negative cases. EC P-256
keys: made in milliseconds, where RSA keys would take a second each on a busy 2-core machine.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from connector.errors import BrokerError

SASL_LISTENER = "SASL_SSL"
MTLS_LISTENER = "MTLS"
SCRAM_MECHANISM = "SCRAM-SHA-512"
_VALID_DAYS = "2"
_OPENSSL_TIMEOUT_SECONDS = 60


@dataclass(frozen=True)
class ScramUser:
    name: str
    password: str


@dataclass(frozen=True)
class Certificates:
    """PEM files in `folder`. Private keys are PKCS#8; the client's is encrypted."""

    folder: Path
    client_key_password: str

    @property
    def ca(self) -> Path:
        """The CA that signed the broker's and the client's certificates."""
        return self.folder / "ca.pem"

    @property
    def broker_key_store(self) -> Path:
        """The broker's key and certificate (127.0.0.1, localhost) in one PEM file."""
        return self.folder / "broker-keystore.pem"

    @property
    def client_certificate(self) -> Path:
        return self.folder / "client.pem"

    @property
    def client_key(self) -> Path:
        """Encrypted with `client_key_password`."""
        return self.folder / "client.key"

    @property
    def untrusted_ca(self) -> Path:
        """A CA that signed nothing the broker presents, and that the broker does not trust."""
        return self.folder / "untrusted-ca.pem"

    @property
    def untrusted_client_certificate(self) -> Path:
        """A client certificate signed by the untrusted CA (its key: `untrusted_client_key`,
        not encrypted)."""
        return self.folder / "untrusted-client.pem"

    @property
    def untrusted_client_key(self) -> Path:
        return self.folder / "untrusted-client.key"


def openssl_available() -> bool:
    return shutil.which("openssl") is not None


def make_certificates(folder: Path, client_key_password: str) -> Certificates:
    """Make the certificates in `folder`, or reuse those a previous call made there."""
    made = Certificates(folder, client_key_password)
    if (folder / ".complete").exists():
        return made
    if not openssl_available():
        raise BrokerError("openssl is not on PATH: cannot make the secured listeners' certificates")
    folder.mkdir(parents=True, exist_ok=True)
    _self_signed_ca(folder, "ca", "toloka-connector test CA")
    _self_signed_ca(folder, "untrusted-ca", "untrusted test CA")
    _signed(folder, "broker", "localhost", "ca", server=True)
    _signed(folder, "client", "toloka-connector", "ca", server=False)
    _signed(folder, "untrusted-client", "toloka-connector", "untrusted-ca", server=False)
    _pkcs8(folder / "broker.key.raw", folder / "broker.key")
    (folder / "broker-keystore.pem").write_text(
        (folder / "broker.key").read_text() + (folder / "broker.pem").read_text()
    )
    _pkcs8(folder / "client.key.raw", folder / "client.key", password=client_key_password)
    _pkcs8(folder / "untrusted-client.key.raw", folder / "untrusted-client.key")
    (folder / ".complete").write_text("")
    return made


def _openssl(*args: str, cwd: Path) -> None:
    result = subprocess.run(
        ["openssl", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=_OPENSSL_TIMEOUT_SECONDS,
        check=False,
    )
    if result.returncode != 0:
        raise BrokerError(f"openssl {args[0]} failed: {result.stderr.strip()[-2000:]}")


def _new_key(folder: Path, name: str) -> str:
    key = f"{name}.key.raw"
    _openssl(
        "genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", key,
        cwd=folder,
    )  # fmt: skip
    return key


def _self_signed_ca(folder: Path, name: str, common_name: str) -> None:
    key = _new_key(folder, name)
    _openssl(
        "req", "-x509", "-new", "-key", key, "-days", _VALID_DAYS, "-subj", f"/CN={common_name}",
        "-addext", "basicConstraints=critical,CA:TRUE",
        "-addext", "keyUsage=critical,keyCertSign,cRLSign",
        "-out", f"{name}.pem",
        cwd=folder,
    )  # fmt: skip


def _signed(folder: Path, name: str, common_name: str, ca: str, *, server: bool) -> None:
    key = _new_key(folder, name)
    _openssl("req", "-new", "-key", key, "-subj", f"/CN={common_name}", "-out", f"{name}.csr",
             cwd=folder)  # fmt: skip
    extensions = (
        "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n"
        if server
        else "extendedKeyUsage=clientAuth\n"
    )
    (folder / f"{name}.ext").write_text(extensions)
    _openssl(
        "x509", "-req", "-in", f"{name}.csr", "-CA", f"{ca}.pem", "-CAkey", f"{ca}.key.raw",
        "-days", _VALID_DAYS,  # no serial given: openssl 3 picks a random one
        "-extfile", f"{name}.ext", "-out", f"{name}.pem",
        cwd=folder,
    )  # fmt: skip


def _pkcs8(source: Path, target: Path, *, password: str | None = None) -> None:
    encryption = (
        ["-v2", "aes-256-cbc", "-passout", f"pass:{password}"] if password else ["-nocrypt"]
    )
    _openssl("pkcs8", "-topk8", "-in", str(source), "-out", str(target), *encryption,
             cwd=source.parent)  # fmt: skip


@dataclass(frozen=True)
class SecuredListeners:
    """What a broker started with `secured=` serves besides its plain listener."""

    certificates: Certificates
    users: tuple[ScramUser, ...]

    def format_arguments(self) -> list[str]:
        """`kafka-storage format` arguments that create the SCRAM users."""
        arguments: list[str] = []
        for user in self.users:
            credential = f"{SCRAM_MECHANISM}=[name={user.name},password={user.password}]"
            arguments += ["--add-scram", credential]
        return arguments

    def server_properties(self) -> Mapping[str, str]:
        """Per-listener settings (listener and port wiring is the broker's)."""
        sasl = f"listener.name.{SASL_LISTENER.lower()}."
        mtls = f"listener.name.{MTLS_LISTENER.lower()}."
        key_store = str(self.certificates.broker_key_store)
        return {
            f"{sasl}sasl.enabled.mechanisms": SCRAM_MECHANISM,
            f"{sasl}{SCRAM_MECHANISM.lower()}.sasl.jaas.config": (
                "org.apache.kafka.common.security.scram.ScramLoginModule required;"
            ),
            f"{sasl}ssl.keystore.type": "PEM",
            f"{sasl}ssl.keystore.location": key_store,
            f"{mtls}ssl.keystore.type": "PEM",
            f"{mtls}ssl.keystore.location": key_store,
            f"{mtls}ssl.truststore.type": "PEM",
            f"{mtls}ssl.truststore.location": str(self.certificates.ca),
            f"{mtls}ssl.client.auth": "required",
        }
