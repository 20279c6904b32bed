"""The compose files, checked offline: schema, and that every path, port, setting and command they
rely on exists and agrees with the rest of the repository. (`make compose-e2e` runs them.)

`docker compose up` reads docker-compose.yml and docker-compose.override.yml (the development
stand-ins); `docker compose -f docker-compose.yml up` reads the first alone (the real API).
Most checks below look at the development stack, merged the way compose merges files.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from ruamel.yaml import YAML

from connector.cli import build_parser
from connector.config import RuntimeSettings, documented_variables, load_group, load_settings
from tests.e2e import compose_e2e, images

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = ROOT / "docker-compose.yml"
DEV_OVERRIDE = ROOT / "docker-compose.override.yml"
README = ROOT / "README.md"
CI_WORKFLOW = ROOT / ".github" / "workflows" / "ci.yml"
LOCAL_IMAGES_OVERRIDE = ROOT / "tests" / "e2e" / "compose.local-images.yml"
LOCAL_IMAGES = {images.KAFKA, images.PROMETHEUS, images.CONNECTOR}
CONNECTOR_IMAGE = "toloka-kafka-connector:dev"
# Commands of the image that run a role and serve /healthz (the image's HEALTHCHECK probes it).
ROLE_COMMANDS = {"run", "upload", "poll"}
# Sequences compose replaces when a later file sets them; it appends to all others (ports ...).
REPLACED_SEQUENCES = {"command", "entrypoint", "test"}
# What a process still does after its drain budget ran out: close the health server, let
# librdkafka's handles go, exit. A grace period without this margin ends in a SIGKILL.
EXIT_MARGIN_SECONDS = 5.0
INTERPOLATION = re.compile(r"\$\{(\w+):-([^}]*)\}")
# Top-level keys both docker-compose 1.29 (Debian's) and compose v2 accept; 1.29 refuses `name`.
PORTABLE_TOP_LEVEL_KEYS = {"version", "services", "networks", "volumes", "secrets", "configs"}


def load_yaml(path: Path) -> Any:
    return YAML(typ="safe").load(path)


def merge(base: Any, override: Any, key: str = "") -> Any:
    """Compose's merge of a later file into an earlier one, for the keys these files use."""
    if isinstance(base, dict) and isinstance(override, dict):
        merged = dict(base)
        for name, value in override.items():
            merged[name] = merge(base[name], value, name) if name in base else value
        return merged
    if isinstance(base, list) and isinstance(override, list) and key not in REPLACED_SEQUENCES:
        return base + [item for item in override if item not in base]
    return override


def with_defaults(value: Any) -> Any:
    """`${NAME:-default}` replaced by its default, as compose does where NAME is unset."""
    if isinstance(value, dict):
        return {key: with_defaults(item) for key, item in value.items()}
    if isinstance(value, list):
        return [with_defaults(item) for item in value]
    if isinstance(value, str):
        return INTERPOLATION.sub(lambda match: match.group(2), value)
    return value


def load_compose(files: list[Path]) -> dict[str, Any]:
    config: dict[str, Any] = {}
    for path in files:
        config = merge(config, with_defaults(load_yaml(path)))
    return config


def compose_files(argv: list[str]) -> list[Path]:
    """The files a `docker compose ...` command line reads: each -f, else the two defaults."""
    named = [ROOT / argv[i + 1] for i, arg in enumerate(argv[:-1]) if arg in {"-f", "--file"}]
    if named:
        return named
    return [path for path in (COMPOSE_FILE, DEV_OVERRIDE) if path.exists()]


def command_lines() -> Iterator[tuple[str, str]]:
    """(where, line) for each line of the README's shell blocks and the CI workflow's steps."""
    in_block = False
    for line in README.read_text().splitlines():
        if line.startswith("```"):
            in_block = line in {"```sh", "```bash"}
        elif in_block:
            yield README.name, line
    for line in CI_WORKFLOW.read_text().splitlines():
        if line.strip().startswith("run:"):
            yield CI_WORKFLOW.name, line.split("run:", 1)[1]


def documented_compose_commands() -> Iterator[tuple[str, list[str]]]:
    """Every `docker compose` command line in the README's shell blocks and the CI workflow."""
    for source, line in command_lines():
        if "docker compose " not in line and "docker-compose " not in line:
            continue
        command = line.split("docker compose ", 1)[-1].split("docker-compose ", 1)[-1]
        argv = shlex.split(command.split("#")[0].rstrip("\\ "))
        if argv:
            yield f"{source}: {line.strip()}", argv


COMPOSE: dict[str, Any] = load_compose(compose_files([]))
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


