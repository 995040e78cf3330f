"""`ruinstruct deploy` / `trigger` without a server: --param parsing, which deployments and work
pools a selection of prefect.yaml means, the `prefect deploy` arguments, the config path a worker
gets, and the GPU image steps with and without $RUINSTRUCT_IMAGE (prefect_docker faked)."""

from __future__ import annotations

import sys
import types
from pathlib import Path

import pytest
import yaml

from deployments import deploy as d
from deployments import steps
from ruinstruct.errors import UserError

REPO = Path(__file__).resolve().parents[2]
FLOWS = ["ruinstruct-data", "ruinstruct-train", "ruinstruct-evaluate", "ruinstruct-pipeline"]
ALL = [f"{f}/{p}" for f in FLOWS for p in ("paper", "tiny")]


@pytest.fixture(scope="module")
def specs():
    return d.read_prefect_file(REPO / "prefect.yaml")


# ---- --param ------------------------------------------------------------------------------------

def test_params_are_json_when_they_parse_else_text():
    got = d.parse_params(["seed=7", "fast=true", "ids=[1, 2]", "opts={\"a\": 1}", "name=tiny run", "empty=",
                          "eq=a=b"])
    assert got == {"seed": 7, "fast": True, "ids": [1, 2], "opts": {"a": 1}, "name": "tiny run", "empty": "",
                   "eq": "a=b"}


@pytest.mark.parametrize("bad, says", [
    ("seed", "give NAME=VALUE"), ("=3", "give NAME=VALUE"), ("two words=1", "give NAME=VALUE"),
    ("config=x.yaml", "use --config"), ("output=/tmp/r", "use --output"),
])
def test_bad_params_are_one_line_errors(bad, says):
    with pytest.raises(UserError, match=says) as e:
        d.parse_params([bad])
    assert "\n" not in str(e.value) and repr(bad) in str(e.value)


def test_a_param_given_twice_is_refused():
    with pytest.raises(UserError, match="seed is given twice"):
        d.parse_params(["seed=1", "seed=2"])


# ---- prefect.yaml: deployments, selection, pools ------------------------------------------------

def test_prefect_yaml_declares_four_flows_times_two_with_their_flow_names(specs):
    assert [s.full_name for s in specs] == [
        f"{f}/{p}" for f in FLOWS for p in ("paper", "tiny")
    ]
    assert {s.full_name: s.pool for s in specs} == {
        n: ("ruinstruct-gpu" if n.endswith("/paper") else "ruinstruct-cpu") for n in ALL
    }
    assert {s.function for s in specs} == {"data_flow", "train_flow", "evaluate_flow", "pipeline_flow"}
    # the image is built only for the GPU deployments
    assert all(("deployments.steps.build_image" in s.build_steps) == (s.name == "paper") for s in specs)


def test_flow_names_come_from_the_decorator_without_importing(tmp_path):
    (tmp_path / "f.py").write_text(
        "import prefect\nfrom prefect import flow\n"
        "@flow(name='custom-name', log_prints=True)\ndef a_flow(): ...\n"
        "@prefect.flow(name='other')\nasync def b_flow(): ...\n"
        "@flow\ndef plain_flow(): ...\n"
        "raise SystemExit('imported!')\n"
    )
    assert d.flow_name_of("f.py:a_flow", tmp_path) == "custom-name"
    assert d.flow_name_of("f.py:b_flow", tmp_path) == "other"
    assert d.flow_name_of("f.py:plain_flow", tmp_path) == "plain-flow"  # Prefect's default
    assert d.flow_name_of("missing.py:x_flow", tmp_path) == "x-flow"


@pytest.mark.parametrize("patterns, expected", [
    ([], ALL),
    (["*/tiny"], [n for n in ALL if n.endswith("/tiny")]),
    (["paper"], [n for n in ALL if n.endswith("/paper")]),
    (["ruinstruct-data"], ["ruinstruct-data/paper", "ruinstruct-data/tiny"]),
    (["ruinstruct-pipeline/paper", "ruinstruct-data/tiny"], ["ruinstruct-data/tiny", "ruinstruct-pipeline/paper"]),
    (["ruinstruct-*/paper", "*/paper"], [n for n in ALL if n.endswith("/paper")]),
])
def test_name_patterns_select_deployments_in_file_order(specs, patterns, expected):
    assert [s.full_name for s in d.select(specs, patterns)] == expected


def test_a_pattern_that_matches_nothing_lists_the_known_names(specs):
    with pytest.raises(UserError) as e:
        d.select(specs, ["*/tiny", "ruinstruct-data/prod"])
    msg = str(e.value)
    assert msg.startswith("--name 'ruinstruct-data/prod' matches no deployment; known: ")
    assert all(n in msg for n in ALL) and "\n" not in msg


