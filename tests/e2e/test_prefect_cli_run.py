"""The README's plain Prefect form, a RELATIVE config path as the deployment's parameter:
`prefect --no-prompt deployment run 'ruinstruct-data/tiny' --param config=configs/tiny.yaml
--param output=DIR --watch`, typed in a folder that is not the checkout. The flow run resolves
configs/tiny.yaml (and the profile its own ../ paths) in its working directory, the checkout the
deployment was made from; the whole tiny profile runs to Completed on the process worker."""

from __future__ import annotations

import json
import math
import re
import subprocess
import time

import pytest
import yaml

from ruinstruct.paths import RunPaths
from tests.e2e.conftest import README_RUN_S, REPO, tail
from tests.e2e.helpers import assert_counts, read_flow_run, read_task_runs, shard_states

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

CONFIG = "configs/tiny.yaml"


def test_readme_deployment_run_with_a_relative_config_completes_from_another_folder(
    prefect_server, project_deployments, process_worker, readme_data_run
):
    run = readme_data_run
    try:
        run.proc.wait(timeout=README_RUN_S + 60)
    except subprocess.TimeoutExpired:
        raise AssertionError(f"`prefect deployment run --watch` still going after {README_RUN_S + 60} s:\n"
                             f"{tail(run.log)}\n{process_worker.logs()}") from None
    out = tail(run.log, 20_000)
    print(f"{' '.join(run.cmd[1:])}\n  in {run.cwd}: exit {run.proc.returncode} after "
          f"{time.monotonic() - run.started:.0f} s\n{out}")
    assert run.proc.returncode == 0, f"{out}\n{process_worker.logs()}"
    assert "Flow run finished successfully in 'Completed'" in out, out
    m = re.search(r"UUID: ([0-9a-f-]{36})", out)
    assert m, out

    fr = read_flow_run(m.group(1))
    assert fr.state.is_completed(), fr.state
    assert fr.deployment_id == project_deployments["ruinstruct-data/tiny"].id
    # the path as typed, not resolved by the CLI; nothing ran or was written where it was typed
    assert fr.parameters == {"config": CONFIG, "output": str(run.output)}
    assert not (run.cwd / "configs").exists() and list(run.cwd.iterdir()) == []

    # the profile's own relative paths resolved too: every fixture line read, the shards of its
    # shard size translated by the checkout's tiny translator, the dataset under `output`
    profile = yaml.safe_load((REPO / CONFIG).read_text())
    lines = {
        src["name"]: sum(1 for line in (REPO / "configs" / src["path"]).read_text().splitlines() if line.strip())
        for src in profile["data"]["sources"]
    }
    paths = RunPaths(run.output)
    report = json.loads(paths.report.read_text())
    assert {src: r["downloaded"] for src, r in report["per_source"].items()} == lines
    assert report["failed_shards"] == [] and report["checks"] and all(report["checks"].values()), report["checks"]
    assert_counts(report, paths, max(lines.values()))

    size = profile["translation"]["shard_size"]
    shards = {
        f"translate-{src}-{i}"
        for src, r in report["per_source"].items()
        for i in range(math.ceil(r["to_translate"] / size))
    }
    assert shard_states(read_task_runs(fr.id), 1) == dict.fromkeys(shards, "Completed")
    assert report["translation"]["shards"] == len(shards)
    assert (paths.final / "README.md").exists() and paths.final_split("validation").exists()
