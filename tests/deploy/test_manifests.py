"""deploy/ is valid for a pinned Kubernetes and the custom resources' CRDs, and says what the app does.

Built-in kinds are checked by kubernetes-validate (schemas bundled, offline) in strict mode; KEDA's and
Karpenter's resources against their CRDs' schemas vendored in schemas/ (vendor_crd.py), closed to unknown
fields; the NVIDIA device plugin's config against a schema written from its Go types. CEL rules
(`x-kubernetes-validations`) are not evaluated. The rest asserts what the schemas cannot know: that the
manifests match the code (settings, routes, commands, queue keys) and each other (selectors, names, taints).
"""

from __future__ import annotations

import ast
import json
import os
from copy import deepcopy
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import jsonschema
import kubernetes_validate
import pytest
import yaml
from yamllint import linter
from yamllint.config import YamlLintConfig

from config import Settings
from handlers.health import default_handlers as health_routes
from server.jobs.redis_queue import GROUP as QUEUE_CONSUMER_GROUP
from tests.deploy.manifests import (ROOT, Resource, container_env, labels_match, manifest_files, of_kind, one,
                                    pod_spec, resources)
from tests.deploy.schemas.vendor_crd import schema_file_name

# The Kubernetes release the manifests are written for (kubernetes-validate bundles its schemas).
KUBERNETES_VERSION = "1.34"
SCHEMAS = Path(__file__).resolve().parent / "schemas"
NVIDIA_CONFIG_SCHEMA = SCHEMAS / "nvidia-device-plugin_v1_Config.json"
WEB, WORKER = "visionary-web", "visionary-worker"
# The one resource outside the app's namespace: the device plugin reads its config from its own.
NAMESPACED = {("ConfigMap", "nvidia-device-plugin-config"): "nvidia-device-plugin"}
# A worker's SIGTERM: finish for VA_WORKER_STOP_GRACE_SECS, then hand jobs back and close connections.
HAND_BACK_MARGIN_SECS = 10
# KEDA's redis-streams trigger metadata (keda.sh docs 2.21 and pkg/scalers/redis_streams_scaler.go, v2.20.2).
REDIS_STREAMS_METADATA = {
    "address", "addresses", "host", "hosts", "port", "ports", "addressFromEnv", "hostFromEnv", "portFromEnv",
    "usernameFromEnv", "passwordFromEnv", "stream", "consumerGroup", "pendingEntriesCount", "streamLength",
    "lagCount", "activationLagCount", "enableTLS", "unsafeSsl", "databaseIndex",
}
REDIS_AUTH_PARAMETERS = {"username", "password", "tls", "ca", "cert", "key", "keyPassword"}


def env_prefix() -> str:
    return Settings.model_config["env_prefix"]


def setting_names() -> set[str]:
    return {env_prefix() + field.upper() for field in Settings.model_fields}


def crd_schema(resource: Resource) -> dict[str, Any] | None:
    path = SCHEMAS / schema_file_name(resource.doc["apiVersion"], resource.kind)
    return json.loads(path.read_text()) if path.exists() else None


