"""The GPU pools' base job templates (deployments/docker-gpu.json, deployments/k8s-gpu.json): valid
JSON in the shape `prefect work-pool create --base-job-template` takes, every placeholder declared,
defaults valid against their schema, GPUs requested, the shared cache mounted, no secret inside.

Rendering follows Prefect's rule (prefect.utilities.templating.apply_values): a value that is exactly
one placeholder becomes the variable's value with its type, and keys whose value renders to None are
dropped. The Docker device request is then built by docker-py, as the Docker worker hands it over.
tests/e2e/test_pools.py creates real pools from these files."""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from tests.unit.test_docker_files import GPU, arg_defaults, env_values, parse_dockerfile

REPO = Path(__file__).resolve().parents[2]
DOCKER_TPL = REPO / "deployments" / "docker-gpu.json"
K8S_TPL = REPO / "deployments" / "k8s-gpu.json"
PLACEHOLDER = re.compile(r"\{\{\s*([\w\-.]+)\s*\}\}")
# job_configuration keys of the default templates these extend (prefect-docker 0.7.4,
# prefect-kubernetes 0.8.0: `prefect work-pool get-default-base-job-template --type ...`)
DOCKER_DEFAULT_KEYS = {"command", "env", "labels", "name", "image", "registry_credentials", "image_pull_policy",
                       "networks", "network_mode", "auto_remove", "volumes", "stream_output", "mem_limit",
                       "memswap_limit", "privileged", "container_create_kwargs"}
K8S_DEFAULT_KEYS = {"command", "env", "labels", "name", "annotations", "namespace", "job_manifest",
                    "cluster_config", "job_watch_timeout_seconds", "pod_watch_timeout_seconds", "stream_output"}
_MISSING = object()


def load(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text(encoding="utf-8"))


def placeholders(node: Any) -> set[str]:
    if isinstance(node, str):
        return {m.split(".")[0] for m in PLACEHOLDER.findall(node)}
    if isinstance(node, dict):
        return set().union(*(placeholders(v) for v in node.values()), *(placeholders(k) for k in node))
    if isinstance(node, list):
        return set().union(*(placeholders(v) for v in node))
    return set()


def defaults(tpl: dict) -> dict[str, Any]:
    return {k: v["default"] for k, v in tpl["variables"]["properties"].items() if "default" in v}


def render(node: Any, values: dict[str, Any]) -> Any:
    if isinstance(node, str):
        whole = PLACEHOLDER.fullmatch(node.strip())
        if whole:
            return values.get(whole.group(1))
        return PLACEHOLDER.sub(lambda m: str(values.get(m.group(1), "")), node)
    if isinstance(node, dict):
        out = {k: render(v, values) for k, v in node.items()}
        return {k: v for k, v in out.items() if v is not None}
    if isinstance(node, list):
        return [render(v, values) for v in node]
    return node


def job(tpl: dict, **overrides) -> dict[str, Any]:
    return render(tpl["job_configuration"], {**defaults(tpl), **overrides})


TEMPLATES = {"docker": DOCKER_TPL, "kubernetes": K8S_TPL}


@pytest.mark.parametrize("kind", TEMPLATES)
def test_template_shape_and_every_placeholder_declared(kind):
    tpl = load(TEMPLATES[kind])
    assert set(tpl) == {"job_configuration", "variables"}
    assert tpl["variables"]["type"] == "object"
    declared = set(tpl["variables"]["properties"])
    used = placeholders(tpl["job_configuration"])
    assert used <= declared, f"undeclared: {sorted(used - declared)}"
    # the additions are used, not just declared
    assert {"gpus", "shm_size"} <= used
    assert set(tpl["job_configuration"]) >= (DOCKER_DEFAULT_KEYS - {"container_create_kwargs"}
                                             if kind == "docker" else K8S_DEFAULT_KEYS)


@pytest.mark.parametrize("kind", TEMPLATES)
def test_defaults_satisfy_the_variables_schema(kind):
    tpl = load(TEMPLATES[kind])
    schema = tpl["variables"]
    jsonschema.Draft202012Validator.check_schema(schema)
    jsonschema.validate(defaults(tpl), schema)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({**defaults(tpl), "gpus": "two"}, schema)
    gpus = schema["properties"]["gpus"]
    assert gpus["type"] == "integer" and gpus["default"] == (-1 if kind == "docker" else 1)


