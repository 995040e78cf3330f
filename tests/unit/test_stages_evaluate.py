"""The evaluation stage without Prefect: one job per trained model x benchmark, cache keys that
follow the model, settings and data (not where the key comes from), idempotent runs that never
mix another model's output into a score, the API judge's key passed to the judge only."""

from __future__ import annotations

import json
import sys
import types
from pathlib import Path

import pytest
import yaml

from ruinstruct.config import load_config
from ruinstruct.errors import UserError
from ruinstruct.paths import TRAIN_SUMMARY, RunPaths
from ruinstruct.stages import evaluate as stages


@pytest.fixture
def bench(monkeypatch):
    """Stand-ins for evaluate_mmlu / run_mt_bench that record their calls and write an output."""
    calls: list[dict] = []

    def evaluate_mmlu(model, data, lang, shots, output, *, batch_size=8, subjects=None, limit=None, progress=None):
        calls.append({"bench": f"mmlu_{lang}", "model": str(model), "data": data, "shots": shots, "output": output,
                      "existed": Path(output).exists(), "subjects": subjects, "limit": limit})
        if progress:
            progress(2, 2)
        Path(output).write_text(json.dumps({"scores": {"micro": 50.0}}))
        return {"micro": 50.0, "category_mean": 40.0, "questions": 2, "shots_dropped": 0}

    def run_mt_bench(model, questions, judge, output, **kw):
        calls.append({"bench": "mt_bench", "model": str(model), "judge": judge, "output": output, **kw})
        Path(output).mkdir(parents=True, exist_ok=True)
        return {"turn1": 5.0, "turn2": 4.0, "average": 4.5, "judged": 4, "excluded": 0}

    monkeypatch.setitem(sys.modules, "ruinstruct.evaluate.mmlu", types.SimpleNamespace(evaluate_mmlu=evaluate_mmlu))
    monkeypatch.setitem(sys.modules, "ruinstruct.evaluate.mt_bench", types.SimpleNamespace(run_mt_bench=run_mt_bench))
    return calls


def profile(tmp_path: Path, judge: str = "local:judge", **mmlu) -> Path:
    (tmp_path / "mmlu").mkdir(exist_ok=True)
    (tmp_path / "mmlu" / "a.csv").write_text("q,a,b,c,d,A\n")
    (tmp_path / "q.jsonl").write_text('{"question_id": 1, "category": "writing", "turns": ["a", "b"]}\n')
    (tmp_path / "judge").mkdir(exist_ok=True)
    (tmp_path / "judge" / "config.json").write_text("{}")
    p = tmp_path / "p.yaml"
    p.write_text(yaml.safe_dump({
        "name": "t", "root": "run",
        "data": {"sources": [{"name": "d", "kind": "dolly", "path": "d.jsonl"}]},
        "training": {"runs": [{"model": ["llama-7b", "llama2-7b"], "method": "lora"}]},
        "evaluation": {"mt_bench": {"questions": "q.jsonl", "judge": judge}, "mmlu_en": {"data": "mmlu", **mmlu}},
    }))
    return p


def trained(root: Path, folder: str, summary: str = '{"steps": 1}') -> Path:
    d = RunPaths(root).models / folder
    d.mkdir(parents=True, exist_ok=True)
    (d / TRAIN_SUMMARY).write_text(summary)
    return d


def test_plan_one_job_per_trained_model_and_benchmark(tmp_path):
    cfg = load_config(profile(tmp_path))
    root = Path(cfg.root)
    model_dir = trained(root, "llama2-7b-lora-ruinstruct")
    jobs, missing = stages.plan_eval(cfg)
    assert missing == [{"cell": "llama-7b-lora-ruinstruct",
                        "error": f"not trained: no train_summary.json in {RunPaths(root).models / 'llama-7b-lora-ruinstruct'}"}]
    assert [(j.cell, j.benchmark) for j in jobs] == [("llama2-7b-lora-ruinstruct", "mt_bench"),
                                                     ("llama2-7b-lora-ruinstruct", "mmlu_en")]
    eval_dir = root / "eval" / "llama2-7b-lora-ruinstruct"
    assert [j.output for j in jobs] == [str(eval_dir / "mt_bench"), str(eval_dir / "mmlu_en.json")]
    assert all(j.model_dir == str(model_dir) and j.refresh for j in jobs)
    assert jobs[0].name == "llama2-7b-lora-ruinstruct-mt-bench" and (jobs[0].model, jobs[0].data) == ("llama2-7b",
                                                                                                     "ruinstruct")
    assert len({j.key for j in jobs}) == 2
    assert stages.plan_eval(cfg, cells=["llama-7b-lora-ruinstruct"]) == ([], missing)


