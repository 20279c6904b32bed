"""docker-compose.yml, checked offline (no Docker engine here): schema, and that every path, port,
setting and command it relies on exists and agrees with the rest of the repository."""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from ruamel.yaml import YAML

from connector.cli import build_parser
from connector.config import documented_variables, load_settings

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = ROOT / "docker-compose.yml"
CONNECTOR_IMAGE = "toloka-kafka-connector:dev"


def load_yaml(path: Path) -> Any:
    return YAML(typ="safe").load(path)


COMPOSE: dict[str, Any] = load_yaml(COMPOSE_FILE)
SERVICES: dict[str, dict[str, Any]] = COMPOSE["services"]
CONNECTOR_SERVICES = [n for n, s in SERVICES.items() if s.get("image") == CONNECTOR_IMAGE]


def env(service: str) -> dict[str, str]:
    return {k: str(v) for k, v in SERVICES[service].get("environment", {}).items()}


def cli_command(service: str) -> list[str] | None:
    """The toloka-connector arguments a connector-image service runs, None for other programs."""
    spec = SERVICES[service]
    if spec.get("entrypoint"):
        return None
    return [str(arg) for arg in spec.get("command", ["run"])]  # the Dockerfile's CMD is run


def bind_mounts(service: str) -> list[tuple[Path, str]]:
    mounts = []
    for volume in SERVICES[service].get("volumes", []):
        source, target = str(volume).split(":")[:2]
        if source.startswith("."):
            mounts.append((ROOT / source, target))
    return mounts


def repo_path(service: str, container_path: str) -> Path:
    """Where a file the container sees under a bind mount lives in the repository."""
    for source, target in bind_mounts(service):
        if container_path == target or container_path.startswith(target.rstrip("/") + "/"):
            return source / container_path[len(target) :].lstrip("/")
    raise AssertionError(f"{service}: {container_path} is not under a bind mount")


