"""deploy/kubernetes, rendered with `kubectl kustomize` and checked offline: every object against
the Kubernetes schemas (kubernetes-validate, strict: unknown fields fail), the PodMonitor against
a vendored subset of its CRD, and every probe path, port and variable against the connector's own
code (the health server answering, the settings loading), not against copies of them."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import tomllib
from collections.abc import Iterator
from copy import deepcopy
from functools import cache
from importlib.metadata import version
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
from ruamel.yaml import YAML

from connector.cli import build_parser
from connector.config import (
    PollerSettings,
    RuntimeSettings,
    UploaderSettings,
    documented_variables,
    is_secret_kafka_property,
    kafka_property,
    load_group,
    load_settings,
)
from tests.unit.test_compose import EXIT_MARGIN_SECONDS, ROLE_COMMANDS
from tests.unit.test_health import Stack, stack  # noqa: F401 - the fixture, used by name

ROOT = Path(__file__).resolve().parents[2]
KUSTOMIZATIONS = {
    "base": ROOT / "deploy" / "kubernetes" / "base",
    "pipelines": ROOT / "deploy" / "kubernetes" / "overlays" / "pipelines",
}
PODMONITOR_SCHEMA = (
    ROOT / "tests" / "fixtures" / "schemas" / "podmonitor.monitoring.coreos.com-v1.json"
)
# The oldest Kubernetes these manifests are for (PodDisruptionBudget policy/v1 is 1.21+,
# seccompProfile 1.19+; 1.29 is the oldest minor with upstream support the schemas cover), and the
# newest whose schemas the package ships.
KUBERNETES_VERSIONS = ("1.29", kubernetes_validate.latest_version())
SECRET_VARIABLES = {"TOLOKA_API_KEY", "KAFKA_SASL_PASSWORD"}
# Peak RSS of `run` measured in its container under benchmark scenario 4's load (`python -m
# tests.e2e.compose_e2e --memory 200`, see deployment.yaml): the request covers it, the limit
# twice it (what grows is bounded, see there).
MEASURED_RUN_PEAK_MIB = 350
# Variables a Service named NAME makes Kubernetes inject into pods with service links on.
SERVICE_LINK_SUFFIXES = ("_SERVICE_HOST", "_SERVICE_PORT", "_PORT")
SETTING_PREFIXES = ("TOLOKA_", "CONNECTOR_", "KAFKA_")
# The contract's per-pipeline keys, besides the tuning settings (the [connector] table's names).
PIPELINE_KEYS = {"app_project_id", "input_topic", "output_topic", "dlq_topic", "key_field"}
PIPELINE_TOPIC_VARIABLES = {
    "TOLOKA_APP_PROJECT_ID",
    "CONNECTOR_INPUT_TOPIC",
    "CONNECTOR_OUTPUT_TOPIC",
    "CONNECTOR_DLQ_TOPIC",
}


def kustomize(directory: Path) -> tuple[dict[str, Any], ...]:
    """The objects `kubectl kustomize DIRECTORY` renders."""
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("kubectl is not installed: the kustomizations cannot be rendered")
    result = subprocess.run(
        [kubectl, "kustomize", str(directory)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return tuple(doc for doc in YAML(typ="safe").load_all(result.stdout) if doc)


@cache
def rendered(name: str) -> tuple[dict[str, Any], ...]:
    return kustomize(KUSTOMIZATIONS[name])


def the(name: str, kind: str) -> dict[str, Any]:
    [found] = [obj for obj in rendered(name) if obj["kind"] == kind]
    return found


def pod_spec(name: str) -> dict[str, Any]:
    spec: dict[str, Any] = the(name, "Deployment")["spec"]["template"]["spec"]
    return spec


def container(name: str) -> dict[str, Any]:
    connectors: list[dict[str, Any]] = pod_spec(name)["containers"]
    [connector] = connectors
    return connector


def pod_environment(name: str) -> dict[str, str]:
    """The variables the container starts with: its ConfigMaps, then its own `env` (Secret
    references stand for a value of the Secret, which is not in the repository)."""
    config_maps = {
        obj["metadata"]["name"]: obj for obj in rendered(name) if obj["kind"] == "ConfigMap"
    }
    environment: dict[str, str] = {}
    for source in container(name).get("envFrom", []):
        environment.update(config_maps[source["configMapRef"]["name"]]["data"])
    for variable in container(name).get("env", []):
        if "value" in variable:
            environment[variable["name"]] = variable["value"]
        else:
            ref = variable["valueFrom"]["secretKeyRef"]
            environment[variable["name"]] = f"secret-{ref['name']}-{ref['key']}"
    return environment


def runtime(name: str) -> RuntimeSettings:
    return load_group(RuntimeSettings, pod_environment(name))


def named_port(name: str, port: str | int) -> int:
    if isinstance(port, int):
        return port
    [number] = [p["containerPort"] for p in container(name)["ports"] if p["name"] == port]
    return int(number)


def selects_the_pods(name: str, selector: dict[str, Any]) -> bool:
    labels = the(name, "Deployment")["spec"]["template"]["metadata"]["labels"]
    return bool(selector) and selector.items() <= labels.items()


@pytest.fixture(params=list(KUSTOMIZATIONS))
def kustomization(request: pytest.FixtureRequest) -> str:
    return str(request.param)


# --- schemas ---------------------------------------------------------------------------------


def kubernetes_objects(name: str) -> Iterator[dict[str, Any]]:
    return (obj for obj in rendered(name) if obj["apiVersion"] != "monitoring.coreos.com/v1")


@pytest.mark.parametrize("kubernetes", KUBERNETES_VERSIONS)
def test_every_object_is_valid_for_kubernetes(kustomization: str, kubernetes: str) -> None:
    kinds = []
    for obj in kubernetes_objects(kustomization):
        kubernetes_validate.validate(obj, kubernetes, strict=True)
        kinds.append(obj["kind"])
    assert sorted(kinds) == sorted(
        ["ConfigMap"] * (2 if kustomization == "pipelines" else 1)
        + ["Deployment", "PodDisruptionBudget", "Service"]
    )


def test_strict_validation_refuses_a_misspelt_field() -> None:
    deployment = deepcopy(the("base", "Deployment"))
    probe = deployment["spec"]["template"]["spec"]["containers"][0]["livenessProbe"]
    probe["httpGet"]["paht"] = probe["httpGet"].pop("path")
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, KUBERNETES_VERSIONS[-1], strict=True)


def podmonitor_validator() -> jsonschema.Draft202012Validator:
    return jsonschema.Draft202012Validator(json.loads(PODMONITOR_SCHEMA.read_text()))


def test_the_podmonitor_follows_its_crd(kustomization: str) -> None:
    podmonitor_validator().validate(the(kustomization, "PodMonitor"))


def test_the_podmonitor_schema_refuses_a_misspelt_field_and_a_bad_interval() -> None:
    misspelt = deepcopy(the("base", "PodMonitor"))
    misspelt["spec"]["podMetricsEndpoints"][0]["intervall"] = "15s"
    bad_interval = deepcopy(the("base", "PodMonitor"))
    bad_interval["spec"]["podMetricsEndpoints"][0]["interval"] = "15 seconds"
    for wrong in (misspelt, bad_interval):
        with pytest.raises(jsonschema.ValidationError):
            podmonitor_validator().validate(wrong)


# --- probes, ports and endpoints, against the connector's health server ----------------------


def test_the_endpoints_listen_where_the_probes_and_prometheus_knock(kustomization: str) -> None:
    settings = runtime(kustomization)
    # A probe or a scrape comes from outside the pod, to its address: a loopback bind refuses it.
    assert settings.metrics_host in {"0.0.0.0", "::", ""}
    connector = container(kustomization)
    for probe in ("livenessProbe", "readinessProbe"):
        assert named_port(kustomization, connector[probe]["httpGet"]["port"]) == (
            settings.metrics_port
        ), probe
    [endpoint] = the(kustomization, "PodMonitor")["spec"]["podMetricsEndpoints"]
    assert named_port(kustomization, endpoint["port"]) == settings.metrics_port
    [service_port] = the(kustomization, "Service")["spec"]["ports"]
    assert named_port(kustomization, service_port["targetPort"]) == settings.metrics_port


def test_the_liveness_probe_asks_the_liveness_endpoint(stack: Stack) -> None:  # noqa: F811
    path = container("base")["livenessProbe"]["httpGet"]["path"]
    assert stack.get(path)[0] == 200
    stack.poller.ready = False  # not ready is no reason to restart
    assert stack.get(path)[0] == 200
    stack.clock.advance(61)  # every loop stuck past the 60 s limit: restart
    assert stack.get(path)[0] == 503


def test_the_readiness_probe_asks_the_readiness_endpoint(stack: Stack) -> None:  # noqa: F811
    path = container("base")["readinessProbe"]["httpGet"]["path"]
    assert stack.get(path)[0] == 200
    stack.poller.ready = False
    assert stack.get(path)[0] == 503


def test_the_podmonitor_scrapes_the_metrics_endpoint(stack: Stack) -> None:  # noqa: F811
    [endpoint] = the("base", "PodMonitor")["spec"]["podMetricsEndpoints"]
    status, headers, body = stack.get(endpoint["path"])
    assert status == 200
    assert headers["Content-Type"].startswith("text/plain")
    assert b"\ntoloka_connector_build_info{" in body


def test_the_podmonitor_service_and_budget_select_the_deployments_pods(kustomization: str) -> None:
    assert selects_the_pods(
        kustomization, the(kustomization, "PodMonitor")["spec"]["selector"]["matchLabels"]
    )
    assert selects_the_pods(kustomization, the(kustomization, "Service")["spec"]["selector"])
    budget = the(kustomization, "PodDisruptionBudget")["spec"]
    assert selects_the_pods(kustomization, budget["selector"]["matchLabels"])
    # A drain takes one pod at a time, and one always stays: a standby poller to take over.
    replicas = the(kustomization, "Deployment")["spec"]["replicas"]
    assert replicas >= 2
    assert 1 <= budget["maxUnavailable"] < replicas


# --- settings and secrets, against the connector's settings ----------------------------------


def test_every_variable_the_pod_gets_is_a_setting_of_the_connector(kustomization: str) -> None:
    documented = {name for name, _, _ in documented_variables()}
    for variable in pod_environment(kustomization):
        if variable.startswith("KAFKA_") and variable not in documented:
            continue  # a librdkafka property: load_settings asks librdkafka below
        assert variable in documented, f"{variable} is no setting of the connector"


def test_the_base_settings_load() -> None:
    settings = load_settings(environ=pod_environment("base"))
    assert settings.runtime.metrics_host == "0.0.0.0"
    assert settings.kafka.client_config()["security.protocol"] == "SASL_SSL"


def test_the_secrets_come_from_the_secret_and_nothing_secret_from_the_configmap(
    kustomization: str,
) -> None:
    from_secret = {
        variable["name"]
        for variable in container(kustomization)["env"]
        if "secretKeyRef" in variable.get("valueFrom", {})
    }
    assert from_secret == SECRET_VARIABLES
    for config_map in (obj for obj in rendered(kustomization) if obj["kind"] == "ConfigMap"):
        for variable in config_map["data"]:
            assert variable not in SECRET_VARIABLES
            if variable.startswith("KAFKA_"):
                assert not is_secret_kafka_property(kafka_property(variable)), variable


def test_service_links_cannot_inject_variables_the_connector_reads(kustomization: str) -> None:
    """Kubernetes gives every pod NAME_SERVICE_HOST, NAME_PORT … for each Service of its namespace
    unless enableServiceLinks is false; for this Service, TOLOKA_CONNECTOR_METRICS_* names."""
    services = [
        obj["metadata"]["name"] for obj in rendered(kustomization) if obj["kind"] == "Service"
    ]
    injected = [
        name.upper().replace("-", "_") + suffix
        for name in services
        for suffix in SERVICE_LINK_SUFFIXES
    ]
    if any(variable.startswith(SETTING_PREFIXES) for variable in injected):
        assert pod_spec(kustomization)["enableServiceLinks"] is False, injected


def test_termination_grace_outlasts_the_shutdown_budget(kustomization: str) -> None:
    budget = runtime(kustomization).shutdown_timeout_seconds
    grace = pod_spec(kustomization)["terminationGracePeriodSeconds"]
    assert grace >= budget + EXIT_MARGIN_SECONDS, f"grace {grace}s, shutdown budget {budget:g}s"


def test_the_container_runs_a_role_as_the_images_user_on_a_read_only_root(
    kustomization: str,
) -> None:
    connector = container(kustomization)
    args = connector["args"]
    assert args[0] in ROLE_COMMANDS
    build_parser().parse_args(args)  # exits 2 on an unknown option
    [image_user] = re.findall(r"^USER (\d+)$", (ROOT / "Dockerfile").read_text(), re.MULTILINE)
    pod = pod_spec(kustomization)["securityContext"]
    assert pod["runAsNonRoot"] is True
    assert pod["runAsUser"] == int(image_user)
    assert pod["seccompProfile"]["type"] == "RuntimeDefault"
    own = connector["securityContext"]
    assert own["readOnlyRootFilesystem"] is True
    assert own["allowPrivilegeEscalation"] is False
    assert own["capabilities"]["drop"] == ["ALL"]
    mounts = {m["mountPath"]: m["name"] for m in connector["volumeMounts"]}
    volumes = {v["name"]: v for v in pod_spec(kustomization)["volumes"]}
    assert "emptyDir" in volumes[mounts["/tmp"]], "a read-only root needs a writable /tmp"


def test_resources_cover_the_measured_memory(kustomization: str) -> None:
    resources = container(kustomization)["resources"]
    assert resources["requests"]["cpu"]
    request, limit = (quantity_mib(resources[k]["memory"]) for k in ("requests", "limits"))
    assert request >= MEASURED_RUN_PEAK_MIB
    assert limit >= 2 * MEASURED_RUN_PEAK_MIB


def quantity_mib(quantity: str) -> float:
    number, unit = re.fullmatch(r"(\d+)(Mi|Gi)", quantity).groups()  # type: ignore[union-attr]
    return float(number) * (1024 if unit == "Gi" else 1)


def test_the_image_tag_is_the_packages_version(kustomization: str) -> None:
    image = container(kustomization)["image"]
    assert image == f"toloka-kafka-connector:{version('toloka-kafka-connector')}"


# --- the pipelines overlay -------------------------------------------------------------------


def pipelines_file() -> tuple[Path, dict[str, Any]]:
    """The TOML file the overlay's container reads, and its parsed content."""
    args = container("pipelines")["args"]
    config_path = Path(args[args.index("--config") + 1])
    [mount] = [
        m
        for m in container("pipelines")["volumeMounts"]
        if config_path.parent == Path(m["mountPath"])
    ]
    [volume] = [v for v in pod_spec("pipelines")["volumes"] if v["name"] == mount["name"]]
    [config_map] = [
        obj
        for obj in rendered("pipelines")
        if obj["kind"] == "ConfigMap" and obj["metadata"]["name"] == volume["configMap"]["name"]
    ]
    text = config_map["data"][config_path.name]
    assert (KUSTOMIZATIONS["pipelines"] / config_path.name).read_text() == text
    return KUSTOMIZATIONS["pipelines"] / config_path.name, tomllib.loads(text)


