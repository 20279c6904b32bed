"""The endpoint server (/metrics, /healthz, /readyz) and `toloka-connector healthcheck`."""

from __future__ import annotations

import argparse
import http.client
import json
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from connector.commands import healthcheck
from connector.errors import ConfigError
from connector.health import HealthServer, _Handler, start_health_server
from connector.lifecycle import Heartbeat, Readiness
from connector.metrics import Metrics
from testkit.clocks import FakeClock, never_waits


@dataclass
class FakeRole:
    name: str
    clock: FakeClock
    ready: bool = True
    detail: str = "consuming"
    fail: bool = False
    heartbeat: Heartbeat = field(init=False)

    def __post_init__(self) -> None:
        self.heartbeat = Heartbeat(self.name, self.clock)

    def run(self, stop: threading.Event) -> None:  # pragma: no cover - never run here
        raise NotImplementedError

    def readiness(self) -> Readiness:
        if self.fail:
            raise RuntimeError("kafka handle closed")
        return Readiness(self.ready, self.detail)


@dataclass
class Stack:
    clock: FakeClock
    metrics: Metrics
    uploader: FakeRole
    poller: FakeRole
    server: HealthServer

    def get(
        self, path: str, headers: dict[str, str] | None = None
    ) -> tuple[int, dict[str, str], bytes]:
        connection = http.client.HTTPConnection("127.0.0.1", self.server.port, timeout=10)
        try:
            connection.request("GET", path, headers=headers or {})
            response = connection.getresponse()
            return response.status, dict(response.getheaders()), response.read()
        finally:
            connection.close()

    def get_json(self, path: str) -> tuple[int, Any]:
        status, headers, body = self.get(path)
        assert headers["Content-Type"] == "application/json"
        return status, json.loads(body)


@pytest.fixture
def stack() -> Iterator[Stack]:
    clock = FakeClock(on_wait=never_waits)
    metrics = Metrics()
    uploader = FakeRole("uploader", clock)
    poller = FakeRole("poller", clock, detail="leader")
    server = start_health_server(
        "127.0.0.1", 0, metrics, [uploader, poller], stale_after_seconds=60, clock=clock
    )
    try:
        yield Stack(clock, metrics, uploader, poller, server)
    finally:
        server.close()


def test_port_zero_binds_a_free_loopback_port(stack: Stack) -> None:
    assert stack.server.host == "127.0.0.1"
    assert stack.server.port > 0
    assert stack.server.url == f"http://127.0.0.1:{stack.server.port}"


def test_metrics_serves_the_registry_in_prometheus_text(stack: Stack) -> None:
    stack.metrics.items_uploaded.inc(7)
    status, headers, body = stack.get("/metrics")
    assert status == 200
    assert headers["Content-Type"].startswith("text/plain; version=0.0.4")
    families = {f.name: f for f in text_string_to_metric_families(body.decode())}
    uploaded = families["toloka_connector_items_uploaded"].samples
    assert [s.value for s in uploaded if s.name.endswith("_total")] == [7.0]
    assert "toloka_connector_build_info" in body.decode()


def test_metrics_speaks_openmetrics_when_asked(stack: Stack) -> None:
    status, headers, body = stack.get(
        "/metrics", {"Accept": "application/openmetrics-text; version=1.0.0"}
    )
    assert status == 200
    assert headers["Content-Type"].startswith("application/openmetrics-text")
    assert body.endswith(b"# EOF\n")


def test_metrics_scrape_turns_heartbeats_into_wall_clock_gauges(stack: Stack) -> None:
    stack.clock.advance(30)
    stack.uploader.heartbeat.beat()  # uploader: just now; poller: 30 s ago
    _, _, body = stack.get("/metrics")
    samples = {
        s.labels["role"]: s.value
        for family in text_string_to_metric_families(body.decode())
        if family.name == "toloka_connector_loop_heartbeat_timestamp_seconds"
        for s in family.samples
    }
    assert samples == {"uploader": stack.clock.now, "poller": stack.clock.now - 30}


def test_a_loop_waiting_on_a_dependency_has_a_fresh_heartbeat_gauge(stack: Stack) -> None:
    """The LoopStuck alert reads the gauge: it must see what /healthz sees."""
    with stack.poller.heartbeat.waiting_on("Kafka (taking over)"):
        stack.clock.advance(300)
        stack.uploader.heartbeat.beat()
        _, _, body = stack.get("/metrics")
    samples = {
        s.labels["role"]: s.value
        for family in text_string_to_metric_families(body.decode())
        if family.name == "toloka_connector_loop_heartbeat_timestamp_seconds"
        for s in family.samples
    }
    assert samples["poller"] == stack.clock.now


