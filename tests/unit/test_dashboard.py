"""The Grafana dashboard: fixed datasource uid, queries that parse and name exported metrics."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from ruamel.yaml import YAML

from tests.fixtures.promql import exported_series, label_values_metric, metric_names, problems

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD = ROOT / "dashboards" / "toloka-connector.json"
DATASOURCES = ROOT / "deploy" / "grafana" / "provisioning" / "datasources" / "prometheus.yml"
EXPORTED = exported_series()


def load_dashboard() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return data


def provisioned_uid() -> str:
    [datasource] = YAML(typ="safe").load(DATASOURCES)["datasources"]
    assert datasource["type"] == "prometheus"
    return str(datasource["uid"])


def panels(dashboard: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for panel in dashboard["panels"]:
        yield panel
        yield from panel.get("panels", [])  # panels inside collapsed rows


def queries() -> list[tuple[str, str]]:
    return [
        (panel["title"], target["expr"])
        for panel in panels(load_dashboard())
        for target in panel.get("targets", [])
    ]


def test_every_panel_and_query_uses_the_provisioned_datasource_uid() -> None:
    expected = {"type": "prometheus", "uid": provisioned_uid()}
    assert "${DS_" not in DASHBOARD.read_text()
    dashboard = load_dashboard()
    for panel in panels(dashboard):
        if panel["type"] == "row":
            continue
        assert panel["datasource"] == expected, panel["title"]
        assert panel["targets"], f"{panel['title']} has no query"
        for target in panel["targets"]:
            assert target["datasource"] == expected, panel["title"]
    for variable in dashboard["templating"]["list"]:
        assert variable["datasource"] == expected, variable["name"]


@pytest.mark.parametrize(("title", "expr"), queries())
def test_every_query_names_only_exported_metrics_and_labels(title: str, expr: str) -> None:
    assert problems(expr, EXPORTED) == [], f"{title}: {expr}"


def test_template_variables_query_exported_metrics() -> None:
    for variable in load_dashboard()["templating"]["list"]:
        metric = label_values_metric(variable["query"]["query"])
        assert metric in EXPORTED, variable["name"]


def test_the_panels_cover_what_operators_need() -> None:
    named = set().union(*(metric_names(expr) for _, expr in queries()))
    wanted = {
        "toloka_connector_records_consumed_total",
        "toloka_connector_items_uploaded_total",
        "toloka_connector_results_published_total",
        "toloka_connector_dead_letters_total",
        "toloka_connector_api_request_duration_seconds_bucket",
        "toloka_connector_api_request_duration_seconds_count",
        "toloka_connector_api_retries_total",
        "toloka_connector_consumer_lag_messages",
        "toloka_connector_cursor_age_seconds",
        "toloka_connector_transactions_total",
        "toloka_connector_poller_leader",
        "toloka_connector_upload_requests_in_flight",
        "toloka_connector_paused_partitions",
        "toloka_connector_end_to_end_seconds_bucket",
        "toloka_connector_item_processing_seconds_bucket",
    }
    assert wanted - named == set()


def test_panel_ids_are_unique_and_panels_do_not_overlap() -> None:
    all_panels = list(panels(load_dashboard()))
    ids = [panel["id"] for panel in all_panels]
    assert len(ids) == len(set(ids))
    taken: set[tuple[int, int]] = set()
    for panel in all_panels:
        pos = panel["gridPos"]
        assert pos["x"] + pos["w"] <= 24, panel["title"]
        cells = {(pos["x"] + dx, pos["y"] + dy) for dx in range(pos["w"]) for dy in range(pos["h"])}
        assert not cells & taken, f"{panel['title']} overlaps another panel"
        taken |= cells


def test_the_dashboard_has_a_stable_uid_for_links() -> None:
    assert load_dashboard()["uid"] == "toloka-connector"


def test_the_checker_rejects_what_it_should() -> None:
    # The checker itself: a typo, a label the metric lacks, a `by` label nothing carries.
    assert problems("rate(toloka_connector_items_upload_total[5m])", EXPORTED) == [
        "toloka_connector_items_upload_total is not exported by the connector"
    ]
    assert problems('toloka_connector_dead_letters_total{cause="x"}', EXPORTED) == [
        "toloka_connector_dead_letters_total has no label 'cause'"
    ]
    assert problems("sum by (cause) (toloka_connector_dead_letters_total)", EXPORTED) == [
        "by (cause) but no metric under sum carries 'cause'"
    ]
    assert problems("sum(rate(x[", EXPORTED)[0].startswith("does not parse")
    assert problems("toloka_connector_consumer_lag_messages{partition='0'}", EXPORTED) == []
