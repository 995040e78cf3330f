"""`ruinstruct deploy` and `ruinstruct trigger`: the Prefect side of the two commands.

deploy: read which work pools prefect.yaml's deployments name, create the missing ones (never
touch an existing pool), then run `prefect --no-prompt deploy` in the project folder, so the
deployments are exactly what prefect.yaml says (the tiny ones record that folder as their working
directory).

trigger: create a flow run of `<flow>/<deployment>` with `config` (and optional parameters), print
its id and UI address, and with --watch follow it to a final state; the exit code says how it ended.

Expected errors raise ruinstruct.errors.UserError: the CLI prints the one line and exits 2.
"""

from __future__ import annotations

import ast
import fnmatch
import json
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ruinstruct.errors import UserError

# the package's folder: the checkout in an editable install, site-packages otherwise (the images
# install the project non-editable, with prefect.yaml and the templates in /opt/ruinstruct)
ROOT = Path(__file__).resolve().parents[1]
PREFECT_FILE = "prefect.yaml"

CPU_POOL = "ruinstruct-cpu"
GPU_POOL = "ruinstruct-gpu"
# pool -> how `ruinstruct deploy` creates it when missing: (type, base job template file or None)
GPU_POOL_KINDS = {"docker": "deployments/docker-gpu.json", "kubernetes": "deployments/k8s-gpu.json"}

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2

Echo = Callable[[str], None]


def _echo(line: str) -> None:
    print(line, flush=True)


def interrupted_code(exc: BaseException) -> int:
    """128 + the signal that stopped us: 130 Ctrl-C, 143 SIGTERM (ruinstruct.signals raises
    `Terminated`, a KeyboardInterrupt, for it and records the signal number)."""
    import signal

    from ruinstruct import signals

    if signals.received:
        return 128 + signals.received
    return 128 + (signal.SIGTERM if isinstance(exc, signals.Terminated) else signal.SIGINT)


def _signal_name(code: int) -> str:
    import signal

    try:
        return signal.Signals(code - 128).name
    except ValueError:
        return f"signal {code - 128}"


# ---- prefect.yaml ------------------------------------------------------------------------------

def default_prefect_file(cwd: Path | None = None) -> Path:
    """./prefect.yaml when the current folder has one (the checkout, or /opt/ruinstruct in the
    images), else the one next to the installed package (an editable install's checkout)."""
    here = (cwd or Path.cwd()) / PREFECT_FILE
    if here.is_file():
        return here
    packaged = ROOT / PREFECT_FILE
    if packaged.is_file():
        return packaged
    raise UserError(f"no {PREFECT_FILE} in {here.parent} or {ROOT}: run from the project's checkout "
                    f"(/opt/ruinstruct in the images) or give --prefect-file")


@dataclass(frozen=True)
class DeploymentSpec:
    flow: str        # the flow's name (what the UI and `prefect deployment run` show)
    name: str        # the deployment's name
    entrypoint: str  # path/to/file.py:function
    pool: str | None
    build_steps: tuple[str, ...] = ()  # the qualified names of its build steps

    @property
    def full_name(self) -> str:
        return f"{self.flow}/{self.name}"

    @property
    def function(self) -> str:
        return self.entrypoint.rsplit(":", 1)[-1]


def flow_name_of(entrypoint: str, root: Path) -> str:
    """The name `@flow(name=...)` gives the entrypoint's function, read from its source (no import:
    importing a flow module pulls in Prefect and the project); Prefect's default otherwise."""
    path, _, function = entrypoint.rpartition(":")
    default = function.replace("_", "-")
    try:
        tree = ast.parse((root / path).read_text())
    except (OSError, SyntaxError, ValueError):
        return default
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name == function:
            for deco in node.decorator_list:
                if not isinstance(deco, ast.Call):
                    continue
                func = deco.func
                called = func.id if isinstance(func, ast.Name) else getattr(func, "attr", None)
                if called != "flow":
                    continue
                for kw in deco.keywords:
                    if kw.arg == "name" and isinstance(kw.value, ast.Constant) and isinstance(kw.value.value, str):
                        return kw.value.value
    return default


