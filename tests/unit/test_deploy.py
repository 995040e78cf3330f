"""`ruinstruct deploy` / `trigger` without a server: --param parsing, which prefect.yaml and which
deployments and work pools a selection of it means, the `prefect deploy` arguments, the config path
a worker gets, the GPU image steps with and without $RUINSTRUCT_IMAGE / RUINSTRUCT_BUILD=0
(prefect_docker faked), and trigger's and deploy's ends with a faked Prefect client: a lost
server, Ctrl-C and SIGTERM."""

from __future__ import annotations

import importlib.util
import shutil
import signal
import subprocess
import sys
import types
import uuid
from pathlib import Path
from types import SimpleNamespace

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
    (tmp_path / "deployments").mkdir()
    (tmp_path / "deployments/k8s-gpu.json").write_text("{}")
    assert d.pool_plan("ruinstruct-gpu", "kubernetes", tmp_path) == ("kubernetes", tmp_path / "deployments/k8s-gpu.json")
    with pytest.raises(UserError, match="--gpu-pool 'ecs': choose one of docker, kubernetes"):
        d.pool_plan("ruinstruct-gpu", "ecs", tmp_path)
    with pytest.raises(UserError, match="prefect work-pool create other-pool --type TYPE"):
        d.pool_plan("other-pool", "docker", tmp_path)


def test_a_missing_gpu_template_is_a_one_line_error_naming_it(tmp_path):
    """Prefect's default Docker template would make a GPU pool that requests no GPU."""
    for kind, file in (("docker", "docker-gpu.json"), ("kubernetes", "k8s-gpu.json")):
        with pytest.raises(UserError) as e:
            d.pool_plan("ruinstruct-gpu", kind, tmp_path)
        assert str(e.value).startswith(f"work pool ruinstruct-gpu: its base job template {tmp_path / 'deployments' / file} "
                                       "is missing") and "\n" not in str(e.value)


def test_a_missing_template_stops_deploy_before_any_pool_is_created(tmp_path, monkeypatch):
    client = FakeClient(pools={})
    monkeypatch.setattr("prefect.client.orchestration.get_client", lambda **kw: client)
    with pytest.raises(UserError, match="docker-gpu.json is missing"):
        d.ensure_pools(["ruinstruct-cpu", "ruinstruct-gpu"], "docker", tmp_path, echo=lambda line: None)
    assert client.created == []


def test_prefect_deploy_arguments(specs, tmp_path):
    f = tmp_path / "prefect.yaml"
    assert d.deploy_args(specs, specs, f) == ["--no-prompt", "deploy", "--all", "--prefect-file", str(f)]
    # Prefect matches FLOW/NAME against the entrypoint's function, so that is what it gets
    picked = d.select(specs, ["ruinstruct-data/*", "ruinstruct-pipeline/tiny"])
    assert d.deploy_args(picked, specs, f) == [
        "--no-prompt", "deploy", "--name", "data_flow/paper", "--name", "data_flow/tiny",
        "--name", "pipeline_flow/tiny", "--prefect-file", str(f)]


# ---- which prefect.yaml, from where ------------------------------------------------------------

def _project_copy(folder: Path) -> Path:
    """prefect.yaml and the GPU templates, as the images hold them in /opt/ruinstruct."""
    (folder / "deployments").mkdir(parents=True)
    shutil.copy(REPO / "prefect.yaml", folder / "prefect.yaml")
    for f in ("docker-gpu.json", "k8s-gpu.json"):
        shutil.copy(REPO / "deployments" / f, folder / "deployments" / f)
    return folder


def _installed_copy(site: Path, monkeypatch):
    """deployments/deploy.py imported from a site-packages-like folder with no prefect.yaml (a
    non-editable install, as in the images)."""
    (site / "deployments").mkdir(parents=True)
    shutil.copy(REPO / "deployments" / "deploy.py", site / "deployments" / "deploy.py")
    spec = importlib.util.spec_from_file_location("installed_deploy", site / "deployments" / "deploy.py")
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, spec.name, module)  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def test_an_installed_copy_deploys_the_prefect_yaml_of_the_current_folder(tmp_path, monkeypatch):
    installed = _installed_copy(tmp_path / "site-packages", monkeypatch)
    project = _project_copy(tmp_path / "opt" / "ruinstruct")
    monkeypatch.chdir(project)
    assert installed.ROOT == tmp_path / "site-packages"
    assert installed.default_prefect_file() == project / "prefect.yaml"

    seen = {}
    monkeypatch.setattr(installed, "api_url", lambda: "http://server:4200/api")
    monkeypatch.setattr(installed, "ensure_pools",
                        lambda pools, gpu_pool, root, echo: seen.update(pools=pools, plan=[
                            installed.pool_plan(p, gpu_pool, root) for p in pools]))
    monkeypatch.setattr(installed, "_prefect_deploy", lambda args, folder, echo: seen.update(args=args, folder=folder) or 0)
    monkeypatch.setattr(installed, "describe_deployments", lambda specs, echo: [])
    lines: list[str] = []
    assert installed.deploy(echo=lines.append) == 0
    # the templates next to that prefect.yaml, prefect deploy run in its folder
    assert seen["plan"] == [("docker", project / "deployments/docker-gpu.json"), ("process", None)]
    assert seen["folder"] == project and seen["args"][-2:] == ["--prefect-file", str(project / "prefect.yaml")]
    assert f"deployments of {project / 'prefect.yaml'}" in lines