def run_schema_check(*paths: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "check_jsonschema",
            "--builtin-schema",
            "vendor.compose-spec",
            *map(str, paths),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_the_compose_files_follow_the_compose_spec() -> None:
    result = run_schema_check(*compose_files([]))
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_compose_files_use_only_top_level_keys_compose_1_29_reads() -> None:
    for path in compose_files([]):
        keys = {key for key in load_yaml(path) if not key.startswith("x-")}
        assert keys <= PORTABLE_TOP_LEVEL_KEYS, f"{path.name}: {keys - PORTABLE_TOP_LEVEL_KEYS}"


@pytest.mark.parametrize(
    ("where", "argv"), list(documented_compose_commands()), ids=lambda v: str(v)[:60]
)
def test_every_documented_compose_command_reads_a_complete_stack(
    where: str, argv: list[str]
) -> None:
    files = compose_files(argv)
    for path in files:
        assert path.exists(), f"{where}: {path.name} does not exist"
    services = load_compose(files)["services"]
    for name, spec in services.items():
        for dependency in spec.get("depends_on", {}):
            assert dependency in services, f"{where}: {name} depends on undefined {dependency}"


def test_the_readme_runs_the_real_api_stack_without_stand_ins_and_with_shell_credentials() -> None:
    """The README's real-API command reads a stack with no simulator and no sample producer, whose
    connector takes the key and the project from the shell (a `KEY:` entry without a value)."""
    section = README.read_text().split("### docker compose", 1)[1].split("\n## ", 1)[0]
    real_api = [
        argv
        for where, argv in documented_compose_commands()
        if where.startswith(README.name) and " ".join(argv) in section and "up" in argv
    ]
    stand_ins = {"simulator", "producer"}
    stacks = [load_compose(compose_files(argv))["services"] for argv in real_api]
    without_stand_ins = [s for s in stacks if not stand_ins & s.keys()]
    assert without_stand_ins, "the README's compose section has no command for the real API"
    for services in without_stand_ins:
        environment = services["connector"]["environment"]
        for variable in ("TOLOKA_API_KEY", "TOLOKA_APP_PROJECT_ID", "TOLOKA_BASE_URL"):
            assert variable in environment, variable
            assert environment[variable] is None, f"{variable} is written in the file"


def docker_compose_v1() -> str:
    binary = shutil.which("docker-compose")
    if binary is None:
        pytest.skip("docker-compose (1.29, Debian's) is not installed: nothing to cross-check")
    return binary


def test_docker_compose_1_29_reads_each_documented_file_set_as_these_tests_merge_it() -> None:
    binary = docker_compose_v1()
    file_sets = {tuple(compose_files(argv)) for _, argv in documented_compose_commands()}
    for files in file_sets:
        flags = [arg for path in files for arg in ("-f", str(path))]
        result = subprocess.run(
            [binary, "--project-directory", str(ROOT), *flags, "config"],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
            env={"PATH": "/usr/bin:/bin"},  # no TOLOKA_* of this shell leaks into the output
        )
        assert result.returncode == 0, result.stderr
        rendered = YAML(typ="safe").load(result.stdout)["services"]
        ours = load_compose(list(files))["services"]
        assert rendered.keys() == ours.keys()
        for name, spec in ours.items():
            for key in ("environment", "depends_on", "command", "entrypoint", "image"):
                theirs = rendered[name].get(key)
                if key == "environment" and theirs is not None:
                    theirs = {k: v if v is None else str(v) for k, v in theirs.items()}
                    mine = spec.get(key)
                    mine = {k: v if v is None else str(v) for k, v in mine.items()}
                    assert theirs == mine, f"{name}.{key}"
                else:
                    assert theirs == spec.get(key), f"{name}.{key}"


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


def test_every_host_port_can_be_moved_and_kafka_advertises_the_one_it_publishes() -> None:
    """A taken port (a local Kafka on 9092, anything on 9400) must not stop the stack: each host
    port is a HOST_PORT_* variable, and Kafka's HOST listener advertises that same port, or host
    clients would be sent to the wrong one."""
    raw: dict[str, Any] = {}
    for path in compose_files([]):
        raw = merge(raw, load_yaml(path))
    host_ports = {}
    for name, spec in raw["services"].items():
        for port in spec.get("ports", []):
            host = str(port).rsplit(":", 1)[0]
            match = INTERPOLATION.fullmatch(host)
            assert match, f"{name}: host port {host} is not a variable"
            assert match.group(1).startswith("HOST_PORT_"), f"{name}: {match.group(1)}"
            host_ports[name] = host
    advertised = dict(
        listener.split("://")
        for listener in raw["services"]["kafka"]["environment"]["KAFKA_ADVERTISED_LISTENERS"].split(
            ","
        )
    )
    assert advertised["HOST"] == f"localhost:{host_ports['kafka']}"


def test_published_host_ports_are_unique() -> None:
    host_ports = [
        str(port).split(":")[0] for spec in SERVICES.values() for port in spec.get("ports", [])
    ]
    assert len(host_ports) == len(set(host_ports))


def seconds(duration: str) -> float:
    """A compose duration (`1m30s`, `45s`, `500ms`) in seconds."""
    units = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001, "us": 1e-6}
    parts = re.findall(r"(\d+(?:\.\d+)?)(ms|us|h|m|s)", duration)
    if not parts or "".join(n + u for n, u in parts) != duration:
        raise ValueError(f"not a compose duration: {duration}")
    return sum(float(number) * units[unit] for number, unit in parts)