def read_prefect_file(prefect_file: Path) -> list[DeploymentSpec]:
    """The deployments a prefect.yaml declares (anchors and merge keys resolved, as Prefect does)."""
    import yaml

    try:
        raw = yaml.safe_load(prefect_file.read_text())
    except FileNotFoundError:
        raise UserError(f"--prefect-file: {prefect_file} does not exist") from None
    except (OSError, yaml.YAMLError) as e:
        raise UserError(f"--prefect-file: cannot read {prefect_file}: {str(e).splitlines()[0]}") from None
    deployments = raw.get("deployments") if isinstance(raw, dict) else None
    if not isinstance(deployments, list) or not deployments:
        raise UserError(f"--prefect-file: {prefect_file} declares no deployments")
    specs = []
    for i, d in enumerate(deployments):
        if not isinstance(d, dict) or not d.get("name") or not d.get("entrypoint"):
            raise UserError(f"{prefect_file}: deployments[{i}] needs a name and an entrypoint")
        pool = (d.get("work_pool") or {}).get("name")
        build = d["build"] if "build" in d else raw.get("build")  # Prefect's precedence
        if isinstance(build, dict):
            build = [build]
        steps = tuple(k for step in build or [] if isinstance(step, dict) for k in step)
        specs.append(DeploymentSpec(flow_name_of(d["entrypoint"], prefect_file.parent), d["name"],
                                    d["entrypoint"], pool, steps))
    return specs


def check_image_tools(specs: Sequence[DeploymentSpec]) -> None:
    """With RUINSTRUCT_IMAGE set, a deployment whose build step is ours builds the GPU image, which
    needs prefect-docker: say so in one line before `prefect deploy` fails in a traceback."""
    import importlib.util

    from deployments.steps import BUILD_ENV, IMAGE_ENV, builds

    if not builds():
        return
    building = [s.full_name for s in specs if "deployments.steps.build_image" in s.build_steps]
    if building and importlib.util.find_spec("prefect_docker") is None:
        raise UserError(
            f"{IMAGE_ENV} is set, so {building[0]} builds and pushes the GPU image, which needs "
            f"prefect-docker: `pip install prefect-docker` (and a Docker engine); for an image built "
            f"and pushed already set {BUILD_ENV}=0 as well"
        )


def select(specs: Sequence[DeploymentSpec], patterns: Sequence[str]) -> list[DeploymentSpec]:
    """The deployments `--name` patterns pick, in prefect.yaml's order. A pattern with a slash
    matches `<flow>/<deployment>` ('ruinstruct-data/paper', '*/tiny'); one without matches a
    deployment name or a flow name ('tiny', 'ruinstruct-pipeline'). Shell wildcards work."""
    if not patterns:
        return list(specs)
    picked: set[int] = set()
    for pattern in patterns:
        hits = {
            i for i, s in enumerate(specs)
            if (fnmatch.fnmatchcase(s.full_name, pattern) if "/" in pattern
                else fnmatch.fnmatchcase(s.name, pattern) or fnmatch.fnmatchcase(s.flow, pattern))
        }
        if not hits:
            known = ", ".join(s.full_name for s in specs)
            raise UserError(f"--name {pattern!r} matches no deployment; known: {known}")
        picked |= hits
    return [s for i, s in enumerate(specs) if i in picked]


def pools_of(specs: Sequence[DeploymentSpec]) -> list[str]:
    """The work pools the deployments name, each once, in order."""
    pools: list[str] = []
    for s in specs:
        if not s.pool:
            raise UserError(f"deployment {s.full_name} names no work_pool in prefect.yaml")
        if s.pool not in pools:
            pools.append(s.pool)
    return pools


def check_gpu_pool(gpu_pool: str) -> None:
    if gpu_pool not in GPU_POOL_KINDS:
        raise UserError(f"--gpu-pool {gpu_pool!r}: choose one of {', '.join(GPU_POOL_KINDS)}")


def pool_plan(pool: str, gpu_pool: str = "docker", root: Path = ROOT) -> tuple[str, Path | None]:
    """(work pool type, base job template file or None for the type's default) for a pool that
    `ruinstruct deploy` knows how to create. `root`: the folder of the prefect.yaml deployed."""
    if pool == CPU_POOL:
        return "process", None
    if pool == GPU_POOL:
        check_gpu_pool(gpu_pool)
        template = root / GPU_POOL_KINDS[gpu_pool]
        if not template.is_file():
            # Prefect's default template would make a GPU pool that requests no GPU
            raise UserError(f"work pool {GPU_POOL}: its base job template {template} is missing "
                            f"(it comes with the project, next to {PREFECT_FILE})")
        return gpu_pool, template
    raise UserError(
        f"work pool {pool!r} does not exist and ruinstruct deploy creates only {CPU_POOL} and {GPU_POOL}: "
        f"create it with `prefect work-pool create {pool} --type TYPE`"
    )