def closed(schema: Any) -> Any:
    """The schema with every object that lists its properties refusing others.

    The API server prunes unknown fields of a custom resource silently, so a misspelt field would just vanish;
    here it fails the test instead. Maps (`additionalProperties`) and preserved objects stay open.
    """
    if isinstance(schema, list):
        return [closed(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    schema = {key: closed(value) for key, value in schema.items()}
    if ("properties" in schema and "additionalProperties" not in schema
            and not schema.get("x-kubernetes-preserve-unknown-fields")):
        schema["additionalProperties"] = False
    return schema


def validate_custom(doc: dict[str, Any], schema: dict[str, Any]) -> None:
    jsonschema.Draft202012Validator(closed(schema)).validate(doc)


def containers(resource: Resource) -> list[dict[str, Any]]:
    return pod_spec(resource)["containers"]


def the_container(name: str) -> tuple[Resource, dict[str, Any]]:
    deployment = one("Deployment", name)
    (container,) = containers(deployment)
    return deployment, container


def settings_of(resource: Resource, container: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> Settings:
    """The settings this container's process builds from its environment (and nothing else)."""
    for name in [name for name in os.environ if name.startswith(env_prefix()) or name == "VA_CONFIG"]:
        monkeypatch.delenv(name)
    for name, value in container_env(resource, container).items():
        monkeypatch.setenv(name, value)
    return Settings()


def workloads() -> list[Resource]:
    return of_kind("Deployment") + of_kind("Job")


def run_py_commands() -> set[str]:
    """The subcommands run.py declares (`commands.add_parser("name", ...)`), read without importing it."""
    tree = ast.parse((ROOT / "run.py").read_text())
    return {node.args[0].value for node in ast.walk(tree)
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
            and node.func.attr == "add_parser" and node.args and isinstance(node.args[0], ast.Constant)}


def probe_port(container: dict[str, Any], probe: dict[str, Any]) -> int:
    port = probe["httpGet"]["port"]
    if isinstance(port, int):
        return port
    (number,) = [p["containerPort"] for p in container["ports"] if p.get("name") == port]
    return number


def health_paths() -> set[str]:
    return {pattern for pattern, _handler in health_routes}


# --- syntax and schemas ---------------------------------------------------------------------------------


@pytest.mark.parametrize("path", manifest_files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_yamllint_passes(path: Path):
    config = YamlLintConfig(file=str(ROOT / ".yamllint"))
    problems = [f"{path.name}:{p.line}:{p.column} {p.level} {p.message}"
                for p in linter.run(path.read_text(), config, str(path))]
    assert problems == []


def test_there_are_manifests_to_check():
    kinds = {resource.kind for resource in resources()}
    assert {"Deployment", "Service", "HorizontalPodAutoscaler", "PodDisruptionBudget", "Job", "Secret",
            "PersistentVolumeClaim", "Ingress", "ConfigMap", "ScaledObject", "TriggerAuthentication",
            "NodePool", "EC2NodeClass"} <= kinds


@pytest.mark.parametrize("resource", [r for r in resources() if crd_schema(r) is None], ids=str)
def test_builtin_kinds_validate_for_the_pinned_kubernetes(resource: Resource):
    # strict: unknown fields fail. A kind without a bundled schema raises SchemaNotFoundError: no silent pass.
    kubernetes_validate.validate(resource.doc, KUBERNETES_VERSION, strict=True)


@pytest.mark.parametrize("resource", [r for r in resources() if crd_schema(r) is not None], ids=str)
def test_custom_resources_validate_against_their_crds(resource: Resource):
    validate_custom(resource.doc, crd_schema(resource))


def test_validation_rejects_a_misspelt_field():
    """Both validators can fail: the checks above are not vacuous."""
    web = deepcopy(one("Deployment", WEB).doc)
    web["spec"]["template"]["spec"]["terminationGracePeriodSecond"] = 30
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(web, KUBERNETES_VERSION, strict=True)
    scaled = one("ScaledObject", WORKER)
    doc = deepcopy(scaled.doc)
    doc["spec"]["minReplicaCont"] = 0
    with pytest.raises(jsonschema.ValidationError):
        validate_custom(doc, crd_schema(scaled))


def test_nvidia_time_slicing_config_is_a_valid_device_plugin_config():
    config_map = one("ConfigMap", "nvidia-device-plugin-config")
    schema = json.loads(NVIDIA_CONFIG_SCHEMA.read_text())
    assert config_map.doc["data"], "the ConfigMap holds no config"
    for name, text in config_map.doc["data"].items():
        config = yaml.safe_load(text)
        jsonschema.Draft202012Validator(schema).validate(config)
        time_slicing = config["sharing"]["timeSlicing"]
        # Workers ask for `nvidia.com/gpu`: the shares must keep that name, and there must be several per card.
        assert not time_slicing.get("renameByDefault"), name
        shared = {item["name"]: item for item in time_slicing["resources"]}
        assert shared["nvidia.com/gpu"]["replicas"] >= 2, name
        assert "rename" not in shared["nvidia.com/gpu"], name


def test_namespaces_are_chosen_at_apply_time():
    for resource in resources():
        expected = NAMESPACED.get((resource.kind, resource.name))
        assert resource.doc["metadata"].get("namespace") == expected, str(resource)


# --- the manifests match the code ---------------------------------------------------------------------------


def test_every_variable_is_a_setting():
    known = setting_names()
    for resource in workloads():
        for container in containers(resource):
            unknown = set(container_env(resource, container)) - known
            assert unknown == set(), f"{resource}: not settings in config/settings.py: {sorted(unknown)}"


@pytest.mark.parametrize("resource", workloads(), ids=str)
def test_every_container_environment_builds_valid_settings(resource: Resource, monkeypatch: pytest.MonkeyPatch):
    for container in containers(resource):
        settings = settings_of(resource, container, monkeypatch)
        assert settings.database_url and settings.database_url.startswith("mysql+aiomysql://")
        assert settings.redis_url


def test_every_command_is_a_run_py_command():
    commands = run_py_commands()
    assert {"serve", "worker", "migrate"} <= commands
    for resource in workloads():
        for container in containers(resource):
            assert "command" not in container, f"{resource}: `args` only, so the image's tini entrypoint stays"
            assert container["args"][0] in commands, str(resource)


def test_web_pods_are_web_processes(monkeypatch: pytest.MonkeyPatch):
    deployment, container = the_container(WEB)
    settings = settings_of(deployment, container, monkeypatch)
    assert settings.inference_enabled is False
    args = container["args"]
    assert args[0] == "serve"
    assert args[args.index("--host") + 1] == "0.0.0.0"
    port = int(args[args.index("--port") + 1])
    assert [p["containerPort"] for p in container["ports"]] == [port]
    assert "nvidia.com/gpu" not in json.dumps(container["resources"])


def test_web_probes_use_the_apps_health_routes():
    _deployment, container = the_container(WEB)
    port = container["ports"][0]["containerPort"]
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    for kind in ("startupProbe", "livenessProbe", "readinessProbe"):
        probe = container[kind]
        assert probe["httpGet"]["path"] in health_paths(), kind
        assert probe_port(container, probe) == port, kind


def test_workers_request_a_gpu_and_outlive_their_stop_grace(monkeypatch: pytest.MonkeyPatch):
    deployment, container = the_container(WORKER)
    settings = settings_of(deployment, container, monkeypatch)
    assert container["args"] == ["worker"]
    for bound in ("requests", "limits"):
        assert int(container["resources"][bound]["nvidia.com/gpu"]) == 1, bound
    grace = pod_spec(deployment)["terminationGracePeriodSeconds"]
    assert grace >= settings.worker_stop_grace_secs + HAND_BACK_MARGIN_SECS


def test_worker_probes_read_its_metrics_port(monkeypatch: pytest.MonkeyPatch):
    deployment, container = the_container(WORKER)
    settings = settings_of(deployment, container, monkeypatch)
    assert settings.worker_metrics_port is not None
    # The metrics server binds VA_HOST: the kubelet reaches it only on all interfaces.
    assert settings.host == "0.0.0.0"
    for kind in ("startupProbe", "livenessProbe"):
        probe = container[kind]
        assert probe["httpGet"]["path"] == "/metrics", kind
        assert probe_port(container, probe) == settings.worker_metrics_port, kind
    assert "readinessProbe" not in container, "a worker serves no traffic"


def test_scaled_object_scales_the_workers_on_the_queue(monkeypatch: pytest.MonkeyPatch):
    deployment, container = the_container(WORKER)
    prefix = settings_of(deployment, container, monkeypatch).redis_prefix
    spec = one("ScaledObject", WORKER).doc["spec"]
    assert spec["scaleTargetRef"]["name"] == deployment.name
    assert spec["scaleTargetRef"].get("kind", "Deployment") == "Deployment"
    assert spec["minReplicaCount"] == 0
    assert spec["maxReplicaCount"] >= 1
    assert "replicas" not in deployment.doc["spec"], "KEDA owns the worker count"
    triggers = {trigger["metadata"]["stream"]: trigger for trigger in spec["triggers"]}
    assert {trigger["type"] for trigger in spec["triggers"]} == {"redis-streams"}
    # Keys of server/jobs/redis_queue.py: the backlog mirrored one entry per waiting job; the leased jobs.
    waiting, running = triggers.pop(prefix + "jobs:waiting"), triggers.pop(prefix + "jobs:stream")
    assert triggers == {}
    assert "consumerGroup" not in waiting["metadata"], "with a consumer group KEDA would not read XLEN"
    assert int(waiting["metadata"]["streamLength"]) >= 1
    assert running["metadata"]["consumerGroup"] == QUEUE_CONSUMER_GROUP
    assert int(running["metadata"]["pendingEntriesCount"]) >= 1
    modifiers = spec.get("advanced", {}).get("scalingModifiers")
    if modifiers:
        assert set(modifiers["formula"].replace("+", " ").split()) == {waiting["name"], running["name"]}


def test_keda_reaches_the_apps_redis():
    url = urlsplit(one("Secret", "visionary-art").doc["stringData"]["VA_REDIS_URL"])
    database = (url.path.strip("/") or "0")
    for trigger in one("ScaledObject", WORKER).doc["spec"]["triggers"]:
        metadata = trigger["metadata"]
        assert set(metadata) <= REDIS_STREAMS_METADATA, set(metadata) - REDIS_STREAMS_METADATA
        assert metadata["address"] == f"{url.hostname}:{url.port or 6379}"
        assert metadata.get("databaseIndex", "0") == database
        auth = one("TriggerAuthentication", trigger["authenticationRef"]["name"]).doc["spec"]
        for ref in auth["secretTargetRef"]:
            assert ref["parameter"] in REDIS_AUTH_PARAMETERS
            assert ref["key"] in one("Secret", ref["name"]).doc["stringData"]


# --- the manifests match each other -------------------------------------------------------------------------


def test_selectors_and_references_resolve():
    deployments = of_kind("Deployment")
    pod_labels = {d.name: d.doc["spec"]["template"]["metadata"]["labels"] for d in deployments}
    for deployment in deployments:
        assert labels_match(deployment.doc["spec"]["selector"]["matchLabels"], pod_labels[deployment.name])
        for volume in pod_spec(deployment).get("volumes", []):
            if "persistentVolumeClaim" in volume:
                claim = one("PersistentVolumeClaim", volume["persistentVolumeClaim"]["claimName"])
                assert "ReadWriteMany" in claim.doc["spec"]["accessModes"], "every pod mounts the data at once"
    for budget in of_kind("PodDisruptionBudget"):
        selector = budget.doc["spec"]["selector"]["matchLabels"]
        assert [name for name, labels in pod_labels.items() if labels_match(selector, labels)] == [budget.name]
    for hpa in of_kind("HorizontalPodAutoscaler"):
        assert hpa.doc["spec"]["scaleTargetRef"]["name"] in pod_labels
        assert "replicas" not in one("Deployment", hpa.doc["spec"]["scaleTargetRef"]["name"]).doc["spec"]
    for service in of_kind("Service"):
        (target,) = [d for d in deployments if labels_match(service.doc["spec"]["selector"], pod_labels[d.name])]
        port_names = {p.get("name") for c in containers(target) for p in c.get("ports", [])}
        for port in service.doc["spec"]["ports"]:
            assert port["targetPort"] in port_names
    for ingress in of_kind("Ingress"):
        for rule in ingress.doc["spec"]["rules"]:
            for path in rule["http"]["paths"]:
                backend = path["backend"]["service"]
                service = one("Service", backend["name"])
                assert backend["port"]["name"] in {p["name"] for p in service.doc["spec"]["ports"]}


def test_gpu_nodes_take_the_workers():
    pool = one("NodePool", "gpu-spot").doc["spec"]
    template = pool["template"]["spec"]
    node_class = template["nodeClassRef"]
    assert one(node_class["kind"], node_class["name"]).doc["apiVersion"].startswith(node_class["group"] + "/")
    requirements = {r["key"]: r for r in template["requirements"]}
    assert requirements["karpenter.sh/capacity-type"]["values"] == ["spot"]
    assert "nvidia.com/gpu" in pool["limits"]
    tolerations = pod_spec(one("Deployment", WORKER))["tolerations"]
    for taint in template["taints"]:
        assert any(t["key"] == taint["key"] and t.get("effect") == taint["effect"]
                   and (t.get("operator") == "Exists" or t.get("value") == taint.get("value"))
                   for t in tolerations), taint
