"""End-to-end fixtures, one set for the whole tests/e2e package (every e2e module shares them; torn
down after its last test, so the rest of `make test` runs with no server or worker about):

- `prefect_server`: a real `prefect server start` (SQLite, loopback, its own PREFECT_HOME and
  TMPDIR), its UI pointed at its own API, the scheduler service looping every 2 s;
- `work_pools`: the project's pools, `ruinstruct-cpu` (process) and `ruinstruct-gpu` (docker,
  with deployments/docker-gpu.json; no Docker engine here, so its runs stay Scheduled);
- `project_deployments`: `prefect --no-prompt deploy --all </dev/null` of the REAL prefect.yaml;
- `process_worker`: one `prefect worker start --pool ruinstruct-cpu` polling every second.

Everything runs in subprocesses started in their own session (process group) and is stopped by
process group in the fixture teardown, even when a test fails. Every wait is bounded.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
OFFLINE_ENV = {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
CPU_POOL, GPU_POOL = "ruinstruct-cpu", "ruinstruct-gpu"
SERVER_START_S = 180
WORKER_START_S = 90
CLI_S = 120
DEPLOY_S = 240
SCHEDULER_LOOP_S = 2


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def tail(path: Path, n: int = 4000) -> str:
    try:
        return path.read_text(errors="replace")[-n:]
    except OSError:
        return ""


def descendants(pid: int) -> list:
    import psutil

    try:
        return psutil.Process(pid).children(recursive=True)
    except psutil.Error:
        return []


def stop(proc: subprocess.Popen, timeout: float = 20) -> None:
    """SIGTERM the process group we started, wait, SIGKILL what is left of it; then SIGKILL any
    descendant that had left the group (a worker may start flow runs in sessions of their own)."""
    children = descendants(proc.pid)
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            pass
    # children (uvicorn, flow-run processes) may outlive the leader: kill what is left of the group
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        pass
    import psutil

    for child in children:
        try:
            child.kill()  # psutil checks it is still the same process (pid and start time)
        except psutil.Error:
            pass


def prefect_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "prefect", *args]


def ruinstruct_cmd(*args: str) -> list[str]:
    exe = Path(sys.executable).with_name("ruinstruct")
    return [str(exe), *args] if exe.exists() else [sys.executable, "-m", "ruinstruct.cli", *args]


class PrefectServer(SimpleNamespace):
    url: str  # the API: http://127.0.0.1:PORT/api
    ui: str  # the UI: http://127.0.0.1:PORT
    env: dict[str, str]
    home: Path
    log: Path

    def run(
        self, cmd: list[str], timeout: float = CLI_S, check: bool = True, cwd: Path = REPO
    ) -> subprocess.CompletedProcess:
        """A command against this server, from the repository root unless told, no stdin, bounded."""
        res = subprocess.run(
            cmd, env=self.env, cwd=cwd, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=timeout
        )
        if check and res.returncode != 0:
            raise AssertionError(f"{' '.join(cmd)} -> {res.returncode}\n{res.stdout}\n{res.stderr}")
        return res

    def start(self, cmd: list[str], log: Path, cwd: Path = REPO) -> subprocess.Popen:
        """A command against this server left running, in a session of its own (for `stop`), its
        output in `log`."""
        with log.open("w") as out:
            return subprocess.Popen(
                cmd, env=self.env, cwd=cwd, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def cli(self, *args: str, timeout: float = CLI_S, check: bool = True) -> subprocess.CompletedProcess:
        """A `prefect` CLI command against this server (no prompts)."""
        return self.run(prefect_cmd("--no-prompt", *args), timeout=timeout, check=check)


@pytest.fixture(scope="package")
def prefect_server(tmp_path_factory) -> Iterator[PrefectServer]:
    """`prefect server start` on a free port; this process's Prefect client points at it."""
    from prefect.settings import PREFECT_API_URL, temporary_settings

    base = tmp_path_factory.mktemp("prefect-e2e")
    home, tmp = base / "home", base / "tmp"
    home.mkdir()
    tmp.mkdir()
    port = free_port()
    ui = f"http://127.0.0.1:{port}"
    url = f"{ui}/api"
    env = {
        **os.environ,
        **OFFLINE_ENV,
        "PREFECT_HOME": str(home),
        "TMPDIR": str(tmp),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_API_URL": url,
        "PREFECT_CLI_COLORS": "false",
        "PREFECT_CLI_WRAP_LINES": "false",
        "PREFECT_LOGGING_LEVEL": "INFO",
        "PYTHONUNBUFFERED": "1",
    }
    env.pop("PREFECT_PROFILE", None)
    env.pop("RUINSTRUCT_IMAGE", None)  # `prefect deploy` would build and push the GPU image
    log = base / "server.log"
    server_env = {k: v for k, v in env.items() if k != "PREFECT_API_URL"}
    # the UI's own calls go to this server (its default is 127.0.0.1:4200); the scheduler creates
    # a resumed schedule's runs within seconds instead of a minute
    server_env["PREFECT_UI_API_URL"] = url
    server_env["PREFECT_SERVER_SERVICES_SCHEDULER_LOOP_SECONDS"] = str(SCHEDULER_LOOP_S)
    with log.open("w") as out:
        proc = subprocess.Popen(
            prefect_cmd("server", "start", "--host", "127.0.0.1", "--port", str(port)),
            env=server_env,
            cwd=base,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + SERVER_START_S
        while True:
            if proc.poll() is not None:
                raise AssertionError(f"prefect server exited with {proc.returncode}:\n{tail(log)}")
            try:
                with urllib.request.urlopen(f"{url}/health", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise AssertionError(f"prefect server not healthy after {SERVER_START_S}s:\n{tail(log)}")
            time.sleep(0.5)
        # this process's client too, until the package's last test (the other test folders run
        # Prefect's temporary server)
        with temporary_settings(updates={PREFECT_API_URL: url}):
            yield PrefectServer(url=url, ui=ui, env=env, home=home, log=log)
    finally:
        stop(proc)


@pytest.fixture(scope="package")
def work_pools(prefect_server: PrefectServer) -> dict[str, Any]:
    """The project's two pools, as the README creates them; name -> WorkPool read back."""
    from prefect.client.orchestration import get_client

    prefect_server.cli("work-pool", "create", CPU_POOL, "--type", "process", "--overwrite")
    gpu = ["work-pool", "create", GPU_POOL, "--type", "docker", "--overwrite"]
    template = REPO / "deployments" / "docker-gpu.json"
    if template.exists():
        gpu += ["--base-job-template", str(template)]
    prefect_server.cli(*gpu)
    with get_client(sync_client=True) as client:
        pools = {name: client.read_work_pool(name) for name in (CPU_POOL, GPU_POOL)}
    assert (pools[CPU_POOL].type, pools[GPU_POOL].type) == ("process", "docker"), pools
    return pools


@pytest.fixture(scope="package")
def project_deployments(prefect_server: PrefectServer, work_pools) -> dict[str, Any]:
    """`prefect --no-prompt deploy --all` of the project's prefect.yaml, as a user runs it (no
    image named: nothing built). "<flow>/<deployment>" -> the Deployment read back."""
    from prefect.client.orchestration import get_client

    res = prefect_server.cli("deploy", "--all", timeout=DEPLOY_S)
    with get_client(sync_client=True) as client:
        deployments = client.read_deployments()
        flows = {f.id: f.name for f in client.read_flows()}
    out = {f"{flows[d.flow_id]}/{d.name}": d for d in deployments}
    assert out, f"`prefect deploy --all` made no deployment:\n{res.stdout}\n{res.stderr}"
    return out


class Worker(SimpleNamespace):
    pool: str
    log: Path
    proc: subprocess.Popen

    def logs(self, n: int = 8000) -> str:
        return f"--- worker log (flow-run output), last {n} chars ---\n{tail(self.log, n)}"


@pytest.fixture(scope="package")
def process_worker(prefect_server: PrefectServer, work_pools) -> Iterator[Worker]:
    """One `prefect worker start` on ruinstruct-cpu, polling every second."""
    log = prefect_server.home.parent / "worker.log"
    env = {**prefect_server.env, "PREFECT_WORKER_QUERY_SECONDS": "1", "PREFECT_WORKER_PREFETCH_SECONDS": "1"}
    with log.open("w") as out:
        proc = subprocess.Popen(
            prefect_cmd("worker", "start", "--pool", CPU_POOL, "--name", "e2e-worker"),
            env=env,
            cwd=REPO,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + WORKER_START_S
        while "started" not in tail(log).lower():
            if proc.poll() is not None:
                raise AssertionError(f"worker exited with {proc.returncode}:\n{tail(log)}")
            if time.monotonic() > deadline:
                raise AssertionError(f"worker did not start in {WORKER_START_S}s:\n{tail(log)}")
            time.sleep(0.5)
        yield Worker(pool=CPU_POOL, log=log, proc=proc)
    finally:
        stop(proc)


PIPELINE_S = 420  # bound on the whole tiny pipeline run: data, one training cell, evaluation


@pytest.fixture(scope="package")
def pipeline_run(prefect_server: PrefectServer, project_deployments, process_worker, tmp_path_factory, tiny_dir,
                 data_runs):
    """Case 1, run once (the browser test photographs its results table):
    `ruinstruct trigger ruinstruct-pipeline/tiny --config P --output D --watch` on the trimmed
    tiny profile. The CLI's result, the flow run id it printed, the run root and the profile.
    The data runs (`data_runs`) are started first and go on beside it: the pipeline's processes
    leave the second core idle much of the time."""
    import re

    from tests.e2e.helpers import write_pipeline_profile

    folder = tmp_path_factory.mktemp("pipeline-e2e")
    profile = write_pipeline_profile(folder, tiny_dir)
    root = folder / "run"
    started = time.monotonic()
    res = prefect_server.run(
        ruinstruct_cmd("trigger", "ruinstruct-pipeline/tiny", "--config", str(profile), "--output", str(root),
                       "--watch", "--timeout", str(PIPELINE_S)),
        timeout=PIPELINE_S + 60, check=False,
    )
    m = re.search(r"flow run \S+ \(([0-9a-f-]{36})\)", res.stdout)
    return SimpleNamespace(res=res, flow_run_id=m.group(1) if m else None, root=root, profile=profile,
                           seconds=time.monotonic() - started, logs=process_worker.logs)


# case 2's profile, passed relative to the checkout (the deployment's working directory) as the
# README's `prefect deployment run ... --param config=...` does; it reads the checkout's tiny
# translator (.cache/tiny/translator, which `make tiny` builds)
RELATIVE_PROFILE = "tests/e2e/profiles/tiny-data-fault.yaml"
TINY_TRANSLATOR = REPO / ".cache" / "tiny" / "translator"


def wanted(request: pytest.FixtureRequest, fixture: str) -> bool:
    """Whether a collected test uses this fixture: `data_runs` starts only the runs some test reads."""
    return any(fixture in getattr(item, "fixturenames", ()) for item in request.session.items)


def start_readme_form_run(server: PrefectServer, folder: Path, root: Path) -> tuple[Any, SimpleNamespace]:
    """`prefect --no-prompt deployment run 'ruinstruct-data/tiny' --param config=<RELATIVE_PROFILE>
    --param output=ROOT`, typed in an empty folder that is not the checkout: the flow run has to
    resolve the relative path in its own working directory. Returns (flow run, how it started)."""
    import re

    from tests.e2e.helpers import read_flow_run

    elsewhere = folder / "elsewhere"
    elsewhere.mkdir()
    res = server.run(prefect_cmd("--no-prompt", "deployment", "run", "ruinstruct-data/tiny",
                                 "--param", f"config={RELATIVE_PROFILE}", "--param", f"output={root}"),
                     cwd=elsewhere, check=False)
    m = re.search(r"UUID: ([0-9a-f-]{36})", res.stdout)
    assert res.returncode == 0 and m, f"prefect deployment run -> {res.returncode}\n{res.stdout}\n{res.stderr}"
    return read_flow_run(m.group(1)), SimpleNamespace(cwd=elsewhere, config=RELATIVE_PROFILE, stdout=res.stdout)


@pytest.fixture(scope="package")
def data_runs(request, prefect_server: PrefectServer, project_deployments, process_worker,
              tmp_path_factory) -> SimpleNamespace:
    """The runs of `ruinstruct-data/tiny` that the e2e tests read, started at once so that they
    share the worker's time: case 2's and the browser test's, shard dolly#1 failing once,
    `faulty["retry-cli"]` / `faulty["retry-ui"]` -> (flow run, run root). Case 2's is started with
    the README's plain Prefect form and a relative config path (`readme`: how), when the checkout
    has its tiny translator; otherwise, like the browser test's, through the API with a profile
    written for the session's tiny models (`readme` None)."""
    from tests.e2e.helpers import start_faulty_data_run

    folder = tmp_path_factory.mktemp("data-runs")
    runs = SimpleNamespace(faulty={}, readme=None)
    if wanted(request, "faulty_data_runs"):
        tiny_dir = request.getfixturevalue("tiny_dir")  # only here: without a build it makes one
        if (TINY_TRANSLATOR / "config.json").exists():
            root = folder / "retry-cli"
            run, runs.readme = start_readme_form_run(prefect_server, folder, root)
            runs.faulty["retry-cli"] = (run, root)
        else:
            runs.faulty["retry-cli"] = start_faulty_data_run(folder, tiny_dir, "retry-cli")
        runs.faulty["retry-ui"] = start_faulty_data_run(folder, tiny_dir, "retry-ui")
    return runs


@pytest.fixture(scope="package")
def faulty_data_runs(data_runs) -> dict[str, tuple[Any, Path]]:
    """Case 2's and the browser test's runs of `ruinstruct-data/tiny`, each with shard dolly#1
    failing once: "retry-cli" / "retry-ui" -> (flow run, run root)."""
    return data_runs.faulty