def deploy_args(selected: Sequence[DeploymentSpec], all_specs: Sequence[DeploymentSpec],
                prefect_file: Path) -> list[str]:
    """`prefect deploy` arguments for the selection. Prefect matches `--name flow/deployment` by the
    entrypoint's function name, not the flow's name, so name each one that way."""
    args = ["--no-prompt", "deploy"]
    if len(selected) == len(all_specs):
        args.append("--all")
    else:
        for s in selected:
            args += ["--name", f"{s.function}/{s.name}"]
    return [*args, "--prefect-file", str(prefect_file)]


# ---- server ------------------------------------------------------------------------------------

def api_url() -> str:
    """PREFECT_API_URL, checked: a server answers there. Without one Prefect would start a
    temporary server that vanishes with this process, taking the deployments and runs with it."""
    from prefect.client.orchestration import get_client
    from prefect.settings import get_current_settings

    url = get_current_settings().api.url
    if not url:
        raise UserError(
            "no Prefect server: PREFECT_API_URL is not set (start one with `prefect server start`, "
            "then `export PREFECT_API_URL=http://127.0.0.1:4200/api`)"
        )
    with get_client(sync_client=True) as client:
        problem = client.api_healthcheck()
    if problem is not None:
        reason = str(problem).splitlines()[0] if str(problem) else type(problem).__name__
        raise UserError(f"no Prefect server answers at PREFECT_API_URL={url} ({reason})")
    return url


def ui_url_for_flow_run(flow_run_id: Any) -> str | None:
    from prefect.settings import get_current_settings

    settings = get_current_settings()
    base = settings.ui_url
    if not base and settings.api.url:
        base = settings.api.url.rstrip("/").removesuffix("/api")
    return f"{base.rstrip('/')}/runs/flow-run/{flow_run_id}" if base else None


# ---- ruinstruct deploy -------------------------------------------------------------------------

def _default_template(pool_type: str) -> dict[str, Any] | None:
    import asyncio

    from prefect.workers.utilities import get_default_base_job_template_for_infrastructure_type

    return asyncio.run(get_default_base_job_template_for_infrastructure_type(pool_type))


