"""What the e2e tests share: the trimmed test profiles, reading flow runs, task runs and
artifacts back through the API, and the checks of a retried data run."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from ruinstruct.paths import RunPaths
from tests.e2e.conftest import REPO

RUN_S = 300  # bound on one flow run (subprocess start-up + tiny translation on 2 busy cores)
FIXTURES = REPO / "src" / "ruinstruct" / "resources" / "fixtures"
FAULT = "dolly#1"
FAULT_TASK = "translate-dolly-1"

# the data flow's test profile: 3 sources x 2 shards of 4 dialogs
DATA_LIMIT, DATA_SHARD = 8, 4
# the pipeline's: 3 sources x 1 shard, the cheapest training cell, a small evaluation
PIPE_LIMIT, PIPE_SHARD = 8, 8
TRAINED = ("tiny-llama", "lora", "ruinstruct")
TRAIN_SETTINGS = {"max_steps": 2, "grad_accum": 1, "micro_batch_size": 2, "logging_steps": 1, "save_steps": 100,
                  "max_length": 128}


def _tiny_profile(tiny_dir: Path, limit: int, shard_size: int) -> dict[str, Any]:
    """configs/tiny.yaml with absolute paths, the tiny translator, fewer dialogs, smaller shards."""
    raw = yaml.safe_load((REPO / "configs" / "tiny.yaml").read_text())
    for src in raw["data"]["sources"]:
        src["path"] = str((REPO / "configs" / src["path"]).resolve())
        src["limit"] = limit
    raw["translation"]["model"] = str(tiny_dir / "translator")
    raw["translation"]["shard_size"] = shard_size
    raw.pop("training", None)
    raw.pop("evaluation", None)
    return raw


def write_data_profile(path: Path, tiny_dir: Path, fail_once: list[str] | None = None) -> Path:
    raw = _tiny_profile(tiny_dir, DATA_LIMIT, DATA_SHARD)
    if fail_once:
        raw["faults"] = {"fail_shards_once": list(fail_once)}
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


def write_pipeline_profile(folder: Path, tiny_dir: Path) -> Path:
    """The tiny profile trimmed to seconds: one training cell (tiny LLaMA, LoRA, 2 steps), one
    MT-Bench question with the local judge, 2 MMLU questions with 1 shot."""
    from ruinstruct.io import read_jsonl, write_jsonl

    raw = _tiny_profile(tiny_dir, PIPE_LIMIT, PIPE_SHARD)
    model, method, data = TRAINED
    tiny = yaml.safe_load((REPO / "configs" / "tiny.yaml").read_text())
    raw["training"] = {
        "models": [m for m in tiny["training"]["models"] if m["name"] == model],
        "runs": [{"model": model, "method": method, "data": data}],
        method: {**tiny["training"][method], **TRAIN_SETTINGS},
    }
    raw["training"]["models"][0]["hf_id"] = str(tiny_dir / "llama")
    question = next(q for q in read_jsonl(FIXTURES / "mt_bench" / "question.jsonl") if q["category"] == "writing")
    write_jsonl(folder / "questions.jsonl", [question])
    raw["evaluation"] = {
        "mt_bench": {"questions": str(folder / "questions.jsonl"),
                     "judge_prompts": str(FIXTURES / "mt_bench" / "judge_prompts_ru.jsonl"),
                     "judge": f"local:{tiny_dir / 'llama'}", "max_new_tokens": 8, "batch_size": 4},
        "mmlu_en": {"data": str(FIXTURES / "mmlu_en"), "subjects": ["philosophy"], "limit": 2, "shots": 1},
    }
    path = folder / "pipeline-e2e.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


# ---- the API ----------------------------------------------------------------------------------


def read_flow_run(flow_run_id):
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        return client.read_flow_run(flow_run_id)


def read_task_runs(flow_run_id) -> list[Any]:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    with get_client(sync_client=True) as client:
        return client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id])))


def read_artifacts(flow_run_ids: list[Any], key: str | None = None) -> list[Any]:
    """Artifacts of these flow runs (a pipeline's live in its subflow runs), newest last."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId, ArtifactFilterKey

    flt = ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=list(flow_run_ids)))
    if key is not None:
        flt.key = ArtifactFilterKey(any_=[key])
    with get_client(sync_client=True) as client:
        arts = client.read_artifacts(artifact_filter=flt)
    return sorted(arts, key=lambda a: a.created)