def test_the_pipelines_file_follows_the_contract() -> None:
    _, config = pipelines_file()
    pipelines = config["pipelines"]
    assert len(pipelines) >= 2
    tuning = set(UploaderSettings.model_fields) | set(PollerSettings.model_fields)
    for pipeline in pipelines:
        assert pipeline["app_project_id"]
        assert set(pipeline) <= PIPELINE_KEYS | tuning, set(pipeline) - PIPELINE_KEYS - tuning
    inputs = [p["input_topic"] for p in pipelines]
    assert len(set(inputs)) == len(inputs), "two pipelines share an input topic"
    # The rest of the file is the defaults of every pipeline: settings the connector knows.
    documented = {name for name, _, _ in documented_variables()}
    for table, values in config.items():
        if table != "pipelines":
            for key in values:
                assert f"{table}_{key}".upper() in documented, f"[{table}] {key}"


def test_the_pipelines_overlay_leaves_per_project_settings_to_the_file() -> None:
    assert not PIPELINE_TOPIC_VARIABLES & pod_environment("pipelines").keys()


def test_the_connector_loads_the_pipelines_file() -> None:
    path, config = pipelines_file()
    settings = load_settings(config_file=path, environ=pod_environment("pipelines"))
    assert [p.toloka.app_project_id for p in settings.pipelines] == [
        table["app_project_id"] for table in config["pipelines"]
    ]


