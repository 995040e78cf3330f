"""The evaluation flow over tiny models: every benchmark on every trained model, the results
files and the `results-table` artifact with one row per model; a rerun comes back Cached; a model
whose evaluation fails fails alone and the flow names it."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml

from ruinstruct.config import load_config
from ruinstruct.io import read_jsonl, write_jsonl
from ruinstruct.paths import TRAIN_SUMMARY, RunPaths
from tests.flows.conftest import task_states

pytestmark = pytest.mark.slow

FIXTURES = Path(__file__).resolve().parents[2] / "src" / "ruinstruct" / "resources" / "fixtures"


def fake_trained(models: Path, folder: str, base: Path, template: str) -> None:
    """A tiny base model as a finished training run (weights, the chat template, a summary):
    the evaluation reads nothing else, and no training process has to run."""
    from ruinstruct.chat import load_tokenizer

    out = models / folder
    shutil.copytree(base, out)
    load_tokenizer(base, template).save_pretrained(out)
    (out / TRAIN_SUMMARY).write_text(json.dumps({"steps": 1, "output": str(out)}))


def write_profile(tmp_path: Path, tiny_dir: Path):
    root = tmp_path / "run"
    models = RunPaths(root).models
    fake_trained(models, "tl-lora-ruinstruct", tiny_dir / "llama", "lora")
    fake_trained(models, "tg-full-ruinstruct", tiny_dir / "gpt2", "full")
    broken = models / "bad-lora-ruinstruct"  # trained, but its weights are gone
    shutil.copytree(models / "tl-lora-ruinstruct", broken)
    (broken / "model.safetensors").unlink()
    questions = [q for q in read_jsonl(FIXTURES / "mt_bench" / "question.jsonl") if q["category"] in ("writing", "math")]
    write_jsonl(tmp_path / "q.jsonl", questions[:2])
    profile = tmp_path / "p.yaml"
    profile.write_text(yaml.safe_dump({
        "name": "t", "root": str(root),
        "data": {"sources": [{"name": "d", "kind": "dolly", "path": "d.jsonl"}]},
        "training": {"models": [{"name": n, "hf_id": str(tiny_dir / f), "family": f}
                                for n, f in (("tl", "llama"), ("bad", "llama"), ("tg", "gpt2"))],
                     "runs": [{"model": "tl", "method": "lora"}, {"model": "bad", "method": "lora"},
                              {"model": "tg", "method": "full"}]},
        "evaluation": {
            "mt_bench": {"questions": "q.jsonl", "judge": f"local:{tiny_dir / 'llama'}", "max_new_tokens": 8},
            "mmlu_en": {"data": str(FIXTURES / "mmlu_en"), "subjects": ["philosophy"], "limit": 2, "shots": 1},
        },
    }))
    return load_config(profile), root


def results_artifact(flow_run_id):
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId, ArtifactFilterKey

    with get_client(sync_client=True) as client:
        arts = client.read_artifacts(artifact_filter=ArtifactFilter(
            key=ArtifactFilterKey(any_=["results-table"]), flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id])))
    assert len(arts) == 1
    return json.loads(arts[0].data) if isinstance(arts[0].data, str) else arts[0].data


def eval_states(state) -> dict[str, str]:
    return {k: v for k, v in task_states(state).items() if k.startswith("eval-")}


def test_results_artifact_rerun_cached_and_a_failing_model_fails_alone(prefect_harness, tmp_path, tiny_dir):
    from flows.evaluate import evaluate_flow

    cfg, root = write_profile(tmp_path, tiny_dir)
    state = evaluate_flow(config=cfg, return_state=True)
    assert state.is_failed()
    assert state.message == ("2 of 6 evaluations failed: bad-lora-ruinstruct mt_bench, "
                             "bad-lora-ruinstruct mmlu_en")
    assert eval_states(state) == {
        "eval-tl-lora-ruinstruct-mt_bench": "Completed", "eval-tl-lora-ruinstruct-mmlu_en": "Completed",
        "eval-bad-lora-ruinstruct-mt_bench": "Failed", "eval-bad-lora-ruinstruct-mmlu_en": "Failed",
        "eval-tg-full-ruinstruct-mt_bench": "Completed", "eval-tg-full-ruinstruct-mmlu_en": "Completed",
    }
    paths = RunPaths(root)
    for cell in ("tl-lora-ruinstruct", "tg-full-ruinstruct"):
        assert (paths.eval_output(cell, "mmlu_en")).is_file()
        assert (paths.eval_output(cell, "mt_bench") / "model_answer" / f"{cell}.jsonl").is_file()

    # one row per model, in the matrix's order; the failed model's row says so
    rows = json.loads(paths.results_json.read_text())["rows"]
    assert [(r["model"], r["method"], r["failed"]) for r in rows] == [
        ("tl", "lora", []), ("bad", "lora", ["mt_bench", "mmlu_en"]), ("tg", "full", [])]
    for r in (rows[0], rows[2]):
        assert 1 <= r["mt_bench_turn1"] <= 10 and 1 <= r["mt_bench_average"] <= 10
        assert r["mmlu"] in (0.0, 50.0, 100.0)  # 2 questions
        assert r["mmlu_ru"] is None and r["mmlu_paper"] is None  # not configured; no paper row for tiny models
    mmlu = json.loads(paths.eval_output("tl-lora-ruinstruct", "mmlu_en").read_text())
    assert rows[0]["mmlu"] == round(mmlu["scores"]["micro"], 2)

    art = results_artifact(state.state_details.flow_run_id)
    assert [(a["model"], a["method"], a["data"]) for a in art] == [
        ("tl", "LoRA", "ruinstruct"), ("bad", "LoRA", "ruinstruct"), ("tg", "full", "ruinstruct")]
    assert art[1]["MT-Bench RU turn 1"] == art[1]["MMLU"] == "failed" and art[1]["MMLU (paper)"] == "-"
    assert art[0]["MMLU"] == f"{rows[0]['mmlu']:.2f}" and art[0]["MMLU RU"] == "-"
    assert paths.results_table.read_text().count("\n| ") == 4 and paths.results_plot.is_file()  # header + 3 rows

    # the same inputs again: the finished evaluations are Cached, the broken model fails again
    mtime = paths.eval_output("tl-lora-ruinstruct", "mmlu_en").stat().st_mtime_ns
    state = evaluate_flow(config=cfg, return_state=True)
    assert state.is_failed() and "bad-lora-ruinstruct" in state.message
    assert eval_states(state) == {
        "eval-tl-lora-ruinstruct-mt_bench": "Cached", "eval-tl-lora-ruinstruct-mmlu_en": "Cached",
        "eval-bad-lora-ruinstruct-mt_bench": "Failed", "eval-bad-lora-ruinstruct-mmlu_en": "Failed",
        "eval-tg-full-ruinstruct-mt_bench": "Cached", "eval-tg-full-ruinstruct-mmlu_en": "Cached",
    }
    assert paths.eval_output("tl-lora-ruinstruct", "mmlu_en").stat().st_mtime_ns == mtime
    assert json.loads(paths.results_json.read_text())["rows"] == rows


def test_api_key_comes_from_a_prefect_secret_block_before_the_environment(prefect_harness, monkeypatch):
    from prefect.blocks.system import Secret

    from ruinstruct.stages.evaluate import EvalJob
    from tasks.evaluate import judge_api_key

    Secret(value="sk-from-block-1").save("judge-key-test", overwrite=True)
    monkeypatch.setenv("JUDGE_KEY_TEST", "sk-from-env-2")
    settings = {"judge": "api:gpt-4", "api_key_env": "JUDGE_KEY_TEST", "api_key_secret": "judge-key-test"}
    job = EvalJob(cell="c", model="m", method="lora", data="d", benchmark="mt_bench", model_dir="/m", output="/o",
                  record="/r", settings=settings, key="k", refresh=True)
    assert judge_api_key(job) == "sk-from-block-1"
    assert judge_api_key(job.model_copy(update={"settings": {**settings, "api_key_secret": None}})) == "sk-from-env-2"
    local = {**settings, "judge": "local:/j"}
    assert judge_api_key(job.model_copy(update={"settings": local})) is None  # a local judge gets no key


def test_a_planted_api_key_reaches_the_judge_and_nothing_else(prefect_harness, tmp_path, tiny_dir, monkeypatch):
    """The whole evaluation flow with the API judge (a local chat-completions server): the key from
    the environment is sent to the server, and appears in no file of the run, no artifact, no log
    line and no task parameter."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (
        ArtifactFilter,
        ArtifactFilterFlowRunId,
        FlowRunFilter,
        FlowRunFilterId,
        LogFilter,
        LogFilterFlowRunId,
    )

    from flows.evaluate import evaluate_flow
    from tests.unit.test_judge import KEY, ChatServer, reply

    root = tmp_path / "run"
    fake_trained(RunPaths(root).models, "tl-lora-ruinstruct", tiny_dir / "llama", "lora")
    write_jsonl(tmp_path / "q.jsonl", read_jsonl(FIXTURES / "mt_bench" / "question.jsonl")[:1])
    monkeypatch.setenv("JUDGE_KEY_PLANTED", KEY)
    with ChatServer(default=reply("Good. Rating: [[7]]")) as server:
        profile = tmp_path / "p.yaml"
        profile.write_text(yaml.safe_dump({
            "name": "t", "root": str(root),
            "data": {"sources": [{"name": "d", "kind": "dolly", "path": "d.jsonl"}]},
            "training": {"models": [{"name": "tl", "hf_id": str(tiny_dir / "llama"), "family": "llama"}],
                         "runs": [{"model": "tl", "method": "lora"}]},
            "evaluation": {"mt_bench": {"questions": "q.jsonl", "judge": "api:gpt-4", "api_base": server.base,
                                        "api_key_env": "JUDGE_KEY_PLANTED", "max_new_tokens": 4}},
        }))
        state = evaluate_flow(config=load_config(profile), return_state=True)
    assert state.is_completed(), state.message
    assert len(server.requests) == 2 and all(h["Authorization"] == f"Bearer {KEY}" for h, _ in server.requests)
    rows = json.loads(RunPaths(root).results_json.read_text())["rows"]
    assert (rows[0]["mt_bench_turn1"], rows[0]["mt_bench_turn2"]) == (7.0, 7.0)

    leaks = [str(p) for p in root.rglob("*") if p.is_file() and KEY.encode() in p.read_bytes()]
    assert leaks == []
    run_id = state.state_details.flow_run_id
    with get_client(sync_client=True) as client:
        runs = client.read_flow_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[run_id])))
        arts = client.read_artifacts(artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[run_id])))
        logs = client.read_logs(log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=[run_id])))
        tasks = client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[run_id])))
    assert arts and logs and tasks  # there is something to search
    texts = [json.dumps(a.data, default=str) + (a.description or "") for a in arts]
    texts += [log.message for log in logs]
    texts += [json.dumps(r.parameters, default=str) for r in runs]
    texts += [json.dumps(t.task_inputs, default=str) + t.name for t in tasks]
    assert [t[:80] for t in texts if KEY in t] == []
