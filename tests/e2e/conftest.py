"""End-to-end fixtures: a real `prefect server`, a real process work pool and worker.

Everything runs in subprocesses started with their own session (process group), with a
per-module PREFECT_HOME and TMPDIR, and is stopped in the fixture teardown. Every wait is bounded.
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

import pytest

REPO = Path(__file__).resolve().parents[2]
OFFLINE_ENV = {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
SERVER_START_S = 180
WORKER_START_S = 90
CLI_S = 120


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def tail(path: Path, n: int = 4000) -> str:
    try:
        return path.read_text(errors="replace")[-n:]
    except OSError:
        return ""


def stop(proc: subprocess.Popen, timeout: float = 20) -> None:
    """SIGTERM the process group we started, wait, SIGKILL it if it does not go."""
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


def prefect_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "prefect", *args]


class PrefectServer(SimpleNamespace):
    url: str
    env: dict[str, str]
    home: Path
    log: Path

    def cli(self, *args: str, timeout: float = CLI_S, check: bool = True) -> subprocess.CompletedProcess:
        """Run a `prefect` CLI command against this server (no prompts, bounded)."""
        res = subprocess.run(
            prefect_cmd("--no-prompt", *args),
            env=self.env,
            cwd=REPO,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if check and res.returncode != 0:
            raise AssertionError(f"prefect {' '.join(args)} -> {res.returncode}\n{res.stdout}\n{res.stderr}")
        return res


@pytest.fixture(scope="module")
def prefect_server(tmp_path_factory) -> Iterator[PrefectServer]:
    """`prefect server start` on a free port; this process's Prefect client points at it."""
    from prefect.settings import PREFECT_API_URL, temporary_settings

    base = tmp_path_factory.mktemp("prefect-e2e")
    home, tmp = base / "home", base / "tmp"
    home.mkdir()
    tmp.mkdir()
    port = free_port()
    url = f"http://127.0.0.1:{port}/api"
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
    log = base / "server.log"
    server_env = {k: v for k, v in env.items() if k != "PREFECT_API_URL"}
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
        with temporary_settings(updates={PREFECT_API_URL: url}):
            yield PrefectServer(url=url, env=env, home=home, log=log)
    finally:
        stop(proc)


class Worker(SimpleNamespace):
    pool: str
    log: Path
    proc: subprocess.Popen


@pytest.fixture(scope="module")
def process_worker(prefect_server: PrefectServer) -> Iterator[Worker]:
    """A process work pool and one `prefect worker start` polling it every second."""
    pool = "e2e-process"
    prefect_server.cli("work-pool", "create", pool, "--type", "process", "--overwrite")
    log = prefect_server.home.parent / "worker.log"
    env = {**prefect_server.env, "PREFECT_WORKER_QUERY_SECONDS": "1", "PREFECT_WORKER_PREFETCH_SECONDS": "1"}
    with log.open("w") as out:
        proc = subprocess.Popen(
            prefect_cmd("worker", "start", "--pool", pool, "--name", "e2e-worker"),
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
        yield Worker(pool=pool, log=log, proc=proc)
    finally:
        stop(proc)