def test_key_follows_model_settings_and_data_not_the_key_source(tmp_path):
    cfg = load_config(profile(tmp_path))
    root = Path(cfg.root)
    trained(root, "llama2-7b-lora-ruinstruct")

    def keys(c=cfg):
        return [j.key for j in stages.plan_eval(c)[0]]

    base = keys()
    assert keys() == base  # stable
    trained(root, "llama2-7b-lora-ruinstruct", '{"steps": 2}')  # retrained: a new model
    retrained = keys()
    assert retrained[0] != base[0] and retrained[1] != base[1]
    (tmp_path / "mmlu" / "a.csv").write_text("q,a,b,c,d,B\n")  # MMLU data changed: only MMLU's key
    changed = keys()
    assert changed[0] == retrained[0] and changed[1] != retrained[1]
    more_shots = load_config(profile(tmp_path, shots=3))
    assert keys(more_shots)[1] != changed[1]
    mt = cfg.evaluation.mt_bench.model_copy(update={"api_key_env": "OTHER_VAR", "api_key_secret": "blk"})
    other_source = cfg.model_copy(update={"evaluation": cfg.evaluation.model_copy(update={"mt_bench": mt})})
    assert keys(other_source) == keys()  # (profile() above rewrote the MMLU file)


def test_run_eval_is_idempotent_and_starts_afresh_for_other_inputs(tmp_path, bench):
    cfg = load_config(profile(tmp_path, subjects=["anatomy"], limit=2))
    root = Path(cfg.root)
    trained(root, "llama2-7b-lora-ruinstruct")
    mmlu = stages.plan_eval(cfg)[0][1]
    lines: list[str] = []
    result = stages.run_eval(mmlu, log=lines.append)
    assert result == {"cell": "llama2-7b-lora-ruinstruct", "model": "llama2-7b", "method": "lora",
                      "data": "ruinstruct", "benchmark": "mmlu_en", "output": mmlu.output,
                      "scores": {"micro": 50.0, "category_mean": 40.0, "questions": 2, "shots_dropped": 0}}
    assert bench == [{"bench": "mmlu_en", "model": mmlu.model_dir, "data": str(tmp_path / "mmlu"), "shots": 5,
                      "output": mmlu.output, "existed": False, "subjects": ["anatomy"], "limit": 2}]
    assert any("2/2 questions" in line for line in lines)
    record = json.loads(Path(mmlu.record).read_text())
    assert record["key"] == mmlu.key and record["finished"] is True and record["scores"]["micro"] == 50.0
    assert stages.plan_eval(cfg)[0][1].refresh is False

    again = stages.run_eval(mmlu, log=lines.append)  # its Prefect record lost: reused, not rerun
    assert again["reused"] is True and again["scores"] == result["scores"] and len(bench) == 1

    trained(root, "llama2-7b-lora-ruinstruct", '{"steps": 9}')  # retrained: the old output must go first
    new = stages.plan_eval(cfg)[0][1]
    assert new.refresh and new.key != mmlu.key
    stages.run_eval(new, log=lines.append)
    assert len(bench) == 2 and bench[1]["existed"] is False
    assert any("holds an evaluation of other inputs" in line for line in lines)