def test_the_readmes_overlay_renders_with_the_image_and_settings_it_names(tmp_path: Path) -> None:
    readme = (ROOT / "README.md").read_text()
    section = readme.split("### Kubernetes", 1)[1]
    overlay = section.split("`my-connector/kustomization.yaml`", 1)[1]
    text = overlay.split("```yaml\n", 1)[1].split("```", 1)[0]
    (tmp_path / "my-connector").mkdir()
    (tmp_path / "my-connector" / "kustomization.yaml").write_text(text)
    (tmp_path / "toloka-kafka-connector").symlink_to(ROOT)  # "next to this repository's folder"
    objects = kustomize(tmp_path / "my-connector")
    [deployment] = [obj for obj in objects if obj["kind"] == "Deployment"]
    [config_map] = [obj for obj in objects if obj["kind"] == "ConfigMap"]
    image = deployment["spec"]["template"]["spec"]["containers"][0]["image"]
    assert (
        image == f"registry.example.com/toloka-kafka-connector:{version('toloka-kafka-connector')}"
    )
    assert config_map["data"]["TOLOKA_APP_PROJECT_ID"] == "my-project"  # merged over settings.env
    assert config_map["data"]["CONNECTOR_METRICS_HOST"] == "0.0.0.0"  # and the rest kept