def test_healthz_is_ok_while_every_loop_is_fresh(stack: Stack) -> None:
    stack.clock.advance(59)
    status, body = stack.get_json("/healthz")
    assert status == 200
    assert body["status"] == "ok"
    assert body["roles"]["poller"] == {
        "heartbeat_age_seconds": 59.0,
        "stuck": False,
        "waiting_on": None,
    }


def test_healthz_names_the_stuck_loop(stack: Stack) -> None:
    stack.clock.advance(61)
    stack.uploader.heartbeat.beat()
    status, body = stack.get_json("/healthz")
    assert status == 503
    assert body["status"] == "stuck"
    assert body["message"] == "poller loop stuck for 61.0s (limit 60s)"
    assert body["roles"]["uploader"]["stuck"] is False
    assert body["roles"]["poller"]["stuck"] is True


def test_healthz_is_ok_while_a_loop_waits_on_a_dependency_however_long(stack: Stack) -> None:
    """An outage keeps a loop in a call that ends by its own timeout: readiness says so, and a
    restart would not help, so liveness must not fail."""
    with stack.poller.heartbeat.waiting_on("the Toloka API (listing)"):
        stack.clock.advance(600)
        stack.uploader.heartbeat.beat()
        status, body = stack.get_json("/healthz")
        assert status == 200
        assert body["roles"]["poller"]["waiting_on"] == "the Toloka API (listing)"
        assert "poller waiting on the Toloka API (listing) for 600.0s" in body["message"]
    stack.clock.advance(59)
    assert stack.get_json("/healthz")[0] == 200, "leaving the call counts as a beat"
    stack.clock.advance(2)
    status, body = stack.get_json("/healthz")
    assert status == 503
    assert "poller loop stuck for 61.0s" in body["message"]


def test_readyz_reports_each_roles_detail(stack: Stack) -> None:
    status, body = stack.get_json("/readyz")
    assert status == 200
    assert body["ready"] is True
    assert body["roles"] == {
        "uploader": {"ready": True, "detail": "consuming"},
        "poller": {"ready": True, "detail": "leader"},
    }


def test_readyz_is_503_when_one_role_is_not_ready(stack: Stack) -> None:
    stack.uploader.ready, stack.uploader.detail = False, "Apps API unreachable"
    status, body = stack.get_json("/readyz")
    assert status == 503
    assert body["ready"] is False
    assert "uploader NOT ready: Apps API unreachable" in body["message"]
    assert body["roles"]["poller"] == {"ready": True, "detail": "leader"}


def test_readyz_survives_a_readiness_check_that_raises(stack: Stack) -> None:
    stack.poller.fail = True
    status, body = stack.get_json("/readyz")
    assert status == 503
    assert body["roles"]["poller"] == {
        "ready": False,
        "detail": "readiness check failed: kafka handle closed",
    }


def test_a_role_the_process_does_not_run_has_no_readiness_gauge() -> None:
    metrics = Metrics()
    with start_health_server(
        "127.0.0.1",
        0,
        metrics,
        [FakeRole("poller", FakeClock(on_wait=never_waits))],
        clock=FakeClock(on_wait=never_waits),
    ) as server:
        connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
        connection.request("GET", "/metrics")
        body = connection.getresponse().read().decode()
        connection.close()
    assert 'toloka_connector_role_ready{app_project="",role="poller"} 1.0' in body
    assert 'role_ready{app_project="",role="uploader"}' not in body, "a 0 would fire NotReady"


def test_unknown_path_is_404(stack: Stack) -> None:
    status, _, _ = stack.get("/nope")
    assert status == 404


def test_one_keep_alive_connection_serves_many_requests_with_nodelay(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    nodelay: list[int] = []
    original_setup = _Handler.setup

    def recording_setup(self: _Handler) -> None:
        original_setup(self)
        nodelay.append(self.connection.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))

    monkeypatch.setattr(_Handler, "setup", recording_setup)
    connection = http.client.HTTPConnection("127.0.0.1", stack.server.port, timeout=10)
    try:
        for path in ("/metrics", "/healthz", "/readyz"):
            connection.request("GET", path)
            response = connection.getresponse()
            response.read()
            assert response.status == 200
            assert response.version == 11
    finally:
        connection.close()
    assert len(nodelay) == 1, "all three requests must share one connection"
    assert nodelay[0] != 0


