"""A failed deployment run of the data flow, retried as the UI's Retry button does it
(`prefect flow-run retry`), recomputes only the failed translation shard: real server, real
process worker, a real fault (a corrupt shard input file), no test hooks in the product code."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from ruinstruct.paths import RunPaths
from tests.e2e.conftest import OFFLINE_ENV, REPO, tail

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

RUN_S = 300  # bound on one flow run (worker start-up + tiny translation on 2 busy cores)
SHARD_SIZE = 8
LIMIT = 16  # dialogs per source: 2 shards each, 6 in all
FAULT = ("dolly", 1)


def write_config(tmp_path: Path, tiny_dir: Path) -> Path:
    """configs/tiny.yaml with absolute paths, the tiny translator, small shards, few dialogs."""
    raw = yaml.safe_load((REPO / "configs/tiny.yaml").read_text())
    for src in raw["data"]["sources"]:
        src["path"] = str((REPO / "configs" / src["path"]).resolve())
        src["limit"] = LIMIT
    raw["translation"]["model"] = str(tiny_dir / "translator")
    raw["translation"]["shard_size"] = SHARD_SIZE
    path = tmp_path / "tiny-e2e.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


def shard_relpath(config_file: Path, source: str, index: int, scratch: Path) -> Path:
    """The content-addressed name the run will give shard `index` of `source` (relative to
    data/shards/): load the source and plan its shards exactly as the flow does, elsewhere."""
    from ruinstruct.config import load_config
    from ruinstruct.io import write_dialogs
    from ruinstruct.sources import load_source
    from ruinstruct.translate.shards import plan_shards

    cfg = load_config(config_file)
    src = next(s for s in cfg.data.sources if s.name == source)
    raw = scratch / "raw.parquet"
    write_dialogs(raw, load_source(src).dialogs)
    refs = plan_shards(source, raw, cfg.translation.shard_size, scratch / "shards")
    assert len(refs) > index, f"{source} has only {len(refs)} shards"
    return Path(refs[index]["path"]).relative_to(scratch / "shards")


def assert_counts(report: dict, paths: RunPaths) -> None:
    """The report's own numbers add up, source by source, and match the dataset it describes."""
    from ruinstruct.io import read_dialogs

    rows = [d for split in ("train", "validation") for d in read_dialogs(paths.final_split(split))]
    assert set(report["per_source"]) == {"dolly", "oasst1", "chip2"}
    for src, r in report["per_source"].items():
        assert 0 < r["dialogs"] <= LIMIT and r["dialogs"] == r["to_translate"] == r["translated"], (src, r)
        assert r["translated"] == r["ru_kept"] + r["filtered_out"], (src, r)
        assert r["final"] == r["dialogs"] + r["ru_kept"] - r["duplicates"] - r["capped"], (src, r)
        assert r["final_en"] == sum(d["source"] == src and d["lang"] == "en" for d in rows), (src, r)
        assert r["final_ru"] == sum(d["source"] == src and d["lang"] == "ru" for d in rows), (src, r)
    assert report["splits"]["train"] + report["splits"]["validation"] == report["totals"]["final"] == len(rows)


def read_task_runs(flow_run_id) -> list[Any]:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    with get_client(sync_client=True) as client:
        return client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id])))


def read_flow_run(flow_run_id):
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        return client.read_flow_run(flow_run_id)


def describe(runs) -> str:
    return "\n".join(
        f"  {r.name:24} {r.state.name if r.state else None:10} attempt={r.flow_run_run_count}"
        f" run_count={r.run_count} created={r.created:%H:%M:%S.%f}"
        for r in sorted(runs, key=lambda r: (r.flow_run_run_count, r.created, r.name))
    )


def shard_states(runs, attempt: int) -> dict[str, str]:
    """translate-<source>-<index> -> final state name, for the task runs of one flow attempt."""
    shards = [r for r in runs if r.name.startswith("translate-") and r.flow_run_run_count == attempt]
    names = [r.name for r in shards]
    assert len(names) == len(set(names)), f"duplicate task runs in attempt {attempt}: {sorted(names)}"
    return {r.name: r.state.name for r in shards}


def outputs(root: Path) -> dict[str, tuple[int, int]]:
    """Translated shard files -> (inode, mtime_ns): a rewrite (atomic rename) changes both."""
    return {
        str(p.relative_to(root)): (p.stat().st_ino, p.stat().st_mtime_ns)
        for p in RunPaths(root).translated.rglob("*.parquet")
    }


def wait_for_attempt(flow_run_id, attempt: int, timeout: float, logs) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        fr = read_flow_run(flow_run_id)
        if fr.run_count >= attempt and fr.state is not None and fr.state.is_final():
            return fr
        assert time.monotonic() < deadline, (
            f"attempt {attempt} not finished in {timeout}s: {fr.state!r}\n{logs()}"
        )
        time.sleep(1)