def subflow_runs(flow_run_id) -> list[Any]:
    """The flow runs started inside this one (the pipeline's data, train and evaluate runs)."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterParentFlowRunId

    with get_client(sync_client=True) as client:
        return client.read_flow_runs(
            flow_run_filter=FlowRunFilter(parent_flow_run_id=FlowRunFilterParentFlowRunId(any_=[flow_run_id]))
        )


def wait_for_attempt(flow_run_id, attempt: int, timeout: float, logs: Callable[[], str]) -> Any:
    """The flow run once its `attempt`-th run has reached a final state."""
    deadline = time.monotonic() + timeout
    while True:
        fr = read_flow_run(flow_run_id)
        if fr.run_count >= attempt and fr.state is not None and fr.state.is_final():
            return fr
        assert time.monotonic() < deadline, f"attempt {attempt} not finished in {timeout}s: {fr.state!r}\n{logs()}"
        time.sleep(1)


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


def assert_counts(report: dict, paths: RunPaths, limit: int) -> None:
    """The data report's own numbers add up, source by source, and match the dataset it describes."""
    from ruinstruct.io import read_dialogs

    rows = [d for split in ("train", "validation") for d in read_dialogs(paths.final_split(split))]
    assert set(report["per_source"]) == {"dolly", "oasst1", "chip2"}
    for src, r in report["per_source"].items():
        assert 0 < r["dialogs"] <= limit and r["dialogs"] == r["to_translate"] == r["translated"], (src, r)
        assert r["translated"] == r["ru_kept"] + r["filtered_out"], (src, r)
        assert r["final"] == r["dialogs"] + r["ru_kept"] - r["duplicates"] - r["capped"], (src, r)
        assert r["final_en"] == sum(d["source"] == src and d["lang"] == "en" for d in rows), (src, r)
        assert r["final_ru"] == sum(d["source"] == src and d["lang"] == "ru" for d in rows), (src, r)
    assert report["splits"]["train"] + report["splits"]["validation"] == report["totals"]["final"] == len(rows)


# ---- case 2 and the browser test: a data run with one injected shard fault --------------------


def start_faulty_data_run(folder: Path, tiny_dir: Path, name: str) -> tuple[Any, Path]:
    """A run of the project's `ruinstruct-data/tiny` deployment whose shard dolly#1 fails the first
    time (config `faults`); returns (flow run, its run root) without waiting."""
    from prefect.deployments import run_deployment

    profile = write_data_profile(folder / f"{name}.yaml", tiny_dir, fail_once=[FAULT])
    root = folder / name
    run = run_deployment(
        "ruinstruct-data/tiny", parameters={"config": str(profile), "output": str(root)}, timeout=0
    )
    return run, root


def check_failed_attempt(flow_run_id, root: Path, logs: Callable[[], str]) -> tuple[dict, dict, Any]:
    """Attempt 1 ended Failed naming the shard; the other shards are persisted. Returns (shard
    states, translated files, the state's timestamp)."""
    run = wait_for_attempt(flow_run_id, 1, RUN_S, logs)
    runs = read_task_runs(flow_run_id)
    print(f"attempt 1: {run.state!r}\n{describe(runs)}")
    assert run.state.is_failed(), f"attempt 1: {run.state!r}\n{logs()}"
    assert FAULT in (run.state.message or ""), run.state.message
    first = shard_states(runs, 1)
    assert len(first) == 6, first
    assert {k for k, v in first.items() if v == "Failed"} == {FAULT_TASK}, first
    assert all(v == "Completed" for k, v in first.items() if k != FAULT_TASK), first
    paths = RunPaths(root)
    before = outputs(root)
    assert len(before) == len(first) - 1, before  # the 5 other shards' translations are on disk
    assert paths.fault_marker("dolly", 1).exists()
    assert not paths.final.exists()
    report = json.loads(paths.report.read_text())
    assert [f"{f['source']}#{f['index']}" for f in report["failed_shards"]] == [FAULT], report["failed_shards"]
    return first, before, run.state.timestamp


def check_retried(flow_run_id, root: Path, first: dict, before: dict, retried_at, logs: Callable[[], str]) -> None:
    """Attempt 2 of the same flow run completed; only the failed shard was recomputed, the
    others came back Cached and their files were not rewritten; the dataset is whole."""
    fr = wait_for_attempt(flow_run_id, 2, RUN_S, logs)
    runs = read_task_runs(flow_run_id)
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
    assert recomputed == {FAULT_TASK: "Completed"}, f"expected only {FAULT_TASK} recomputed:\n{describe(runs)}"
    after = outputs(root)
    assert {k: after[k] for k in before} == before
    assert len(after) == len(before) + 1
    paths = RunPaths(root)
    report = json.loads(paths.report.read_text())
    assert report["failed_shards"] == []
    assert_counts(report, paths, DATA_LIMIT)
    assert (paths.final / "README.md").exists() and paths.final_split("train").exists()