def test_pools_of_a_selection(specs):
    assert d.pools_of(specs) == ["ruinstruct-gpu", "ruinstruct-cpu"]
    assert d.pools_of(d.select(specs, ["*/tiny"])) == ["ruinstruct-cpu"]
    assert d.pools_of(d.select(specs, ["ruinstruct-train/paper"])) == ["ruinstruct-gpu"]


def test_a_deployment_without_a_pool_is_named(tmp_path):
    f = tmp_path / "prefect.yaml"
    f.write_text(yaml.safe_dump({"deployments": [{"name": "x", "entrypoint": "flows/data.py:data_flow"}]}))
    with pytest.raises(UserError, match="deployment data-flow/x names no work_pool"):
        d.pools_of(d.read_prefect_file(f))


def test_unreadable_prefect_files_are_one_line_errors(tmp_path):
    with pytest.raises(UserError, match="does not exist"):
        d.read_prefect_file(tmp_path / "nope.yaml")
    (tmp_path / "empty.yaml").write_text("name: x\n")
    with pytest.raises(UserError, match="declares no deployments"):
        d.read_prefect_file(tmp_path / "empty.yaml")
    (tmp_path / "bad.yaml").write_text("deployments: [\n")
    with pytest.raises(UserError, match="cannot read"):
        d.read_prefect_file(tmp_path / "bad.yaml")


def test_pool_plans(tmp_path):
    assert d.pool_plan("ruinstruct-cpu", "kubernetes", tmp_path) == ("process", None)
    # no template file: the type's default
    assert d.pool_plan("ruinstruct-gpu", "docker", tmp_path) == ("docker", None)
    (tmp_path / "deployments").mkdir()
    (tmp_path / "deployments/k8s-gpu.json").write_text("{}")
    assert d.pool_plan("ruinstruct-gpu", "kubernetes", tmp_path) == ("kubernetes", tmp_path / "deployments/k8s-gpu.json")
    with pytest.raises(UserError, match="--gpu-pool 'ecs': choose one of docker, kubernetes"):
        d.pool_plan("ruinstruct-gpu", "ecs", tmp_path)
    with pytest.raises(UserError, match="prefect work-pool create other-pool --type TYPE"):
        d.pool_plan("other-pool", "docker", tmp_path)


def test_prefect_deploy_arguments(specs, tmp_path):
    f = tmp_path / "prefect.yaml"
    assert d.deploy_args(specs, specs, f) == ["--no-prompt", "deploy", "--all", "--prefect-file", str(f)]
    # Prefect matches FLOW/NAME against the entrypoint's function, so that is what it gets
    picked = d.select(specs, ["ruinstruct-data/*", "ruinstruct-pipeline/tiny"])
    assert d.deploy_args(picked, specs, f) == [
        "--no-prompt", "deploy", "--name", "data_flow/paper", "--name", "data_flow/tiny",
        "--name", "pipeline_flow/tiny", "--prefect-file", str(f)]


# ---- the config path a worker gets --------------------------------------------------------------

def test_config_path_is_absolute_for_a_process_worker_when_it_exists_here(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "mine.yaml").write_text("name: x\n")
    assert d._config_param("mine.yaml", "process") == str(tmp_path / "mine.yaml")
    # not here: the worker resolves it against the deployment's working directory
    assert d._config_param("configs/tiny.yaml", "process") == "configs/tiny.yaml"
    # the image's path, whatever exists here
    assert d._config_param("mine.yaml", "docker") == "mine.yaml"
    assert d._config_param("mine.yaml", "kubernetes") == "mine.yaml"


def test_deployment_names_must_be_flow_slash_deployment():
    for bad in ("ruinstruct-data", "a/b/c", "/tiny", "ruinstruct-data/"):
        with pytest.raises(UserError, match="give FLOW/DEPLOYMENT"):
            d.trigger(bad, "configs/tiny.yaml")


# ---- GPU image steps ----------------------------------------------------------------------------

@pytest.mark.parametrize("image, parts", [
    ("registry.example.com/ruinstruct-gpu:2026.12", ("registry.example.com/ruinstruct-gpu", "2026.12")),
    ("registry.example.com:5000/team/ruinstruct-gpu:v1", ("registry.example.com:5000/team/ruinstruct-gpu", "v1")),
    ("registry.example.com:5000/ruinstruct-gpu", ("registry.example.com:5000/ruinstruct-gpu", "latest")),
    ("ruinstruct-gpu", ("ruinstruct-gpu", "latest")),
])
def test_split_image(image, parts):
    assert steps.split_image(image) == parts