def ensure_pools(pools: Sequence[str], gpu_pool: str, root: Path, echo: Echo = _echo) -> dict[str, str]:
    """Create the pools that are missing; leave existing ones as they are. pool -> 'created' |
    'exists'."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import WorkPoolCreate
    from prefect.exceptions import ObjectAlreadyExists, ObjectNotFound

    outcome: dict[str, str] = {}
    with get_client(sync_client=True) as client:
        existing = {}
        for pool in pools:
            try:
                existing[pool] = client.read_work_pool(pool)
            except ObjectNotFound:
                existing[pool] = None
        # every missing pool's plan first: a missing template stops us before anything is created
        plans = {pool: pool_plan(pool, gpu_pool, root) for pool in pools if existing[pool] is None}
        for pool in pools:
            if existing[pool] is not None:
                note = ""
                if pool == GPU_POOL and existing[pool].type != gpu_pool:
                    note = f" (--gpu-pool {gpu_pool} ignored: delete the pool to change its type)"
                echo(f"work pool {pool}: exists, type {existing[pool].type}, left as it is{note}")
                outcome[pool] = "exists"
                continue
            pool_type, template_file = plans[pool]
            if template_file is not None:
                try:
                    template = json.loads(template_file.read_text())
                except (OSError, ValueError) as e:
                    raise UserError(f"base job template {template_file}: {str(e).splitlines()[0]}") from None
                source = str(template_file.relative_to(root) if template_file.is_relative_to(root) else template_file)
            else:
                template = _default_template(pool_type)
                source = f"the {pool_type} type's default base job template"
                if template is None:
                    raise UserError(f"work pool {pool}: no base job template is known for type {pool_type!r}")
            try:
                client.create_work_pool(WorkPoolCreate(name=pool, type=pool_type, base_job_template=template))
            except ObjectAlreadyExists:  # created meanwhile by someone else: theirs stands
                echo(f"work pool {pool}: exists (created meanwhile), left as it is")
                outcome[pool] = "exists"
                continue
            echo(f"work pool {pool}: created, type {pool_type}, from {source}")
            outcome[pool] = "created"
    return outcome


def describe_deployments(specs: Sequence[DeploymentSpec], echo: Echo = _echo) -> list[str]:
    """One line per deployment as the server has it now; returns the names it could not find."""
    from prefect.client.orchestration import get_client
    from prefect.exceptions import ObjectNotFound

    missing = []
    with get_client(sync_client=True) as client:
        for s in specs:
            try:
                d = client.read_deployment_by_name(s.full_name)
            except ObjectNotFound:
                missing.append(s.full_name)
                continue
            extras = []
            if image := (d.job_variables or {}).get("image"):
                extras.append(f"image {image}")
            for sch in d.schedules or []:
                cron = getattr(sch.schedule, "cron", None) or str(sch.schedule)
                extras.append(f"schedule {cron} ({'active' if sch.active else 'inactive'})")
            echo(f"  {s.full_name:28} pool {d.work_pool_name}  config={d.parameters.get('config')}"
                 + ("  " + "  ".join(extras) if extras else ""))
    return missing


def deploy(
    names: Sequence[str] = (),
    gpu_pool: str = "docker",
    prefect_file: Path | None = None,
    echo: Echo = _echo,
) -> int:
    """Create the missing work pools, run `prefect deploy`, report. Returns the exit code."""
    prefect_file = (prefect_file or default_prefect_file()).resolve()
    specs = read_prefect_file(prefect_file)
    selected = select(specs, names)
    pools = pools_of(selected)
    check_gpu_pool(gpu_pool)  # before touching the server
    check_image_tools(selected)
    try:
        url = api_url()
        echo(f"Prefect server: {url}")
        echo(f"deployments of {prefect_file}")
        ensure_pools(pools, gpu_pool, prefect_file.parent, echo)
        code = _prefect_deploy(deploy_args(selected, specs, prefect_file), prefect_file.parent, echo)
    except KeyboardInterrupt as e:
        code = interrupted_code(e)
        echo(f"\nruinstruct deploy stopped by {_signal_name(code)}: the pools and deployments made so far "
             "stay; a rerun makes the rest")
        return code
    if code != 0:
        echo(f"prefect deploy failed (exit {code}): see its output above")
        return code
    echo(f"deployed {len(selected)} deployment(s):")
    missing = describe_deployments(selected, echo)
    if missing:
        echo(f"not on the server after prefect deploy: {', '.join(missing)}")
        return EXIT_FAILED
    return EXIT_OK


def _prefect_deploy(args: list[str], folder: Path, echo: Echo) -> int:
    """`prefect ARGS` in `folder`; stopped (with its children) when we are interrupted."""
    from ruinstruct.signals import stop_tree

    cmd = [sys.executable, "-m", "prefect", *args]
    echo(f"$ prefect {' '.join(args)}")
    # prefect deploy reads the folder it runs in: the tiny deployments record it as their working
    # directory, and build steps use it as the Docker context
    proc = subprocess.Popen(cmd, cwd=folder, stdin=subprocess.DEVNULL)
    try:
        return proc.wait()
    except BaseException:
        # a SIGTERM reaches only us, and the signal handler's deadline (signals.GRACE_S) is near
        stop_tree(proc.pid, timeout=2.0)
        proc.wait()
        raise


# ---- ruinstruct trigger ------------------------------------------------------------------------

def parse_params(items: Sequence[str]) -> dict[str, Any]:
    """--param k=v: the value as JSON when it parses ('3', 'true', '[1, 2]', '{"a": 1}'), else as
    text, as `prefect deployment run --param` does. `config` and `output` have their own options."""
    params: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep or not key or not key.isidentifier():
            raise UserError(f"--param {item!r}: give NAME=VALUE (e.g. --param seed=7)")
        if key in ("config", "output"):
            raise UserError(f"--param {item!r}: use --{key} for {key}")
        if key in params:
            raise UserError(f"--param {key} is given twice")
        try:
            params[key] = json.loads(value)
        except ValueError:
            params[key] = value
    return params


def _known_deployments(client) -> list[str]:
    flows = {f.id: f.name for f in client.read_flows()}
    return sorted(f"{flows.get(d.flow_id, d.flow_id)}/{d.name}" for d in client.read_deployments())


WORKDIR_STEP = "prefect.deployments.steps.set_working_directory"


def working_directory_of(deployment) -> Path | None:
    """The folder a process worker runs the deployment's flows in, when its pull steps only set
    one (what `prefect deploy` records for the tiny deployments: the checkout it ran in); None for
    any other pull (a git clone, no pull step)."""
    steps = deployment.pull_steps or []
    if not steps or not all(isinstance(step, dict) and WORKDIR_STEP in step for step in steps):
        return None
    directory = (steps[-1][WORKDIR_STEP] or {}).get("directory")
    return Path(directory) if directory else None


def _config_param(config: str, pool_type: str | None, workdir: Path | None = None) -> tuple[str, str | None]:
    """(the config path as the worker should see it, a note for the user or None).

    A process worker resolves a relative path in the deployment's working directory, not here. A
    file here that lies under that folder (this checkout) goes relative to it, so a worker with the
    checkout elsewhere finds it too; any other file here goes absolute, which the worker must see.
    A path that is not a file here is the worker's to resolve, and for other pools the path is the
    image's (relative to /opt/ruinstruct): both sent as given."""
    local = Path(config).expanduser()
    if pool_type != "process" or not local.is_file():
        return config, None
    absolute = local.resolve()
    if workdir is not None and absolute.is_relative_to(workdir.expanduser().resolve()):
        if Path(config).is_absolute():
            return config, None
        return absolute.relative_to(workdir.expanduser().resolve()).as_posix(), None
    where = f"not under {workdir}, where the worker runs the flow" if workdir else \
        "the deployment's working directory is not known"
    return str(absolute), f"note: --config {config} goes as {absolute} ({where}): the worker must see that path"