def run_schema_check(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "check_jsonschema",
            "--builtin-schema",
            "vendor.compose-spec",
            str(path),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_the_compose_file_follows_the_compose_spec() -> None:
    result = run_schema_check(COMPOSE_FILE)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_schema_check_rejects_a_broken_file(tmp_path: Path) -> None:
    broken = tmp_path / "docker-compose.yml"
    broken.write_text(
        "services:\n  x:\n    image: a:1\n    restart: sometimes\n    helthcheck: {}\n"
    )
    assert run_schema_check(broken).returncode != 0


def test_images_are_pinned_to_tags() -> None:
    for name, spec in SERVICES.items():
        image = spec["image"]
        repository, _, tag = image.rpartition(":")
        assert repository, f"{name}: {image} has no tag"
        assert tag != "latest", f"{name}: {image} is not pinned"
        if image == CONNECTOR_IMAGE:
            assert spec["build"] == {"context": ".", "dockerfile": "Dockerfile"}, name


def test_kafka_is_the_official_image_in_kraft_mode_with_two_listeners() -> None:
    kafka = SERVICES["kafka"]
    assert kafka["image"].startswith("apache/kafka:4.")
    variables = env("kafka")
    assert variables["KAFKA_PROCESS_ROLES"] == "broker,controller"
    advertised = dict(
        listener.split("://") for listener in variables["KAFKA_ADVERTISED_LISTENERS"].split(",")
    )
    assert advertised == {"INTERNAL": "kafka:19092", "HOST": "localhost:9092"}
    assert "9092:9092" in kafka["ports"]
    assert "kafka:19092" in " ".join(kafka["healthcheck"]["test"])


def test_bind_mounted_files_exist() -> None:
    mounts = [m for name in SERVICES for m in bind_mounts(name)]
    assert mounts
    for source, _ in mounts:
        assert source.exists(), source


def test_the_dockerfile_copies_files_that_exist_and_runs_as_non_root() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    ignored = (ROOT / ".dockerignore").read_text().split()
    for line in dockerfile.splitlines():
        if line.startswith("COPY") and "--from=" not in line:
            for source in line.split()[1:-1]:
                assert (ROOT / source).exists(), source
                assert f"!{source.rstrip('/')}" in ignored or f"!{source}/" in ignored, (
                    f"{source} is excluded from the build context by .dockerignore"
                )
    assert re.search(r"^USER 10001$", dockerfile, re.MULTILINE)
    assert 'CMD ["toloka-connector", "healthcheck"]' in dockerfile
    assert "CONNECTOR_METRICS_HOST=0.0.0.0" in dockerfile


@pytest.mark.parametrize("service", CONNECTOR_SERVICES)
def test_connector_image_services_use_known_settings(service: str) -> None:
    documented = {variable for variable, _, _ in documented_variables()}
    cli = cli_command(service)
    if cli is None:  # a script of ours: it must read every variable it is given
        [script] = [source for source, _ in bind_mounts(service) if source.suffix == ".py"]
        text = script.read_text()
        for variable in env(service):
            assert f'"{variable}"' in text, f"{service}: {script.name} never reads {variable}"
    else:
        assert set(env(service)) - documented == set()


def test_the_connectors_settings_load() -> None:
    settings = load_settings(environ=env("connector"))
    assert settings.runtime.metrics_host == "0.0.0.0"
    assert settings.runtime.log_format == "json"


@pytest.mark.parametrize("service", CONNECTOR_SERVICES)
def test_connector_image_commands_parse(service: str) -> None:
    commands = [cli_command(service)]
    test = SERVICES[service].get("healthcheck", {}).get("test", [])
    if test[:2] == ["CMD", "toloka-connector"]:
        commands.append(test[2:])
    parser = build_parser()
    for argv in filter(None, commands):
        try:
            parser.parse_args(argv)
        except SystemExit:
            pytest.fail(f"{service}: toloka-connector {shlex.join(argv)} does not parse")


def test_the_connector_reaches_the_simulator_and_kafka_by_service_name() -> None:
    variables = env("connector")
    command = SERVICES["simulator"]["command"]
    port = command[command.index("--port") + 1]
    assert command[command.index("--host") + 1] == "0.0.0.0"
    assert variables["TOLOKA_BASE_URL"] == f"http://simulator:{port}/api/app/v0"
    assert f"{port}:{port}" in SERVICES["simulator"]["ports"]
    for key in ("TOLOKA_API_KEY", "TOLOKA_APP_PROJECT_ID"):
        assert variables[key] == env("simulator")[key], key
    assert variables["KAFKA_BOOTSTRAP_SERVERS"] == "kafka:19092"
    assert env("producer")["KAFKA_BOOTSTRAP_SERVERS"] == "kafka:19092"


def test_kafka_init_creates_the_connectors_topics_with_a_compacted_state_topic() -> None:
    script = "\n".join(SERVICES["kafka-init"]["command"])
    created = dict(re.findall(r"^create --topic (\S+)(.*)$", script, re.MULTILINE))
    variables = env("connector")
    topics = {
        variables[key]
        for key in (
            "CONNECTOR_INPUT_TOPIC",
            "CONNECTOR_OUTPUT_TOPIC",
            "CONNECTOR_DLQ_TOPIC",
            "CONNECTOR_STATE_TOPIC",
        )
    }
    assert topics <= created.keys()
    assert "--config cleanup.policy=compact" in created[variables["CONNECTOR_STATE_TOPIC"]]
    assert env("producer")["CONNECTOR_INPUT_TOPIC"] == variables["CONNECTOR_INPUT_TOPIC"]
    assert SERVICES["kafka-init"]["restart"] == "no"


def test_dependencies_wait_for_health_checks_and_the_one_shot() -> None:
    for name, spec in SERVICES.items():
        for dependency, condition in spec.get("depends_on", {}).items():
            wanted = condition["condition"]
            if wanted == "service_healthy":
                assert "healthcheck" in SERVICES[dependency], f"{name} → {dependency}"
            else:
                assert wanted == "service_completed_successfully", f"{name} → {dependency}"
                assert SERVICES[dependency]["restart"] == "no"
    assert SERVICES["connector"]["depends_on"]["kafka-init"]["condition"] == (
        "service_completed_successfully"
    )


def test_prometheus_scrapes_the_connector_where_it_listens() -> None:
    flags = SERVICES["prometheus"]["command"]
    config_path = next(f.split("=", 1)[1] for f in flags if f.startswith("--config.file="))
    config = load_yaml(repo_path("prometheus", config_path))
    targets = [
        t for job in config["scrape_configs"] for c in job["static_configs"] for t in c["targets"]
    ]
    port = env("connector")["CONNECTOR_METRICS_PORT"]
    assert targets == [f"connector:{port}"]
    for rule_file in config["rule_files"]:
        assert repo_path("prometheus", str(Path(config_path).parent / rule_file)).exists()


def test_grafana_provisions_the_datasource_and_the_dashboard() -> None:
    provisioning = repo_path("grafana", "/etc/grafana/provisioning")
    [provider] = load_yaml(provisioning / "dashboards" / "toloka-connector.yml")["providers"]
    dashboards = repo_path("grafana", provider["options"]["path"])
    assert (dashboards / "toloka-connector.json").exists()
    home = env("grafana")["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    assert repo_path("grafana", home).exists()
    [datasource] = load_yaml(provisioning / "datasources" / "prometheus.yml")["datasources"]
    assert datasource["url"] == "http://prometheus:9090"
    assert "9090:9090" in SERVICES["prometheus"]["ports"]
    assert "3000:3000" in SERVICES["grafana"]["ports"]


def test_published_host_ports_are_unique() -> None:
    host_ports = [
        str(port).split(":")[0] for spec in SERVICES.values() for port in spec.get("ports", [])
    ]
    assert len(host_ports) == len(set(host_ports))