def test_split_image_refuses_a_digest():
    with pytest.raises(ValueError, match="give a tag"):
        steps.split_image("ruinstruct-gpu@sha256:abc")


def test_without_the_image_variable_nothing_is_built_and_the_default_is_named(monkeypatch, capsys):
    monkeypatch.delenv(steps.IMAGE_ENV, raising=False)
    monkeypatch.setitem(sys.modules, "prefect_docker", None)  # would fail if it were imported
    out = steps.build_image(default_image="ruinstruct-gpu:latest")
    assert out["image"] == "ruinstruct-gpu:latest" and out["built"] is False
    assert (out["image_name"], out["tag"]) == ("ruinstruct-gpu", "latest")
    pushed = steps.push_image(out["image_name"], out["tag"], built=out["built"])
    assert pushed["image"] == "ruinstruct-gpu:latest"
    # templated through prefect.yaml a bool may arrive as text
    assert steps.push_image("ruinstruct-gpu", "latest", built="False")["built"] is False
    printed = capsys.readouterr().out
    assert "build-image: skipped (RUINSTRUCT_IMAGE is not set)" in printed and "push-image: skipped" in printed


def test_with_the_image_variable_but_no_prefect_docker_the_error_says_what_to_install(monkeypatch):
    monkeypatch.setenv(steps.IMAGE_ENV, "registry.example.com/ruinstruct-gpu:2026.12")
    monkeypatch.setitem(sys.modules, "prefect_docker", None)
    monkeypatch.setitem(sys.modules, "prefect_docker.deployments", None)
    with pytest.raises(RuntimeError, match="pip install prefect-docker"):
        steps.build_image(path=str(REPO), dockerfile="prefect.yaml")  # any file that exists


def _fake_prefect_docker(monkeypatch, calls):
    def build_docker_image(image_name, tag=None, dockerfile="Dockerfile", **kw):
        calls.append(("build", image_name, tag, dockerfile, kw))
        return {"image_name": image_name, "tag": tag, "image": f"{image_name}:{tag}", "image_id": "sha256:1",
                "additional_tags": []}

    def push_docker_image(image_name, tag=None, credentials=None):
        calls.append(("push", image_name, tag, credentials))
        return {"image_name": image_name, "tag": tag, "image": f"{image_name}:{tag}", "additional_tags": []}

    mod = types.ModuleType("prefect_docker.deployments.steps")
    mod.build_docker_image, mod.push_docker_image = build_docker_image, push_docker_image
    pkg, sub = types.ModuleType("prefect_docker"), types.ModuleType("prefect_docker.deployments")
    pkg.deployments, sub.steps = sub, mod
    monkeypatch.setitem(sys.modules, "prefect_docker", pkg)
    monkeypatch.setitem(sys.modules, "prefect_docker.deployments", sub)
    monkeypatch.setitem(sys.modules, "prefect_docker.deployments.steps", mod)


def test_with_the_image_variable_the_image_is_built_from_the_gpu_dockerfile_and_pushed(monkeypatch, tmp_path):
    calls: list = []
    _fake_prefect_docker(monkeypatch, calls)
    (tmp_path / "docker").mkdir()
    (tmp_path / "docker/gpu.Dockerfile").write_text("FROM scratch\n")
    monkeypatch.setenv(steps.IMAGE_ENV, "registry.example.com/ruinstruct-gpu:2026.12")
    out = steps.build_image(path=str(tmp_path))
    assert out["image"] == "registry.example.com/ruinstruct-gpu:2026.12" and out["built"] is True
    assert calls == [("build", "registry.example.com/ruinstruct-gpu", "2026.12", "docker/gpu.Dockerfile",
                      {"path": str(tmp_path)})]
    pushed = steps.push_image(out["image_name"], out["tag"], built=out["built"])
    assert pushed["image"] == out["image"] and calls[-1] == ("push", "registry.example.com/ruinstruct-gpu",
                                                             "2026.12", None)
    monkeypatch.setenv(steps.PUSH_ENV, "0")
    steps.push_image(out["image_name"], out["tag"], built=True)
    assert len(calls) == 2  # RUINSTRUCT_PUSH=0: built, not pushed


def test_a_missing_dockerfile_is_named(monkeypatch, tmp_path):
    _fake_prefect_docker(monkeypatch, [])
    monkeypatch.setenv(steps.IMAGE_ENV, "ruinstruct-gpu:dev")
    with pytest.raises(FileNotFoundError, match="no Dockerfile at .*docker/gpu.Dockerfile"):
        steps.build_image(path=str(tmp_path))