def _short(value: Any, limit: int = 120) -> str:
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _state_line(state) -> str:
    from datetime import datetime

    line = f"{datetime.now():%H:%M:%S} {state.name}"
    if state.message:
        line += f": {state.message}"
    return line


def _stop_line(code: int, name: str, flow_run_id: Any, watching: bool) -> str:
    if flow_run_id is not None:
        what = "stopped watching" if watching else f"stopped ({_signal_name(code)})"
        return (f"\n{what}; flow run {flow_run_id} goes on on the worker "
                f"(`prefect flow-run cancel {flow_run_id}` stops it)")
    flow = name.split("/")[0]
    return (f"\nstopped ({_signal_name(code)}) before the server confirmed a flow run of {name}; if it made "
            f"one, `prefect flow-run ls --flow-name {flow}` lists it")


def _lost_server(url: str | None, exc: BaseException, what: str) -> UserError:
    reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return UserError(f"lost the Prefect server at PREFECT_API_URL={url} {what} ({reason})")


def trigger(
    name: str,
    config: str | None = None,
    output: str | None = None,
    params: Sequence[str] = (),
    watch: bool = False,
    timeout: float | None = None,
    echo: Echo = _echo,
    poll_s: float = 1.0,
) -> int:
    """Start a run of deployment `name` (`<flow>/<deployment>`) with `config` (None: the
    deployment's own); with `watch`, follow it. Returns 0 when created (or, watched, Completed), 1
    Failed/Crashed/Cancelled or still running at `timeout`, 128 + the signal number when
    interrupted (130 Ctrl-C, 143 SIGTERM; a created run goes on)."""
    import httpx
    from prefect.client.orchestration import get_client
    from prefect.deployments import run_deployment
    from prefect.exceptions import ObjectNotFound, PrefectHTTPStatusError

    if name.count("/") != 1 or not all(name.split("/")):
        raise UserError(f"deployment {name!r}: give FLOW/DEPLOYMENT, e.g. ruinstruct-pipeline/tiny")
    parameters = parse_params(params)
    if timeout is not None and timeout <= 0:
        raise UserError(f"--timeout {timeout:g}: give a number of seconds > 0")
    watching = watch or timeout is not None
    flow_run_id = None
    url = None
    try:
        url = api_url()
        try:
            with get_client(sync_client=True) as client:
                try:
                    deployment = client.read_deployment_by_name(name)
                except ObjectNotFound:
                    known = _known_deployments(client)
                    hint = ("known: " + ", ".join(known)) if known else "the server has none: run `ruinstruct deploy`"
                    raise UserError(f"unknown deployment {name!r}; {hint}") from None
                pool_type = None
                if deployment.work_pool_name:
                    try:
                        pool_type = client.read_work_pool(deployment.work_pool_name).type
                    except ObjectNotFound:
                        pool_type = None

            schema = deployment.parameter_openapi_schema or {}
            takes = set(schema.get("properties") or {})
            if unknown := [k for k in parameters if takes and k not in takes]:
                raise UserError(f"--param {unknown[0]}: {name} takes no such parameter; "
                                f"it takes {', '.join(sorted(takes))}")
            notes = []
            if config is None:
                default = (deployment.parameters or {}).get("config")
                if default is None and "config" in (schema.get("required") or []):
                    raise UserError(f"--config: {name} has no default config; give one (e.g. configs/tiny.yaml)")
                notes.append(f"config: the deployment's default, {_short(default)} (no --config given)")
            else:
                value, note = _config_param(config, pool_type, working_directory_of(deployment))
                parameters = {"config": value, **parameters}
                if note:
                    notes.append(note)
            if output is not None:
                parameters["output"] = output
            try:
                flow_run = run_deployment(deployment.id, parameters=parameters, timeout=0)
            except PrefectHTTPStatusError as e:
                detail = e.response.text if e.response is not None else str(e)
                try:
                    detail = json.loads(detail).get("detail", detail)
                except (ValueError, AttributeError):
                    pass
                raise UserError(f"{name}: the server refused the run: {str(detail).splitlines()[0]}") from None
        except httpx.HTTPError as e:
            raise _lost_server(url, e, f"while starting a run of {name}") from None
        flow_run_id = flow_run.id

        echo(f"flow run {flow_run.name} ({flow_run.id}) of {name}, on pool {deployment.work_pool_name}")
        echo(f"parameters: {json.dumps(parameters, ensure_ascii=False)}")
        for note in notes:
            echo(note)
        if ui := ui_url_for_flow_run(flow_run.id):
            echo(f"UI: {ui}")
        if not watching:
            echo(f"follow it: ruinstruct trigger ... --watch, or `prefect flow-run logs {flow_run.id}`")
            return EXIT_OK
    except KeyboardInterrupt as e:
        code = interrupted_code(e)
        echo(_stop_line(code, name, flow_run_id, watching=False))
        return code
    return watch_run(flow_run_id, deployment.work_pool_name, timeout, echo, poll_s, api=url)


