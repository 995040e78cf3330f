"""`ruinstruct deploy` and `ruinstruct trigger` against a real Prefect server (and, for a failing
run, a real process worker on the ruinstruct-cpu pool that `ruinstruct deploy` created): the 8
deployments of prefect.yaml as the server stores them, existing pools left alone, the GPU image
steps with and without $RUINSTRUCT_IMAGE (and RUINSTRUCT_BUILD=0), and trigger's exit codes (2
expected errors, 1 a failed run or a timeout, 130 Ctrl-C, 143 SIGTERM) and its default config. The server and the worker are the session's (conftest): what a
test changes on them it puts back."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from types import SimpleNamespace

import pytest
import yaml

from tests.e2e.conftest import CLI_S, OFFLINE_ENV, REPO, free_port

pytestmark = [pytest.mark.e2e]

FLOWS = ["ruinstruct-data", "ruinstruct-train", "ruinstruct-evaluate", "ruinstruct-pipeline"]
ALL = [f"{f}/{p}" for f in FLOWS for p in ("paper", "tiny")]
RUN_S = 120  # bound on a flow run that fails in its first second (worker start-up on 2 busy cores)


def ruinstruct(env: dict[str, str], *args: str, timeout: float = CLI_S) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "ruinstruct.cli", *args], env=env, cwd=REPO,
                          stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=timeout)


def show(res: subprocess.CompletedProcess) -> str:
    return f"exit {res.returncode}\n--- stdout ---\n{res.stdout[-6000:]}\n--- stderr ---\n{res.stderr[-6000:]}"


def read_deployments() -> dict[str, object]:
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        flows = {f.id: f.name for f in client.read_flows()}
        return {f"{flows[d.flow_id]}/{d.name}": d for d in client.read_deployments()}


def read_pool(name: str):
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        return client.read_work_pool(name)


@pytest.fixture(scope="module")
def deployed(prefect_server) -> SimpleNamespace:
    """`ruinstruct deploy` of the whole prefect.yaml. The server is the session's: when this module
    runs first (file order) it has no pools yet; `existed` says which ones another module made."""
    from prefect.client.orchestration import get_client
    from prefect.exceptions import ObjectNotFound

    existed = set()
    with get_client(sync_client=True) as client:
        for pool in ("ruinstruct-cpu", "ruinstruct-gpu"):
            try:
                client.read_work_pool(pool)
                existed.add(pool)
            except ObjectNotFound:
                pass
    env = {k: v for k, v in prefect_server.env.items() if k not in ("RUINSTRUCT_IMAGE", "RUINSTRUCT_PUSH")}
    started = time.monotonic()
    res = ruinstruct(env, "deploy")
    return SimpleNamespace(res=res, seconds=time.monotonic() - started, env=env, existed=existed)


def test_deploy_creates_the_missing_pools_and_the_eight_deployments(deployed, prefect_server):
    res = deployed.res
    assert res.returncode == 0, show(res)
    out = res.stdout
    for pool, kind, source in (("ruinstruct-gpu", "docker", ""), ("ruinstruct-cpu", "process",
                                                                   "the process type's default")):
        if pool in deployed.existed:
            assert f"work pool {pool}: exists, type {kind}, left as it is" in out, show(res)
        else:
            assert f"work pool {pool}: created, type {kind}, from {source}" in out, show(res)
    assert "prefect --no-prompt deploy --all --prefect-file" in out
    assert "build-image: skipped (RUINSTRUCT_IMAGE is not set)" in out  # no Docker needed here
    assert "deployed 8 deployment(s):" in out

    gpu, cpu = read_pool("ruinstruct-gpu"), read_pool("ruinstruct-cpu")
    assert (gpu.type, cpu.type) == ("docker", "process")
    # never Prefect's default Docker template (no GPU request): without the file deploy stops
    template = REPO / "deployments/docker-gpu.json"
    assert gpu.base_job_template == json.loads(template.read_text())
    assert "ruinstruct-gpu" in deployed.existed or "from deployments/docker-gpu.json" in out

    deps = read_deployments()
    assert sorted(deps) == sorted(ALL)
    for name, dep in deps.items():
        flow, profile = name.split("/")
        assert dep.entrypoint == f"flows/{flow.removeprefix('ruinstruct-')}.py:{flow.removeprefix('ruinstruct-')}_flow"
        assert dep.parameters == {"config": f"configs/{profile}.yaml"}, name
        assert set(dep.tags) == {"ruinstruct", flow.removeprefix("ruinstruct-"), profile,
                                 "gpu" if profile == "paper" else "cpu"}, name
        assert dep.description, name
        assert "config" in dep.parameter_openapi_schema["properties"], name
        step = [s["prefect.deployments.steps.set_working_directory"] for s in dep.pull_steps]
        if profile == "paper":
            assert dep.work_pool_name == "ruinstruct-gpu"
            assert step == [{"directory": "/opt/ruinstruct"}], name
            assert dep.job_variables == {"image": "ruinstruct-gpu:latest"}, name
        else:  # runs from this checkout, offline
            assert dep.work_pool_name == "ruinstruct-cpu"
            assert step == [{"directory": str(REPO)}], name
            assert dep.job_variables["env"]["HF_HUB_OFFLINE"] == "1", name
        if name == "ruinstruct-pipeline/paper":
            assert [(s.schedule.cron, s.schedule.timezone, s.active) for s in dep.schedules] == [
                ("0 3 * * 1", "UTC", False)]
        else:
            assert dep.schedules == [], name
    print(f"\nruinstruct deploy (2 pools, 8 deployments): {deployed.seconds:.1f} s")


def test_a_second_deploy_leaves_existing_pools_alone(deployed, prefect_server):
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import WorkPoolUpdate

    assert deployed.res.returncode == 0, show(deployed.res)
    original = read_pool("ruinstruct-gpu")
    with get_client(sync_client=True) as client:
        client.update_work_pool("ruinstruct-gpu", WorkPoolUpdate(description="tuned by hand", concurrency_limit=3))
    before = read_pool("ruinstruct-gpu")
    try:
        res = ruinstruct(deployed.env, "deploy", "--gpu-pool", "kubernetes", "--name", "ruinstruct-data/*")
        after = read_pool("ruinstruct-gpu")
    finally:  # the session's other modules share this server
        with get_client(sync_client=True) as client:
            client.update_work_pool("ruinstruct-gpu", WorkPoolUpdate(
                description=original.description, concurrency_limit=original.concurrency_limit))
    assert res.returncode == 0, show(res)
    assert ("work pool ruinstruct-gpu: exists, type docker, left as it is (--gpu-pool kubernetes ignored"
            in res.stdout), show(res)
    assert "work pool ruinstruct-cpu: exists, type process, left as it is" in res.stdout
    assert "--name data_flow/paper --name data_flow/tiny" in res.stdout
    assert "deployed 2 deployment(s):" in res.stdout
    assert (after.type, after.description, after.concurrency_limit, after.base_job_template) == (
        "docker", "tuned by hand", 3, before.base_job_template)


FAKE_STEPS = '''
import json, os

def _log(*row):
    with open(os.environ["FAKE_DOCKER_LOG"], "a") as f:
        f.write(json.dumps(row) + "\\n")

def build_docker_image(image_name, tag=None, dockerfile="Dockerfile", **kw):
    _log("build", image_name, tag, dockerfile, kw.get("path"))
    return {"image_name": image_name, "tag": tag, "image": f"{image_name}:{tag}", "image_id": "sha256:0",
            "additional_tags": []}

def push_docker_image(image_name, tag=None, credentials=None, additional_tags=None):
    _log("push", image_name, tag)
    return {"image_name": image_name, "tag": tag, "image": f"{image_name}:{tag}", "additional_tags": []}
'''


def test_with_an_image_named_the_paper_deployments_build_push_and_run_it(deployed, prefect_server, tmp_path):
    """prefect_docker stands in for Docker (none here): what the steps get, and where the image
    name ends up."""
    if not (REPO / "docker/gpu.Dockerfile").is_file():
        pytest.skip("docker/gpu.Dockerfile is not there yet")
    pkg = tmp_path / "fake" / "prefect_docker" / "deployments"
    pkg.mkdir(parents=True)
    (pkg.parent / "__init__.py").write_text("")
    (pkg / "__init__.py").write_text("")
    (pkg / "steps.py").write_text(FAKE_STEPS)
    log = tmp_path / "docker.jsonl"
    image = "registry.example.com/ruinstruct-gpu:2026.12"
    env = {**deployed.env, "PYTHONPATH": str(tmp_path / "fake"), "FAKE_DOCKER_LOG": str(log),
           "RUINSTRUCT_IMAGE": image}
    names = ["--name", "ruinstruct-data/paper"]
    prebuilt = "registry.example.com/ruinstruct-gpu:prebuilt"
    try:
        res = ruinstruct(env, "deploy", *names)
        deps = read_deployments()
        # an image built and pushed by hand: named, nothing built (the fake would log it)
        named = ruinstruct({**env, "RUINSTRUCT_IMAGE": prebuilt, "RUINSTRUCT_BUILD": "0"}, "deploy", *names)
        named_deps = read_deployments()
    finally:  # back to prefect.yaml's image for the session's other modules (no third deploy)
        from prefect.client.orchestration import get_client
        from prefect.client.schemas.actions import DeploymentUpdate

        with get_client(sync_client=True) as client:
            dep = client.read_deployment_by_name("ruinstruct-data/paper")
            client.update_deployment(dep.id, DeploymentUpdate(job_variables={"image": "ruinstruct-gpu:latest"}))
    assert res.returncode == 0, show(res)
    assert named.returncode == 0, show(named)
    assert f"build-image: skipped (RUINSTRUCT_BUILD=0); the deployments will run {prebuilt}" in named.stdout
    assert named_deps["ruinstruct-data/paper"].job_variables == {"image": prebuilt}
    rows = [json.loads(line) for line in log.read_text().splitlines()]
    # the project's GPU Dockerfile, the checkout as the build context, the tag from the name
    assert rows == [["build", "registry.example.com/ruinstruct-gpu", "2026.12", "docker/gpu.Dockerfile", str(REPO)],
                    ["push", "registry.example.com/ruinstruct-gpu", "2026.12"]]
    assert deps["ruinstruct-data/paper"].job_variables == {"image": image}
    assert deps["ruinstruct-train/paper"].job_variables == {"image": "ruinstruct-gpu:latest"}  # not redeployed
    assert read_deployments()["ruinstruct-data/paper"].job_variables == {"image": "ruinstruct-gpu:latest"}


def test_trigger_of_an_unknown_deployment_exits_2_with_one_line(deployed):
    res = ruinstruct(deployed.env, "trigger", "ruinstruct-data/prod", "--config", "configs/tiny.yaml")
    assert res.returncode == 2, show(res)
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("unknown deployment 'ruinstruct-data/prod'; known: "), show(res)
    assert all(n in lines[0] for n in ALL)
    assert "Traceback" not in res.stdout + res.stderr


def test_trigger_without_a_reachable_server_exits_2_naming_the_url(tmp_path):
    url = f"http://127.0.0.1:{free_port()}/api"
    env = {**os.environ, **OFFLINE_ENV, "PREFECT_API_URL": url, "PREFECT_HOME": str(tmp_path)}
    res = ruinstruct(env, "trigger", "ruinstruct-data/tiny", "--config", "configs/tiny.yaml", "--watch")
    assert res.returncode == 2, show(res)
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"no Prefect server answers at PREFECT_API_URL={url}"), show(res)


def test_trigger_watch_of_a_failing_run_exits_1_with_its_message(deployed, process_worker, tmp_path, tiny_dir):
    """The real ruinstruct-data/tiny deployment on the real worker, with a config whose data
    source does not exist on the worker: the flow fails in its first second."""
    raw = yaml.safe_load((REPO / "configs/tiny.yaml").read_text())
    for src in raw["data"]["sources"]:
        src["path"] = str((REPO / "configs" / src["path"]).resolve())
    missing = tmp_path / "nowhere" / "dolly.jsonl"
    raw["data"]["sources"][0]["path"] = str(missing)
    raw["translation"]["model"] = str(tiny_dir / "translator")
    config = tmp_path / "missing-source.yaml"
    config.write_text(yaml.safe_dump(raw, sort_keys=False))

    started = time.monotonic()
    res = ruinstruct(deployed.env, "trigger", "ruinstruct-data/tiny", "--config", str(config),
                     "--output", str(tmp_path / "run"), "--watch", "--timeout", str(RUN_S), timeout=RUN_S + 60)
    seconds = time.monotonic() - started
    assert res.returncode == 1, show(res) + process_worker.logs()
    out = res.stdout
    first = out.splitlines()[0]
    assert first.startswith("flow run ") and "of ruinstruct-data/tiny, on pool ruinstruct-cpu" in first, show(res)
    run_id = first.split("(")[1].split(")")[0]
    assert f"/runs/flow-run/{run_id}" in out and str(missing) in out and " Failed: " in out, show(res)
    assert json.loads(out.splitlines()[1].removeprefix("parameters: ")) == {
        "config": str(config), "output": str(tmp_path / "run")}
    assert "Traceback" not in out + res.stderr

    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        state = client.read_flow_run(run_id).state
    assert state.is_failed() and str(missing) in state.message
    print(f"\nruinstruct trigger --watch of a failing run: {seconds:.1f} s")


def _interrupted_watch(env: dict[str, str], signum: int) -> tuple[int, str, str, str]:
    """(exit code, flow run id, stdout after the signal, stderr) of `trigger --watch` stopped by
    `signum` while the run is Scheduled."""
    proc = subprocess.Popen([sys.executable, "-m", "ruinstruct.cli", "trigger", "ruinstruct-data/paper",
                             "--config", "configs/paper.yaml", "--watch"], env=env, cwd=REPO,
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        lines = []
        while not any(" Scheduled" in line for line in lines):  # watching
            line = proc.stdout.readline()
            assert line, f"trigger ended early: {lines} {proc.stderr.read()}"
            lines.append(line)
        proc.send_signal(signum)
        rest, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    return proc.returncode, lines[0].split("(")[1].split(")")[0], rest, err


def test_trigger_watch_times_out_and_signals_leave_the_run_going(deployed):
    """ruinstruct-gpu has no worker here: its runs stay Scheduled, which is what a timeout and an
    interrupted watch need."""
    from prefect.client.orchestration import get_client

    res = ruinstruct(deployed.env, "trigger", "ruinstruct-data/paper", "--config", "configs/paper.yaml",
                     "--timeout", "2")
    assert res.returncode == 1, show(res)
    run_id = res.stdout.splitlines()[0].split("(")[1].split(")")[0]
    # the image's path, as given (the docker worker resolves it against /opt/ruinstruct)
    assert '"config": "configs/paper.yaml"' in res.stdout
    assert f"is still Scheduled after 2 s; it goes on: `prefect flow-run inspect {run_id}`" in res.stdout, show(res)

    ids = [run_id]
    for signum in (signal.SIGINT, signal.SIGTERM):
        code, interrupted_id, rest, err = _interrupted_watch(deployed.env, signum)
        ids.append(interrupted_id)
        assert code == 128 + signum, (signum, rest, err)
        assert f"stopped watching; flow run {interrupted_id} goes on on the worker" in rest
        assert "Traceback" not in rest + err and "rerun resumes" not in err, err
    with get_client(sync_client=True) as client:
        for rid in ids:
            assert client.read_flow_run(rid).state.is_scheduled()
            client.delete_flow_run(rid)  # the session's other modules count runs


def test_trigger_without_config_runs_the_deployments_own(deployed):
    from prefect.client.orchestration import get_client

    res = ruinstruct(deployed.env, "trigger", "ruinstruct-data/paper")
    assert res.returncode == 0, show(res)
    run_id = res.stdout.splitlines()[0].split("(")[1].split(")")[0]
    assert "config: the deployment's default, configs/paper.yaml (no --config given)" in res.stdout, show(res)
    with get_client(sync_client=True) as client:
        run = client.read_flow_run(run_id)
        client.delete_flow_run(run_id)  # the session's other modules count runs
    assert run.parameters == {"config": "configs/paper.yaml"}
