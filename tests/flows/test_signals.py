"""SIGTERM (as `timeout` and supervisors send it) and Ctrl-C stop a run within seconds, leave no
process behind (the temporary Prefect server included), and lose nothing a rerun needs."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import psutil
import pytest

from tests.flows.test_kill_resume import cli, write_config

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow


def session_processes(sid: int) -> list[psutil.Process]:
    """Live processes of the session `sid` (a Popen with start_new_session=True starts one)."""
    out = []
    for p in psutil.process_iter(["status"]):
        try:
            if os.getsid(p.pid) == sid and p.info["status"] != psutil.STATUS_ZOMBIE:
                out.append(p)
        except (ProcessLookupError, PermissionError, psutil.Error):
            pass
    return out


def assert_nothing_left(sid: int) -> None:
    deadline = time.monotonic() + 5  # init reaps what the run terminated
    while (left := session_processes(sid)) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not left, [" ".join(p.cmdline()) for p in left]


def wait_for(pred, proc: subprocess.Popen, what: str, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return
        if proc.poll() is not None:
            pytest.fail(f"ended (rc {proc.returncode}) before {what}:\n{proc.stdout.read()[-3000:]}")
        time.sleep(0.05)
    pytest.fail(f"no {what} after {timeout} s")


def stop(proc: subprocess.Popen, sig: int, group: bool = False) -> tuple[int, str, float]:
    """Send `sig` (to the process, or to its group like a terminal's Ctrl-C); rc, output, seconds."""
    t0 = time.monotonic()
    (os.killpg if group else os.kill)(proc.pid, sig)
    try:
        out, _ = proc.communicate(timeout=15)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, _ = proc.communicate()
        pytest.fail(f"still running 15 s after {signal.Signals(sig).name}:\n{out[-3000:]}")
    return proc.returncode, out, time.monotonic() - t0


@pytest.fixture
def env(tmp_path):
    env = {**os.environ, "PREFECT_HOME": str(tmp_path / "prefect"), "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    env.pop("PREFECT_API_URL", None)
    return env


def stop_mid_translation(tmp_path, tiny_dir, env, sig: int, group: bool) -> tuple[Path, Path]:
    """Start `ruinstruct data`, send `sig` once a shard is translated; check the stop."""
    cfg = write_config(tmp_path, tiny_dir)
    root = tmp_path / "run"
    proc = cli(cfg, root, env)
    wait_for(lambda: any((root / "data/translated").rglob("*.parquet")), proc, "a translated shard")
    rc, out, _ = stop(proc, sig, group=group)
    assert rc == 128 + sig, out[-3000:]
    assert f"interrupted by {signal.Signals(sig).name}" in out
    assert "Traceback" not in out, out[-3000:]
    assert not (root / "data/final").exists(), "the run finished before it was stopped"
    assert_nothing_left(proc.pid)
    return cfg, root


def test_sigterm_mid_translation_then_a_rerun_gives_the_clean_dataset(tmp_path, tiny_dir, env):
    # to the process alone, as `timeout`, systemd or docker send it
    cfg, root = stop_mid_translation(tmp_path, tiny_dir, env, signal.SIGTERM, group=False)
    done_at_stop = len(list((root / "data/translated").rglob("*.stats.json")))

    rerun = cli(cfg, root, env)
    out, _ = rerun.communicate(timeout=600)
    assert rerun.returncode == 0, out[-3000:]
    assert_nothing_left(rerun.pid)
    report = json.loads((root / "data/report.json").read_text())
    t = report["translation"]
    assert t["shards_cached"] + t["shards_reused"] >= done_at_stop  # what was done stayed done

    clean = cli(cfg, tmp_path / "clean", env)
    out, _ = clean.communicate(timeout=600)
    assert clean.returncode == 0, out[-3000:]
    for split in ("train", "validation"):
        name = f"data/final/data/{split}-00000-of-00001.parquet"
        assert (root / name).read_bytes() == (tmp_path / "clean" / name).read_bytes(), split


def test_ctrl_c_mid_translation_stops_cleanly(tmp_path, tiny_dir, env):
    # to the whole process group, as a terminal sends it: the temporary server gets it too
    stop_mid_translation(tmp_path, tiny_dir, env, signal.SIGINT, group=True)


SCRIPT = textwrap.dedent("""
    import sys
    from pathlib import Path

    from prefect import flow, task

    from ruinstruct import signals

    marker = Path(sys.argv[1])

    @task(retries=3, retry_delay_seconds=600)
    def download():
        marker.write_text("failed once")
        raise ConnectionResetError(104, "Connection reset by peer")

    @flow
    def pipeline():
        return download.submit().result()

    signals.run(pipeline)
""")


def test_sigterm_during_a_retry_delay(tmp_path, env):
    """A task sleeping in a 600 s retry delay does not hold the exit back, and the temporary
    Prefect server does not outlive the run."""
    marker = tmp_path / "attempted"
    script = tmp_path / "flow.py"
    script.write_text(SCRIPT)
    proc = subprocess.Popen([sys.executable, str(script), str(marker)], cwd=REPO, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
    wait_for(marker.exists, proc, "the first attempt", timeout=120)
    time.sleep(1)  # into the retry delay
    assert len(session_processes(proc.pid)) >= 2, "no temporary Prefect server to check"
    rc, out, seconds = stop(proc, signal.SIGTERM)
    assert rc == 143, out[-3000:]
    assert "interrupted by SIGTERM" in out
    assert_nothing_left(proc.pid)


BLOCKED = textwrap.dedent("""
    import signal, subprocess, sys, threading, time

    from ruinstruct import signals

    def work():
        child = subprocess.Popen(["sleep", "600"])
        threading.Thread(target=time.sleep, args=(600,)).start()  # a worker in a retry delay
        signal.signal(signal.SIGTERM, lambda *a: None)  # a handler that swallows it, as a library's may
        print("ready", flush=True)
        child.wait()

    signals.run(work)
""")


def test_the_deadline_ends_a_run_whose_main_thread_does_not_stop(tmp_path):
    proc = subprocess.Popen([sys.executable, "-c", BLOCKED], cwd=REPO, text=True, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, start_new_session=True)
    assert proc.stdout.readline().strip() == "ready"
    rc, out, seconds = stop(proc, signal.SIGTERM)
    assert rc == 143, out
    assert "interrupted by SIGTERM" in out
    assert_nothing_left(proc.pid)