def watch_run(flow_run_id, pool: str | None, timeout: float | None, echo: Echo = _echo,
              poll_s: float = 1.0, api: str | None = None) -> int:
    """Print each state change until a final state (0 Completed, 1 otherwise), `timeout` (1), or a
    signal (128 + its number; the run goes on on the worker). A server that stops answering is a
    UserError (exit 2)."""
    import httpx
    from prefect.client.orchestration import get_client
    from prefect.exceptions import ObjectNotFound

    if api is None:
        from prefect.settings import get_current_settings

        api = get_current_settings().api.url
    deadline = time.monotonic() + timeout if timeout else None
    last = None
    hinted = False
    try:
        with get_client(sync_client=True) as client:
            while True:
                flow_run = client.read_flow_run(flow_run_id)
                state = flow_run.state
                if state is not None and (state.type, state.name, state.message) != last:
                    last = (state.type, state.name, state.message)
                    echo(_state_line(state))
                    if state.name == "Late" and not hinted and pool:
                        hinted = True
                        echo(f"  no worker has taken it yet: is one running? `prefect worker start --pool {pool}`")
                if state is not None and state.is_final():
                    if state.is_completed():
                        echo(f"flow run {flow_run.name} ({flow_run_id}) ended Completed")
                        return EXIT_OK
                    # the state line above carried its message
                    echo(f"flow run {flow_run.name} ({flow_run_id}) ended {state.name}")
                    return EXIT_FAILED
                if deadline is not None and time.monotonic() >= deadline:
                    echo(f"flow run {flow_run.name} ({flow_run_id}) is still {state.name if state else 'pending'}"
                         f" after {timeout:g} s; it goes on: `prefect flow-run inspect {flow_run_id}`")
                    return EXIT_FAILED
                time.sleep(poll_s)
    except KeyboardInterrupt as e:
        code = interrupted_code(e)
        echo(_stop_line(code, "", flow_run_id, watching=True))
        return code
    except ObjectNotFound:
        raise UserError(f"flow run {flow_run_id} is no longer on the server at PREFECT_API_URL={api} "
                        "(deleted while watching)") from None
    except httpx.HTTPError:
        # PrefectHTTPStatusError is one too; the client has already retried for about a minute
        raise UserError(f"lost the Prefect server at PREFECT_API_URL={api} while watching; "
                        f"flow run {flow_run_id} goes on on the worker") from None