def test_api_judge_with_its_own_endpoint_never_gets_another_variables_key(tmp_path, bench, monkeypatch):
    path = profile(tmp_path, judge="api:my-model")
    raw = yaml.safe_load(path.read_text())
    raw["evaluation"]["mt_bench"] |= {"api_base": "http://judge.example/v1", "api_key_env": "MY_JUDGE_KEY"}
    path.write_text(yaml.safe_dump(raw))
    cfg = load_config(path)
    trained(Path(cfg.root), "llama2-7b-lora-ruinstruct")
    job = stages.plan_eval(cfg)[0][0]
    monkeypatch.delenv("MY_JUDGE_KEY", raising=False)
    monkeypatch.setenv("OPENAI_API_KEY", "sk-openai-not-for-this-endpoint")
    calls = len(bench)
    with pytest.raises(UserError, match=r"api:my-model needs a key: set \$MY_JUDGE_KEY"):
        stages.run_eval(job, log=lambda _: None)
    assert len(bench) == calls  # the judge never ran
    monkeypatch.setenv("MY_JUDGE_KEY", "sk-mine")
    stages.run_eval(job, log=lambda _: None)
    assert (bench[-1]["api_key"], bench[-1]["api_base"]) == ("sk-mine", "http://judge.example/v1")


def test_api_judge_key_goes_to_the_judge_only(tmp_path, bench, monkeypatch):
    cfg = load_config(profile(tmp_path, judge="api:gpt-4"))
    trained(Path(cfg.root), "llama2-7b-lora-ruinstruct")
    job = stages.plan_eval(cfg)[0][0]
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    with pytest.raises(UserError, match=r"evaluation.mt_bench: the API judge api:gpt-4 needs a key: set \$OPENAI_API_KEY"):
        stages.run_eval(job, log=lambda _: None)
    monkeypatch.setenv("OPENAI_API_KEY", "sk-planted-7f3a")
    lines: list[str] = []
    assert stages.run_eval(job, log=lines.append)["scores"]["average"] == 4.5
    call = bench[-1]
    assert (call["judge"], call["api_key"], call["model_id"]) == ("api:gpt-4", "sk-planted-7f3a",
                                                                  "llama2-7b-lora-ruinstruct")
    assert "sk-planted-7f3a" not in Path(job.record).read_text() + "\n".join(lines) + job.model_dump_json()


def test_local_judge_gets_no_key_and_preflight_names_missing_inputs(tmp_path, bench, monkeypatch):
    cfg = load_config(profile(tmp_path))
    trained(Path(cfg.root), "llama2-7b-lora-ruinstruct")
    monkeypatch.setenv("OPENAI_API_KEY", "sk-planted-7f3a")
    stages.run_eval(stages.plan_eval(cfg)[0][0], log=lambda _: None)
    assert bench[-1]["api_key"] is None and bench[-1]["judge"] == f"local:{tmp_path / 'judge'}"
    stages.preflight(cfg)  # everything there
    (tmp_path / "q.jsonl").unlink()
    with pytest.raises(FileNotFoundError, match=r"^evaluation.mt_bench.questions \(file\) not found: .*q.jsonl"):
        stages.preflight(cfg)


def test_collect_groups_scores_and_failures_by_model(tmp_path):
    cfg = load_config(profile(tmp_path))
    root = Path(cfg.root)
    trained(root, "llama-7b-lora-ruinstruct")
    trained(root, "llama2-7b-lora-ruinstruct")
    jobs, _ = stages.plan_eval(cfg)
    results = [{"cell": "llama2-7b-lora-ruinstruct", "benchmark": "mmlu_en", "scores": {"micro": 30.0}}]
    failed = [{"cell": "llama-7b-lora-ruinstruct", "benchmark": "mt_bench", "error": "boom"}]
    assert stages.collect(jobs, results, failed) == [
        {"cell": "llama-7b-lora-ruinstruct", "model": "llama-7b", "method": "lora", "data": "ruinstruct",
         "scores": {}, "failed": {"mt_bench": "boom"}},
        {"cell": "llama2-7b-lora-ruinstruct", "model": "llama2-7b", "method": "lora", "data": "ruinstruct",
         "scores": {"mmlu_en": {"micro": 30.0}}, "failed": {}},
    ]
