"""Kafka's jars: a completed cache folder is reused without running Maven."""

from __future__ import annotations

from pathlib import Path

import pytest

from connector.devtools.brokers import maven
from connector.errors import BrokerError


def test_complete_cache_is_reused_without_maven(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    libs = tmp_path / "toloka-kafka-connector" / "kafka-9.9.9" / "libs"
    libs.mkdir(parents=True)
    (libs / ".complete").write_text("9.9.9")
    monkeypatch.setenv("PATH", "")  # no mvn: it must not be needed
    assert maven.kafka_libs("9.9.9") == libs


def test_missing_maven_is_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.setenv("PATH", "")
    with pytest.raises(BrokerError, match="mvn"):
        maven.kafka_libs("9.9.9")
    assert not maven.java_and_maven_available()
