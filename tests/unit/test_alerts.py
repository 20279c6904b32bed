"""Prometheus configuration and alert rules: promtool's checks and unit tests, exported names."""

from __future__ import annotations

import http.client
from pathlib import Path
from typing import Any

import pytest
from ruamel.yaml import YAML

from connector.health import start_health_server
from connector.metrics import Metrics
from tests.fixtures.promql import TARGET_LABELS, exported_series, problems
from tests.fixtures.promtool import run_promtool

PROMETHEUS = Path(__file__).resolve().parents[2] / "deploy" / "prometheus"
# Besides the connector's own series, rules may use what Prometheus writes for each target.
KNOWN = {**exported_series(), "up": TARGET_LABELS}


def load(name: str) -> Any:
    return YAML(typ="safe").load(PROMETHEUS / name)


def rules() -> list[dict[str, Any]]:
    return [rule for group in load("alerts.yml")["groups"] for rule in group["rules"]]


def test_prometheus_config_is_valid() -> None:
    output = run_promtool("check", "config", "prometheus.yml", cwd=PROMETHEUS)
    assert "SUCCESS: 1 rule files found" in output


def test_alert_rules_are_valid() -> None:
    output = run_promtool("check", "rules", "alerts.yml", cwd=PROMETHEUS)
    assert f"SUCCESS: {len(rules())} rules found" in output


def test_alert_rules_pass_their_unit_tests() -> None:
    run_promtool("test", "rules", "alerts.test.yml", cwd=PROMETHEUS)


def test_the_served_exposition_passes_promtool_check_metrics() -> None:
    metrics = Metrics()
    metrics.consumer_lag.labels("toloka.items", "0").set(12)  # a family that starts empty
    metrics.items_uploaded.inc(3)
    metrics.api_request_duration.labels("bulk_create", "2xx").observe(0.02)
    with start_health_server("127.0.0.1", 0, metrics, []) as server:
        connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
        connection.request("GET", "/metrics")
        exposition = connection.getresponse().read()
        connection.close()
    assert b"toloka_connector_consumer_lag_messages{" in exposition
    run_promtool("check", "metrics", stdin=exposition)


@pytest.mark.parametrize("rule", rules(), ids=lambda rule: rule["alert"])
def test_every_rule_names_only_exported_metrics_and_labels(rule: dict[str, Any]) -> None:
    assert problems(rule["expr"], KNOWN) == []


@pytest.mark.parametrize("rule", rules(), ids=lambda rule: rule["alert"])
def test_every_rule_has_severity_duration_and_text(rule: dict[str, Any]) -> None:
    assert rule["labels"]["severity"] in {"critical", "warning"}
    assert rule["for"]
    assert rule["annotations"]["summary"]
    assert rule["annotations"]["description"]


def test_every_rule_has_a_unit_test_where_it_fires() -> None:
    fired = {
        case["alertname"]
        for test in load("alerts.test.yml")["tests"]
        for case in test["alert_rule_test"]
        if case["exp_alerts"]
    }
    assert {rule["alert"] for rule in rules()} - fired == set()


def test_the_alerts_cover_the_operational_risks() -> None:
    names = {rule["alert"] for rule in rules()}
    assert {
        "TolokaConnectorDown",
        "TolokaApiDown",
        "TolokaCursorStuck",
        "TolokaConsumerLagGrowing",
        "TolokaDeadLetters",
        "TolokaNoPollerLeader",
    } <= names