def test_seconds_reads_compose_durations() -> None:
    assert seconds("1m30s") == 90.0
    assert seconds("45s") == 45.0
    assert seconds("1500ms") == 1.5
    with pytest.raises(ValueError, match="not a compose duration"):
        seconds("45")


def role_services() -> list[str]:
    return [n for n in CONNECTOR_SERVICES if (cli_command(n) or [""])[0] in ROLE_COMMANDS]


def test_role_services_are_found() -> None:
    assert "connector" in role_services()


@pytest.mark.parametrize("service", role_services())
def test_the_stop_grace_period_outlasts_the_connectors_shutdown_budget(service: str) -> None:
    """`docker compose stop` sends SIGTERM, then SIGKILL after stop_grace_period (10 s unless set):
    a kill before the drain's own budget ran out repeats uploads and loses the clean exit."""
    budget = load_group(RuntimeSettings, env(service)).shutdown_timeout_seconds
    grace = seconds(str(SERVICES[service].get("stop_grace_period", "10s")))
    assert grace >= budget + EXIT_MARGIN_SECONDS, (
        f"{service}: stop_grace_period {grace:g}s, shutdown budget {budget:g}s"
    )


@pytest.mark.parametrize("service", CONNECTOR_SERVICES)
def test_services_without_a_health_endpoint_replace_the_images_health_check(service: str) -> None:
    """The image's HEALTHCHECK probes /healthz, which only a role with the endpoints on serves;
    any other use of the image (the simulator, a script) must say how it is checked, or not."""
    cli = cli_command(service)
    serves_health = (
        cli is not None
        and cli[0] in ROLE_COMMANDS
        and load_group(RuntimeSettings, env(service)).metrics_port != 0
    )
    if not serves_health:
        assert "healthcheck" in SERVICES[service], f"{service} inherits the image's health check"


# --- the local images `make compose-e2e` runs the stack on ------------------------------------


def test_the_dockerfiles_base_is_a_build_argument_defaulting_to_the_official_image() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    arguments = dict(re.findall(r"^ARG (\w+)=(\S+)$", dockerfile, re.MULTILINE))
    assert arguments == {"BASE_IMAGE": "python:3.11-slim-bookworm", "BUILD_IMAGE": "${BASE_IMAGE}"}
    stages = re.findall(r"^FROM (\S+)", dockerfile, re.MULTILINE)
    assert stages == ["${BUILD_IMAGE}", "${BASE_IMAGE}"]


def test_the_local_images_override_swaps_image_names_only() -> None:
    override = load_yaml(LOCAL_IMAGES_OVERRIDE)
    started = {name for name in SERVICES if name not in compose_e2e.NOT_STARTED}
    assert override.keys() == {"services"}
    assert override["services"].keys() == started
    for name, spec in override["services"].items():
        assert spec.keys() == {"image"}, name
        assert spec["image"] in LOCAL_IMAGES, f"{name}: {spec['image']} is built by nothing"


def test_the_local_kafka_image_has_every_kafka_script_the_stack_and_readme_run() -> None:
    used = set()
    for path in (*compose_files([]), README):
        used |= set(re.findall(r"/opt/kafka/bin/([\w-]+\.sh)", path.read_text()))
    dockerfile = (ROOT / "tests" / "e2e" / "images" / "kafka" / "Dockerfile").read_text()
    launchers = set(re.findall(r"^\s+([\w-]+\.sh)=\S+", dockerfile, re.MULTILINE))
    assert used
    assert used <= launchers, used - launchers


def test_compose_e2e_skips_with_a_reason_and_exit_0_where_no_engine_answers(tmp_path: Path) -> None:
    environment = {**os.environ, "DOCKER_HOST": f"unix://{tmp_path}/no-engine.sock"}
    result = subprocess.run(
        [sys.executable, "-m", "tests.e2e.compose_e2e"],
        cwd=ROOT,
        env=environment,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    [line] = result.stdout.splitlines()
    assert line.startswith("compose-e2e: skipped: "), line
    assert "docker" in line.lower()
