"""The training flow over a matrix of tiny models: each cell trains in its own process, a rerun
returns them Cached, a deleted output folder retrains only that cell, and a cell whose config is
broken (a LoRA target that matches no module of the loaded model) fails alone while the others
complete and the flow names it."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml

from ruinstruct.config import load_config
from ruinstruct.io import write_dialogs
from ruinstruct.mix import split_file
from ruinstruct.paths import RunPaths
from tests.flows.conftest import task_states

pytestmark = pytest.mark.slow

SETTINGS = {"max_steps": 2, "grad_accum": 1, "micro_batch_size": 2, "logging_steps": 1, "save_steps": 100,
            "max_length": 128}


def dialog(i: int) -> dict:
    return {"id": f"t:{i}", "source": "t", "lang": "en", "origin_id": None, "license": "MIT", "meta": {},
            "messages": [{"role": "user", "content": f"What is {i} plus {i}?"},
                         {"role": "assistant", "content": f"It is {2 * i}."}]}


def write_profile(tmp_path: Path, tiny_dir: Path, broken: bool):
    """A root whose data/final is written here (the data flow is tested elsewhere), and a matrix
    of tiny llama LoRA and tiny gpt2 full fine-tuning (no DeepSpeed: that is test_train's), plus
    with `broken` a cell whose LoRA target matches nothing."""
    root = tmp_path / "run"
    final = RunPaths(root).final
    write_dialogs(split_file(final, "train"), [dialog(i) for i in range(6)])
    write_dialogs(split_file(final, "validation"), [dialog(9)])
    models = [{"name": "tl", "hf_id": str(tiny_dir / "llama"), "family": "llama"},
              {"name": "tg", "hf_id": str(tiny_dir / "gpt2"), "family": "gpt2"}]
    runs = [{"model": "tl", "method": "lora"}, {"model": "tg", "method": "full"}]
    if broken:
        models.append({"name": "bad", "hf_id": str(tiny_dir / "llama"), "family": "llama",
                       "lora_targets": ["q_proj", "qkv_proj"]})
        runs.insert(1, {"model": "bad", "method": "lora"})
    profile = tmp_path / f"p{'-broken' if broken else ''}.yaml"
    profile.write_text(yaml.safe_dump({
        "name": "t", "root": str(root),
        "data": {"sources": [{"name": "d", "kind": "dolly", "path": "d.jsonl"}]},
        "training": {"models": models, "runs": runs, "deepspeed": False, "lora": SETTINGS, "full": SETTINGS},
    }))
    return load_config(profile), root


def artifact(key: str):
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    with get_client(sync_client=True) as client:
        arts = client.read_artifacts(artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[key])))
    return arts[0] if arts else None


def test_matrix_runs_caches_retrains_and_fails_one_cell_alone(prefect_harness, tmp_path, tiny_dir):
    import json

    from flows.train import train_flow

    broken, root = write_profile(tmp_path, tiny_dir, broken=True)
    state = train_flow(config=broken, return_state=True)
    assert state.is_failed()
    assert state.message == "1 of 3 training runs failed: bad-lora-ruinstruct"
    assert task_states(state) == {"train-tl-lora-ruinstruct": "Completed", "train-bad-lora-ruinstruct": "Failed",
                                  "train-tg-full-ruinstruct": "Completed"}
    models = RunPaths(root).models
    assert sorted(p.name for p in models.iterdir()) == ["bad-lora-ruinstruct", "tg-full-ruinstruct",
                                                        "tl-lora-ruinstruct"]
    assert (models / "tl-lora-ruinstruct" / "adapter_model.safetensors").is_file()
    assert (models / "tg-full-ruinstruct" / "model.safetensors").is_file()
    assert not (models / "bad-lora-ruinstruct" / "train_summary.json").exists()

    art = artifact("train-tl-lora-ruinstruct")
    assert art is not None and art.type == "table"
    rows = json.loads(art.data) if isinstance(art.data, str) else art.data
    summary = json.loads((models / "tl-lora-ruinstruct" / "train_summary.json").read_text())
    assert [r["metric"] for r in rows] == ["steps", "final train loss", "final validation loss", "tokens/s",
                                           "real-token fraction of batches", f"peak memory (MiB, {summary['peak_memory_kind']})", "wall time (s)",
                                           "output"]
    values = {r["metric"]: r["value"] for r in rows}
    assert values["steps"] == summary["steps"] == 2
    assert values["final train loss"] == round(summary["metrics"]["final_train_loss"], 4)
    assert values["final validation loss"] == round(summary["metrics"]["final_eval_loss"], 4)
    assert values["real-token fraction of batches"] == round(summary["real_token_fraction"], 4)
    assert values["output"] == str(models / "tl-lora-ruinstruct")
    assert artifact("train-bad-lora-ruinstruct") is None

    # the same inputs again (without the broken cell): both Cached, nothing retrained
    good, _ = write_profile(tmp_path, tiny_dir, broken=False)
    mtime = (models / "tl-lora-ruinstruct" / "train_summary.json").stat().st_mtime_ns
    state = train_flow(config=good, return_state=True)
    assert state.is_completed(), state.message
    assert task_states(state) == {"train-tl-lora-ruinstruct": "Cached", "train-tg-full-ruinstruct": "Cached"}
    out = state.result()["models"]
    assert out == {"tl-lora-ruinstruct": {"output": str(models / "tl-lora-ruinstruct"), "cached": True, "steps": 2},
                   "tg-full-ruinstruct": {"output": str(models / "tg-full-ruinstruct"), "cached": True, "steps": 2}}
    assert (models / "tl-lora-ruinstruct" / "train_summary.json").stat().st_mtime_ns == mtime

    # one output folder deleted: only that cell trains again
    shutil.rmtree(models / "tg-full-ruinstruct")
    state = train_flow(config=good, return_state=True)
    assert task_states(state) == {"train-tl-lora-ruinstruct": "Cached", "train-tg-full-ruinstruct": "Completed"}
    assert (models / "tg-full-ruinstruct" / "model.safetensors").is_file()
    assert (models / "tl-lora-ruinstruct" / "train_summary.json").stat().st_mtime_ns == mtime


def test_pipeline_without_training_runs_data_only(prefect_harness, tmp_path, tiny_dir):
    """A config without `training:` is the data pipeline as before (no models folder)."""
    from flows.pipeline import pipeline_flow
    from tests.flows.conftest import tiny_run_config

    cfg = tiny_run_config(tiny_dir, tmp_path / "run").model_copy(update={"training": None, "evaluation": None})
    src = cfg.data.sources[0].model_copy(update={"limit": 2})
    cfg = cfg.model_copy(update={"data": cfg.data.model_copy(update={"sources": [src]})})
    out = pipeline_flow(config=cfg)
    assert set(out) == {"data"} and Path(out["data"]["dataset"]).is_dir()
    assert not RunPaths(tmp_path / "run").models.exists()
