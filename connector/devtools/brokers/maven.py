"""Apache Kafka's jars from Maven Central, resolved once into a per-user cache folder.

A Kafka distribution is its jars plus shell scripts; we need only the jars. A generated pom
depends on `org.apache.kafka:kafka_2.13` plus the log4j2 binding Kafka 4 ships with
(`log4j-slf4j-impl`: Kafka 4.x still uses slf4j 1.7, so the slf4j2 binding would not bind), and
`maven-dependency-plugin:copy-dependencies` copies the runtime closure into
`~/.cache/toloka-kafka-connector/kafka-<version>/libs` (46 jars, 43 MB for 4.1.1). A marker file
makes later runs skip Maven entirely; Maven runs offline first, so a warm ~/.m2 needs no network.
A file lock keeps two processes (two test sessions, a demo) from resolving at the same time.
`kafka_libs(with_tools=True)` adds `kafka-tools` (what `kafka-topics.sh`, the console consumer
and `kafka-broker-api-versions.sh` run, and Kafka Connect with it: 93 jars) in a folder of its
own, for the local Kafka image of `make compose-images`.
"""

from __future__ import annotations

import fcntl
import logging
import os
import shutil
import subprocess
from pathlib import Path

from connector.errors import BrokerError

KAFKA_VERSION = "4.1.1"
LOG4J_VERSION = "2.24.3"  # the log4j2 release Kafka 4.1 itself is built against
DEPENDENCY_PLUGIN = "org.apache.maven.plugins:maven-dependency-plugin:3.8.1"
_COMPLETE_MARKER = ".complete"
_MAVEN_TIMEOUT_SECONDS = 900

logger = logging.getLogger(__name__)

_POM = """<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>local.toloka-kafka-connector</groupId>
  <artifactId>embedded-kafka-runtime</artifactId>
  <version>1</version>
  <packaging>pom</packaging>
  <dependencies>
    <dependency>
      <groupId>org.apache.kafka</groupId><artifactId>kafka_2.13</artifactId>
      <version>{kafka}</version>
    </dependency>
    <dependency>
      <groupId>org.apache.logging.log4j</groupId><artifactId>log4j-core</artifactId>
      <version>{log4j}</version>
    </dependency>
    <dependency>
      <groupId>org.apache.logging.log4j</groupId><artifactId>log4j-slf4j-impl</artifactId>
      <version>{log4j}</version>
    </dependency>{extra}
  </dependencies>
</project>
"""
_TOOLS_DEPENDENCY = """
    <dependency>
      <groupId>org.apache.kafka</groupId><artifactId>kafka-tools</artifactId>
      <version>{kafka}</version>
    </dependency>"""


def cache_root() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "toloka-kafka-connector"


def java_and_maven_available() -> bool:
    return shutil.which("java") is not None and shutil.which("mvn") is not None


def kafka_libs(version: str = KAFKA_VERSION, *, with_tools: bool = False) -> Path:
    """The folder holding Kafka's runtime jars, resolving them with Maven the first time."""
    home = cache_root() / (f"kafka-{version}-with-tools" if with_tools else f"kafka-{version}")
    libs = home / "libs"
    if (libs / _COMPLETE_MARKER).exists():
        return libs
    if shutil.which("mvn") is None:
        raise BrokerError("Maven (mvn) is not on PATH: cannot fetch Apache Kafka's jars")
    home.mkdir(parents=True, exist_ok=True)
    with (home / ".lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another process may be resolving right now
        if not (libs / _COMPLETE_MARKER).exists():
            _resolve(home, libs, version, with_tools)
    return libs


def _resolve(home: Path, libs: Path, version: str, with_tools: bool) -> None:
    pom = home / "pom.xml"
    extra = _TOOLS_DEPENDENCY.format(kafka=version) if with_tools else ""
    pom.write_text(_POM.format(kafka=version, log4j=LOG4J_VERSION, extra=extra))
    staging = home / "libs.partial"
    shutil.rmtree(staging, ignore_errors=True)
    logger.info("resolving org.apache.kafka:kafka_2.13:%s into %s", version, libs)
    base = [
        "mvn", "-q", "-B", "-f", str(pom),
        f"{DEPENDENCY_PLUGIN}:copy-dependencies",
        f"-DoutputDirectory={staging}", "-DincludeScope=runtime",
    ]  # fmt: skip
    offline = _run_maven([*base, "-o"])
    if offline.returncode != 0:
        online = _run_maven(base)
        if online.returncode != 0:
            raise BrokerError(
                f"mvn could not resolve kafka_2.13:{version}:\n{online.stdout[-3000:]}"
            )
    (staging / _COMPLETE_MARKER).write_text(version)
    shutil.rmtree(libs, ignore_errors=True)
    staging.rename(libs)


def _run_maven(argv: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        argv,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=_MAVEN_TIMEOUT_SECONDS,
        check=False,
    )