def test_without_a_prefect_yaml_here_the_installed_projects_is_used_or_the_error_names_both(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert d.default_prefect_file() == REPO / "prefect.yaml"  # this checkout's (editable install)
    installed = _installed_copy(tmp_path / "site-packages", monkeypatch)
    with pytest.raises(UserError) as e:
        installed.default_prefect_file()
    assert str(e.value) == (f"no prefect.yaml in {tmp_path} or {tmp_path / 'site-packages'}: run from the "
                            "project's checkout (/opt/ruinstruct in the images) or give --prefect-file")


# ---- the config path a worker gets --------------------------------------------------------------

def test_config_under_the_checkout_the_deployment_runs_from_stays_relative(tmp_path, monkeypatch):
    checkout = tmp_path / "checkout"
    (checkout / "configs").mkdir(parents=True)
    (checkout / "configs" / "mine.yaml").write_text("name: x\n")
    monkeypatch.chdir(checkout)
    assert d._config_param("configs/mine.yaml", "process", checkout) == ("configs/mine.yaml", None)
    # relative to the worker's folder, wherever it was given from
    monkeypatch.chdir(checkout / "configs")
    assert d._config_param("mine.yaml", "process", checkout) == ("configs/mine.yaml", None)
    given = str(checkout / "configs" / "mine.yaml")
    assert d._config_param(given, "process", checkout) == (given, None)


def test_config_outside_the_checkout_goes_absolute_with_a_note(tmp_path, monkeypatch):
    checkout = tmp_path / "checkout"
    checkout.mkdir()
    monkeypatch.chdir(tmp_path)
    (tmp_path / "mine.yaml").write_text("name: x\n")
    value, note = d._config_param("mine.yaml", "process", checkout)
    assert value == str(tmp_path / "mine.yaml")
    assert note == (f"note: --config mine.yaml goes as {tmp_path / 'mine.yaml'} (not under {checkout}, where the "
                    "worker runs the flow): the worker must see that path")
    value, note = d._config_param("mine.yaml", "process", None)  # a pull step other than a folder
    assert value == str(tmp_path / "mine.yaml") and "working directory is not known" in note
    # not a file here: the worker resolves it in its working directory
    assert d._config_param("configs/tiny.yaml", "process", checkout) == ("configs/tiny.yaml", None)
    # the image's path, whatever exists here
    assert d._config_param("mine.yaml", "docker", checkout) == ("mine.yaml", None)
    assert d._config_param("mine.yaml", "kubernetes", None) == ("mine.yaml", None)


def test_the_working_directory_comes_from_a_set_working_directory_pull_step():
    step = d.WORKDIR_STEP
    assert d.working_directory_of(SimpleNamespace(pull_steps=[{step: {"directory": "/srv/ruinstruct"}}])) == \
        Path("/srv/ruinstruct")
    clone = {"prefect.deployments.steps.git_clone": {"repository": "https://example.com/r.git"}}
    assert d.working_directory_of(SimpleNamespace(pull_steps=[clone, {step: {"directory": "r"}}])) is None
    assert d.working_directory_of(SimpleNamespace(pull_steps=None)) is None


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


def test_build_0_names_an_image_built_elsewhere_without_building_or_pushing(monkeypatch, capsys):
    monkeypatch.setenv(steps.IMAGE_ENV, "registry.example.com/ruinstruct-gpu:2026.12")
    monkeypatch.setenv(steps.BUILD_ENV, "0")
    monkeypatch.setitem(sys.modules, "prefect_docker", None)  # would fail if it were imported
    out = steps.build_image(path="/nonexistent")  # no Dockerfile needed either
    assert (out["image"], out["image_name"], out["tag"], out["built"]) == (
        "registry.example.com/ruinstruct-gpu:2026.12", "registry.example.com/ruinstruct-gpu", "2026.12", False)
    pushed = steps.push_image(out["image_name"], out["tag"], built=out["built"])
    assert pushed["image"] == "registry.example.com/ruinstruct-gpu:2026.12" and pushed["built"] is False
    printed = capsys.readouterr().out.splitlines()
    assert printed == [
        "build-image: skipped (RUINSTRUCT_BUILD=0); the deployments will run "
        "registry.example.com/ruinstruct-gpu:2026.12, which must be in a registry the workers pull from",
        "push-image: skipped (nothing was built); the deployments will run registry.example.com/ruinstruct-gpu:2026.12",
    ]


def test_deploy_asks_for_prefect_docker_only_when_it_builds(monkeypatch, specs):
    monkeypatch.setitem(sys.modules, "prefect_docker", None)  # not installed
    monkeypatch.setenv(steps.IMAGE_ENV, "registry.example.com/ruinstruct-gpu:2026.12")
    with pytest.raises(UserError, match="needs prefect-docker.*RUINSTRUCT_BUILD=0"):
        d.check_image_tools(specs)
    monkeypatch.setenv(steps.BUILD_ENV, "0")
    d.check_image_tools(specs)
    monkeypatch.delenv(steps.IMAGE_ENV)
    monkeypatch.delenv(steps.BUILD_ENV)
    d.check_image_tools(specs)


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


# ---- trigger and deploy against a faked client: lost server, signals, default config ------------

class FakeClient:
    """The sync Prefect client as trigger/watch/ensure_pools use it."""

    def __init__(self, deployment=None, runs=(), pools=None, pool_type="process"):
        self.deployment, self.runs, self.created = deployment, list(runs), []
        self.pools = {"ruinstruct-cpu": SimpleNamespace(type=pool_type)} if pools is None else pools

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def read_deployment_by_name(self, name):
        return self.deployment

    def read_work_pool(self, name):
        from prefect.exceptions import ObjectNotFound

        if name not in self.pools:
            raise ObjectNotFound(None)
        return self.pools[name]

    def create_work_pool(self, pool):
        self.created.append(pool.name)

    def read_flow_run(self, flow_run_id):
        step = self.runs.pop(0)
        if isinstance(step, BaseException):
            raise step
        return SimpleNamespace(id=flow_run_id, name="brave-fox", state=step)


def _deployment(checkout: Path, config="configs/tiny.yaml"):
    return SimpleNamespace(
        id=uuid.uuid4(), work_pool_name="ruinstruct-cpu", parameters={"config": config} if config else {},
        parameter_openapi_schema={"properties": {"config": {}, "output": {}, "seed": {}}, "required": ["config"]},
        pull_steps=[{d.WORKDIR_STEP: {"directory": str(checkout)}}])


@pytest.fixture
def fake_prefect(monkeypatch, tmp_path):
    """trigger's server: api_url answers, the client and run_deployment are fakes; the flow runs
    created are in .created (their parameters)."""
    import prefect.deployments

    monkeypatch.setattr(d, "api_url", lambda: "http://127.0.0.1:4200/api")
    monkeypatch.setenv("PREFECT_UI_URL", "http://127.0.0.1:4200")
    ns = SimpleNamespace(client=FakeClient(_deployment(tmp_path)), created=[], run_id=uuid.uuid4(), create=None)

    def run_deployment(deployment_id, parameters, timeout):
        if ns.create is not None:
            raise ns.create
        ns.created.append(parameters)
        return SimpleNamespace(id=ns.run_id, name="brave-fox")

    monkeypatch.setattr("prefect.client.orchestration.get_client", lambda **kw: ns.client)
    monkeypatch.setattr(prefect.deployments, "run_deployment", run_deployment)
    return ns


def test_trigger_without_config_uses_the_deployments_own_and_says_so(fake_prefect):
    lines: list[str] = []
    assert d.trigger("ruinstruct-data/tiny", None, params=["seed=3"], echo=lines.append) == 0
    assert fake_prefect.created == [{"seed": 3}]  # the server fills in config from the deployment
    assert lines[1] == 'parameters: {"seed": 3}'
    assert lines[2] == "config: the deployment's default, configs/tiny.yaml (no --config given)"


def test_trigger_without_config_and_no_default_is_a_one_line_error(fake_prefect, tmp_path):
    fake_prefect.client.deployment = _deployment(tmp_path, config=None)
    with pytest.raises(UserError, match="^--config: ruinstruct-data/tiny has no default config; give one"):
        d.trigger("ruinstruct-data/tiny", None, echo=lambda line: None)
    assert fake_prefect.created == []


def test_trigger_sends_a_config_under_the_checkout_relative(fake_prefect, tmp_path, monkeypatch):
    (tmp_path / "configs").mkdir()
    (tmp_path / "configs" / "mine.yaml").write_text("name: x\n")
    monkeypatch.chdir(tmp_path / "configs")
    lines: list[str] = []
    assert d.trigger("ruinstruct-data/tiny", "mine.yaml", echo=lines.append) == 0
    assert fake_prefect.created == [{"config": "configs/mine.yaml"}]
    assert not any(line.startswith("note:") for line in lines)


def _running():
    from prefect.states import Running

    return Running()


def test_a_server_lost_while_watching_is_one_line(fake_prefect):
    import httpx
    from prefect.exceptions import PrefectHTTPStatusError

    request = httpx.Request("GET", "http://127.0.0.1:4200/api/flow_runs/x")
    for lost in (httpx.ConnectError("All connection attempts failed", request=request),
                 PrefectHTTPStatusError("Server error '503 Service Unavailable'", request=request,
                                        response=httpx.Response(503, request=request))):
        fake_prefect.client.runs = [_running(), lost]
        lines: list[str] = []
        with pytest.raises(UserError) as e:
            d.trigger("ruinstruct-data/tiny", "configs/tiny.yaml", watch=True, echo=lines.append, poll_s=0)
        assert str(e.value) == (f"lost the Prefect server at PREFECT_API_URL=http://127.0.0.1:4200/api while "
                                f"watching; flow run {fake_prefect.run_id} goes on on the worker")
        assert lines[-1].endswith(" Running")


@pytest.mark.parametrize("exc, received, code", [
    (KeyboardInterrupt(), None, 130),
    (None, None, 143),  # signals.Terminated: SIGTERM
    (KeyboardInterrupt(), signal.SIGTERM, 143),  # the handler recorded SIGTERM
])
def test_an_interrupted_watch_exits_128_plus_the_signal_and_the_run_goes_on(fake_prefect, monkeypatch, exc, received,
                                                                            code):
    from ruinstruct import signals

    monkeypatch.setattr(signals, "received", received)
    fake_prefect.client.runs = [_running(), exc or signals.Terminated("signal 15")]
    lines: list[str] = []
    assert d.trigger("ruinstruct-data/tiny", "configs/tiny.yaml", watch=True, echo=lines.append, poll_s=0) == code
    run_id = fake_prefect.run_id
    assert lines[-1] == (f"\nstopped watching; flow run {run_id} goes on on the worker "
                         f"(`prefect flow-run cancel {run_id}` stops it)")


def test_an_interrupt_while_the_run_is_created_is_one_line(fake_prefect, monkeypatch):
    from ruinstruct import signals

    monkeypatch.setattr(signals, "received", None)
    fake_prefect.create = signals.Terminated("signal 15")
    lines: list[str] = []
    assert d.trigger("ruinstruct-data/tiny", "configs/tiny.yaml", watch=True, echo=lines.append) == 143
    assert lines == ["\nstopped (SIGTERM) before the server confirmed a flow run of ruinstruct-data/tiny; if it made "
                     "one, `prefect flow-run ls --flow-name ruinstruct-data` lists it"]


def test_an_interrupted_deploy_stops_prefect_deploy_and_exits_128_plus_the_signal(monkeypatch, tmp_path):
    from ruinstruct import signals

    started = []
    real_popen = subprocess.Popen

    class Interrupted:
        """`prefect deploy` stood in for by a sleep; the wait for it is interrupted by SIGINT."""

        def __init__(self, cmd, **kw):
            self.proc = real_popen(["sleep", "60"])
            self.pid = self.proc.pid
            started.append(self.proc)
            self.waits = 0

        def wait(self, timeout=None):
            self.waits += 1
            if self.waits == 1:
                raise KeyboardInterrupt
            return self.proc.wait(timeout)

    monkeypatch.setattr(signals, "received", None)
    monkeypatch.setattr(d.subprocess, "Popen", Interrupted)
    monkeypatch.setattr(d, "api_url", lambda: "http://127.0.0.1:4200/api")
    monkeypatch.setattr(d, "ensure_pools", lambda *a, **kw: {})
    project = _project_copy(tmp_path / "project")
    lines: list[str] = []
    try:
        assert d.deploy(["*/tiny"], prefect_file=project / "prefect.yaml", echo=lines.append) == 130
        assert started[0].poll() is not None  # stopped, not left running
    finally:
        for proc in started:
            if proc.poll() is None:
                proc.kill()
    assert lines[-1] == ("\nruinstruct deploy stopped by SIGINT: the pools and deployments made so far stay; "
                         "a rerun makes the rest")
