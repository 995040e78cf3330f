"""Kill the CLI mid-translation (SIGKILL), start again: nothing lost, same dataset as a clean run."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from ruinstruct.paths import RunPaths, stats_sidecar

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow


def write_config(tmp_path: Path, tiny_dir: Path) -> Path:
    raw = yaml.safe_load((REPO / "configs/tiny.yaml").read_text())
    for s in raw["data"]["sources"]:
        s["path"] = str((REPO / "configs" / s["path"]).resolve())
    raw["translation"]["model"] = str(tiny_dir / "translator")
    raw["translation"]["shard_size"] = 3  # many small shards so the kill lands mid-translation
    p = tmp_path / "tiny.yaml"
    p.write_text(yaml.safe_dump(raw))
    return p


def cli(config: Path, root: Path, env: dict) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "ruinstruct.cli", "data", "--config", str(config), "--output", str(root)],
        cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True,
    )


def test_killed_run_resumes_to_the_same_dataset(tmp_path, tiny_dir):
    cfg = write_config(tmp_path, tiny_dir)
    env = {**os.environ, "PREFECT_HOME": str(tmp_path / "prefect"), "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
           "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    env.pop("PREFECT_API_URL", None)
    killed = tmp_path / "killed"
    kp, cp = RunPaths(killed), RunPaths(tmp_path / "clean")
    proc = cli(cfg, killed, env)
    deadline = time.monotonic() + 300
    done_at_kill: list[Path] = []
    while time.monotonic() < deadline and proc.poll() is None:
        done_at_kill = list(kp.translated.rglob("*.parquet"))
        if done_at_kill:
            break
        time.sleep(0.05)
    if proc.poll() is not None:
        pytest.fail(f"the run ended (rc {proc.returncode}) before a shard was seen done:\n{proc.stdout.read()[-3000:]}")
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    # a shard is finished once its stats sidecar is written (after its output); one killed between
    # the two is redone, from the paragraph cache
    done_at_kill = sorted(p for p in kp.translated.rglob("*.parquet") if stats_sidecar(p).exists())
    assert not kp.final.exists(), "the run finished before it could be killed"

    resumed = cli(cfg, killed, env)
    out, _ = resumed.communicate(timeout=600)
    assert resumed.returncode == 0, out
    report = json.loads(kp.report.read_text())
    t = report["translation"]
    # every shard finished before the kill came back as it was: Cached (its Prefect record was
    # committed) or reused from its output + stats files (killed just before the commit)
    assert t["shards_cached"] + t["shards_reused"] >= len(done_at_kill)
    assert t["shards_cached"] + t["shards_reused"] < t["shards"]

    clean = cli(cfg, tmp_path / "clean", env)
    out, _ = clean.communicate(timeout=600)
    assert clean.returncode == 0, out
    for split in ("train", "validation"):
        a = kp.final_split(split).read_bytes()
        b = cp.final_split(split).read_bytes()
        assert a == b, split
    clean_report = json.loads(cp.report.read_text())
    # the CLI ends with the run's summary (not a JSON dict), then the output paths
    from ruinstruct.stages.data import summary_lines

    summary = summary_lines(clean_report)
    assert summary[0].startswith("records read: ") and summary[-1].startswith("final: en ")
    lines = [line for line in out.splitlines() if line.strip()]
    assert summary[0] in lines and "{}" not in lines, out[-2000:]
    i = lines.index(summary[0])
    shown = RunPaths(cp.root.resolve())  # the CLI prints the resolved root
    assert lines[i:i + len(summary) + 3] == [
        *summary, f"dataset: {shown.final}", f"rejects: {shown.rejects}", f"report:  {shown.report}"], out[-2000:]
    assert report["totals"] == clean_report["totals"]
    # nothing translated before the kill was translated again: the resumed run sent fewer
    # paragraphs to the model than a clean run (finished shards and the paragraph cache)
    assert t.get("translated", 0) < clean_report["translation"]["translated"]