def test_docker_requests_gpus_through_a_device_request():
    docker_types = pytest.importorskip("docker.types")
    tpl = load(DOCKER_TPL)
    assert "container_create_kwargs" not in tpl["variables"]["properties"]  # fixed: it carries the GPUs

    def device_requests(**values) -> list[dict]:
        kwargs = job(tpl, **values)["container_create_kwargs"]
        host = docker_types.HostConfig(version="1.44", device_requests=kwargs["device_requests"],
                                       shm_size=kwargs["shm_size"])
        assert host["ShmSize"] == 16 * 1024**3
        return host["DeviceRequests"]

    assert device_requests() == [
        {"Driver": "nvidia", "Count": -1, "DeviceIDs": [], "Capabilities": [["gpu"]], "Options": {}}]  # --gpus all
    assert device_requests(gpus=2)[0]["Count"] == 2
    picked = device_requests(gpus=0, gpu_device_ids=["0", "3"])[0]
    assert (picked["Count"], picked["DeviceIDs"]) == (0, ["0", "3"])


def test_docker_mounts_the_shared_cache_where_the_image_keeps_it():
    tpl = load(DOCKER_TPL)
    rendered = job(tpl)
    assert rendered["volumes"] == ["ruinstruct-cache:/cache"]
    image_env = env_values(parse_dockerfile(GPU))
    assert image_env["HF_HOME"].startswith("/cache/") and image_env["RUINSTRUCT_CACHE"] == "/cache"
    assert rendered["image"] == "ruinstruct-gpu:latest"


def test_kubernetes_requests_gpus_mounts_the_cache_pvc_and_targets_gpu_nodes():
    tpl = load(K8S_TPL)
    pod = job(tpl)["job_manifest"]["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["resources"]["limits"] == {"nvidia.com/gpu": 1}  # cpu/memory unset: dropped
    four = job(tpl, gpus=4, cpu_limit="16")["job_manifest"]["spec"]["template"]["spec"]["containers"][0]
    assert four["resources"]["limits"] == {"cpu": "16", "nvidia.com/gpu": 4}
    volumes = {v["name"]: v for v in pod["volumes"]}
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    assert volumes[mounts["/cache"]]["persistentVolumeClaim"] == {"claimName": "ruinstruct-cache"}
    assert volumes[mounts["/dev/shm"]]["emptyDir"] == {"medium": "Memory", "sizeLimit": "16Gi"}
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in pod["tolerations"]
    assert pod["nodeSelector"] == {}
    selected = job(tpl, node_selector={"nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3"})
    assert selected["job_manifest"]["spec"]["template"]["spec"]["nodeSelector"] == {
        "nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3"}
    # secrets reach the pod from a Kubernetes Secret, optional, never from the template
    assert container["envFrom"] == [{"secretRef": {"name": "ruinstruct-secrets", "optional": True}}]
    uid = int(arg_defaults(parse_dockerfile(GPU))["UID"])
    assert pod["securityContext"] == {"runAsNonRoot": True, "runAsUser": uid, "runAsGroup": uid, "fsGroup": uid}
    assert job(tpl)["job_manifest"]["spec"]["template"]["spec"]["containers"][0]["image"] == "ruinstruct-gpu:latest"


def test_render_follows_prefects_rules():
    assert render({"a": "{{ x }}", "b": "{{ y }}", "c": "n-{{ x }}"}, {"x": 3}) == {"a": 3, "c": "n-3"}


@pytest.mark.parametrize("kind", TEMPLATES)
def test_templates_hold_no_secret_and_the_image_default_matches_the_deploy_step(kind):
    from deployments.steps import DEFAULT_IMAGE

    tpl = load(TEMPLATES[kind])
    props = tpl["variables"]["properties"]
    assert "default" not in props["env"] or props["env"]["default"] == {}
    text = json.dumps(tpl["job_configuration"]).lower()
    for word in ("token", "password", "api_key", "secret_key", "hf_"):
        assert word not in text
    assert props["image"]["default"] == DEFAULT_IMAGE


def test_placeholders_of_a_mutated_template_are_caught():
    tpl = copy.deepcopy(load(DOCKER_TPL))
    tpl["job_configuration"]["container_create_kwargs"]["ipc_mode"] = "{{ ipc }}"
    assert placeholders(tpl["job_configuration"]) - set(tpl["variables"]["properties"]) == {"ipc"}


def test_pools_md_commands_create_the_fixed_pools_from_these_files():
    text = (REPO / "deployments" / "pools.md").read_text(encoding="utf-8")
    commands = re.findall(r"^prefect work-pool create (\S+) --type (\w+)(?:\s+--base-job-template (\S+))?",
                          text, re.M)
    assert sorted(commands) == sorted([
        ("ruinstruct-cpu", "process", ""),
        ("ruinstruct-gpu", "docker", "deployments/docker-gpu.json"),
        ("ruinstruct-gpu", "kubernetes", "deployments/k8s-gpu.json"),
    ])
    for _, _, template in commands:
        if template:
            assert (REPO / template).is_file()