def test_retry_of_failed_deployment_run_recomputes_only_the_failed_shard(
    prefect_server, process_worker, tmp_path, tiny_dir
):
    from prefect import Flow
    from prefect.deployments import run_deployment

    config_file = write_config(tmp_path, tiny_dir)
    root = tmp_path / "run"
    fault_task = "translate-{}-{}".format(*FAULT)

    # the fault: a corrupt input file where the flow will look for one shard; plan_shards keeps it
    bad = RunPaths(root).shards / shard_relpath(config_file, *FAULT, tmp_path / "scratch")
    bad.parent.mkdir(parents=True)
    bad.write_bytes(b"this is not a parquet file\n")

    Flow.from_source(source=str(REPO), entrypoint="flows/data.py:data_flow").deploy(
        name="data-e2e",
        work_pool_name=process_worker.pool,
        parameters={"config_file": str(config_file), "output": str(root)},
        job_variables={"env": dict(OFFLINE_ENV)},
        print_next_steps=False,
        ignore_warnings=True,
    )

    def logs() -> str:
        return f"--- worker log (flow-run output) ---\n{tail(process_worker.log, 8000)}"

    # attempt 1: the run fails, only because of the corrupt shard
    run = run_deployment("ruinstruct-data/data-e2e", timeout=RUN_S, poll_interval=1)
    run = wait_for_attempt(run.id, 1, 30, logs)
    runs = read_task_runs(run.id)
    print(f"attempt 1: {run.state!r}\n{describe(runs)}")
    assert run.state.is_failed(), f"attempt 1: {run.state!r}\n{logs()}"
    assert "dolly#1" in (run.state.message or ""), run.state.message
    first = shard_states(runs, 1)
    assert len(first) == 6, first
    assert {k for k, v in first.items() if v == "Failed"} == {fault_task}
    assert all(v == "Completed" for k, v in first.items() if k != fault_task), first
    before = outputs(root)
    assert len(before) == len(first) - 1
    assert not RunPaths(root).final.exists()

    # repair, then retry THE SAME flow run as the UI does (the worker picks it up again)
    bad.unlink()
    retried_at = read_flow_run(run.id).state.timestamp
    res = prefect_server.cli("flow-run", "retry", str(run.id))
    assert "scheduled for retry" in res.stdout, res.stdout
    fr = wait_for_attempt(run.id, 2, RUN_S, logs)
    runs = read_task_runs(run.id)
    print(f"attempt 2: {fr.state!r} run_count={fr.run_count}\n{describe(runs)}")
    assert fr.state.is_completed(), f"retry: {fr.state!r}\n{logs()}"
    assert fr.run_count == 2

    # Prefect keeps attempt 1's task runs and records new ones for attempt 2, tagged with the
    # flow run's run count (flow_run_run_count) and created after the retry
    assert shard_states(runs, 1) == first
    second_runs = [r for r in runs if r.flow_run_run_count == 2]
    assert second_runs and all(r.created > retried_at for r in second_runs)
    second = shard_states(runs, 2)
    assert set(second) == set(first)
    recomputed = {k: v for k, v in second.items() if v != "Cached"}
    assert recomputed == {fault_task: "Completed"}, (
        f"expected only {fault_task} recomputed:\n{describe(runs)}"
    )

    # on disk: the finished shards' translations were not rewritten; the failed one now exists
    after = outputs(root)
    assert {k: after[k] for k in before} == before
    assert len(after) == len(before) + 1
    paths = RunPaths(root)
    report = json.loads(paths.report.read_text())
    assert report["failed_shards"] == []
    assert_counts(report, paths)
    assert (paths.final / "README.md").exists() and paths.final_split("train").exists()


def test_project_prefect_yaml_deploys_and_runs_on_the_worker(prefect_server, process_worker, tmp_path, tiny_dir):
    """`prefect deploy` of the project's own prefect.yaml; a run of it completes on the worker."""
    from prefect.deployments import run_deployment

    prefect_server.cli("deploy", "--name", "data-tiny", "--pool", process_worker.pool, timeout=180)
    config_file = write_config(tmp_path, tiny_dir)
    root = tmp_path / "run"
    flow_run = run_deployment(
        "ruinstruct-data/data-tiny",
        parameters={"config_file": str(config_file), "output": str(root)},
        timeout=300,
        poll_interval=1,
    )
    assert flow_run.state is not None and flow_run.state.is_completed(), (
        f"{flow_run.state}\n{tail(process_worker.log)}"
    )
    paths = RunPaths(root)
    report = json.loads(paths.report.read_text())
    assert_counts(report, paths)
    assert (paths.final / "README.md").exists()