def test_close_releases_the_port() -> None:
    server = start_health_server("127.0.0.1", 0, Metrics(), [])
    port = server.port
    server.close()
    with socket.socket() as probe:
        assert probe.connect_ex(("127.0.0.1", port)) != 0
    again = start_health_server("127.0.0.1", port, Metrics(), [])
    again.close()


def test_a_port_in_use_is_a_config_error_naming_the_setting() -> None:
    with (
        start_health_server("127.0.0.1", 0, Metrics(), []) as first,
        pytest.raises(ConfigError) as caught,
    ):
        start_health_server("127.0.0.1", first.port, Metrics(), [])
    assert caught.value.problems[0].startswith(
        f"CONNECTOR_METRICS_PORT: cannot listen on 127.0.0.1:{first.port}:"
    )


# --- toloka-connector healthcheck --------------------------------------------------------------


def parse_healthcheck(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    healthcheck.register(parser.add_subparsers())
    return parser.parse_args(["healthcheck", *argv])


def test_healthcheck_exits_0_and_prints_one_line_when_healthy(
    stack: Stack, capsys: pytest.CaptureFixture[str]
) -> None:
    code = healthcheck.run(parse_healthcheck("--url", stack.server.url))
    out = capsys.readouterr().out
    assert code == 0
    assert out.count("\n") == 1
    assert out.startswith("healthy (200): all loops alive: uploader 0.0s ago, poller 0.0s ago")


def test_healthcheck_exits_1_naming_the_stuck_loop(
    stack: Stack, capsys: pytest.CaptureFixture[str]
) -> None:
    stack.clock.advance(120)
    code = healthcheck.run(parse_healthcheck("--url", stack.server.url + "/"))
    assert code == 1
    assert capsys.readouterr().out == (
        "unhealthy (503): uploader loop stuck for 120.0s (limit 60s); "
        "poller loop stuck for 120.0s (limit 60s)\n"
    )


def test_healthcheck_ready_probes_readyz(stack: Stack, capsys: pytest.CaptureFixture[str]) -> None:
    stack.poller.ready, stack.poller.detail = False, "waiting for the state topic"
    assert healthcheck.run(parse_healthcheck("--url", stack.server.url)) == 0
    assert healthcheck.run(parse_healthcheck("--ready", "--url", stack.server.url)) == 1
    last = capsys.readouterr().out.splitlines()[-1]
    assert last.startswith("unhealthy (503): uploader ready: consuming; poller NOT ready")


def test_healthcheck_exits_1_when_nothing_listens(capsys: pytest.CaptureFixture[str]) -> None:
    server = start_health_server("127.0.0.1", 0, Metrics(), [])
    url = server.url
    server.close()
    assert healthcheck.run(parse_healthcheck("--url", url, "--timeout", "2")) == 1
    assert capsys.readouterr().out.startswith(f"unreachable: {url}/healthz: ")


@pytest.mark.parametrize(
    ("environ", "expected"),
    [
        ({}, "http://127.0.0.1:9400/healthz"),
        ({"CONNECTOR_METRICS_PORT": "9555"}, "http://127.0.0.1:9555/healthz"),
        (
            {"CONNECTOR_METRICS_HOST": "0.0.0.0", "CONNECTOR_METRICS_PORT": "9401"},
            "http://127.0.0.1:9401/healthz",
        ),
        ({"CONNECTOR_METRICS_HOST": "::"}, "http://[::1]:9400/healthz"),
        ({"CONNECTOR_METRICS_HOST": "10.1.2.3"}, "http://10.1.2.3:9400/healthz"),
        ({"CONNECTOR_METRICS_PORT": "0"}, None),
    ],
)
def test_healthcheck_finds_the_endpoint_from_the_settings(
    environ: dict[str, str], expected: str | None
) -> None:
    assert healthcheck.target_url(parse_healthcheck(), environ) == expected


def test_healthcheck_reports_a_disabled_endpoint(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("CONNECTOR_METRICS_PORT", "0")
    assert healthcheck.run(parse_healthcheck()) == 1
    assert "CONNECTOR_METRICS_PORT is 0" in capsys.readouterr().out
