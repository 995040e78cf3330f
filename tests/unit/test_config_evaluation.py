"""The `evaluation:` section: benchmarks left out are not run, paths resolve against the profile,
and every mistake names its field (never echoing a key pasted where a variable name belongs)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from ruinstruct.config import ConfigError, load_config

REPO = Path(__file__).resolve().parents[2]

BASE = {
    "name": "t",
    "data": {"sources": [{"name": "d", "kind": "dolly", "path": "d.jsonl"}]},
    "training": {"runs": [{"model": "llama-7b", "method": "lora"}]},
}


def load(tmp_path: Path, evaluation, **top):
    p = tmp_path / "p.yaml"
    p.write_text(yaml.safe_dump({**BASE, **top, "evaluation": evaluation}))
    return load_config(p)


def error(tmp_path: Path, evaluation, **top) -> str:
    with pytest.raises(ConfigError) as e:
        load(tmp_path, evaluation, **top)
    return str(e.value)


def test_sections_paths_and_defaults(tmp_path):
    cfg = load(tmp_path, {
        "mmlu_en": {"data": "mmlu", "subjects": ["anatomy"], "limit": 2},
        "mmlu_ru": {},
        "mt_bench": {"questions": "q/question.jsonl", "judge": "local:../judge", "judge_prompts": "p.jsonl"},
    })
    ev = cfg.evaluation
    assert ev.benchmarks() == ["mt_bench", "mmlu_en", "mmlu_ru"]
    assert ev.mmlu_en.data == str(tmp_path / "mmlu") and ev.mmlu_en.shots == 5
    assert ev.mmlu_ru.data is None  # the hub
    assert ev.mt_bench.questions == str(tmp_path / "q" / "question.jsonl")
    assert ev.mt_bench.judge == f"local:{tmp_path.parent / 'judge'}" and ev.mt_bench.judge_kind == "local"
    assert ev.mt_bench.judge_prompts == str(tmp_path / "p.jsonl")
    assert ev.mt_bench.api_key_env == "OPENAI_API_KEY" and ev.mt_bench.api_key_secret is None
    assert load(tmp_path, None).evaluation is None  # no section: no evaluation


def test_api_judge_keeps_its_model_name(tmp_path):
    mt = load(tmp_path, {"mt_bench": {"questions": "q.jsonl", "judge": "api:gpt-4", "api_base": "http://h/v1",
                                      "api_key_secret": "judge-key"}}).evaluation.mt_bench
    assert (mt.judge, mt.judge_kind, mt.api_base, mt.api_key_secret) == ("api:gpt-4", "api", "http://h/v1",
                                                                          "judge-key")


@pytest.mark.parametrize(("evaluation", "expected"), [
    ({}, "evaluation: name at least one benchmark (mt_bench, mmlu_en, mmlu_ru)"),
    ({"mmlu_en": {"shots": -1}}, "evaluation.mmlu_en.shots: Input should be greater than or equal to 0"),
    ({"mmlu_ru": {"shot": 5}}, "evaluation.mmlu_ru.shot: Extra inputs are not permitted"),
    ({"mt_bench": {"judge": "api:gpt-4"}}, "evaluation.mt_bench.questions: Field required"),
    ({"mt_bench": {"questions": "q", "judge": "gpt-4"}},
     "evaluation.mt_bench.judge: 'gpt-4': expected local:<model folder> or api:<model name>"),
    ({"mt_bench": {"questions": "q", "batch_size": 0}},
     "evaluation.mt_bench.batch_size: Input should be greater than or equal to 1"),
])
def test_errors_name_the_field(tmp_path, evaluation, expected):
    assert expected in error(tmp_path, evaluation)


def test_a_key_pasted_as_the_variable_name_is_refused_without_echo(tmp_path):
    message = error(tmp_path, {"mt_bench": {"questions": "q", "api_key_env": "sk-live-SECRET123"}})
    assert "evaluation.mt_bench.api_key_env: must be the name of an environment variable" in message
    assert "SECRET123" not in message


def test_evaluation_needs_a_training_matrix(tmp_path):
    p = tmp_path / "p.yaml"
    p.write_text(yaml.safe_dump({"name": "t", "data": BASE["data"], "evaluation": {"mmlu_en": {}}}))
    with pytest.raises(ConfigError, match="evaluation: evaluates the fine-tuned models of `training`"):
        load_config(p)


def test_the_profiles_configure_evaluation():
    tiny = load_config(REPO / "configs" / "tiny.yaml").evaluation
    assert tiny is not None and tiny.benchmarks() == ["mt_bench", "mmlu_en", "mmlu_ru"]
    assert tiny.mt_bench.judge_kind == "local"
    assert tiny.mmlu_en.data and tiny.mmlu_ru.data  # the project's fixtures, offline
    paper = load_config(REPO / "configs" / "paper.yaml").evaluation
    assert paper.mmlu_en.data is None and paper.mmlu_ru.data is None  # the hub
    assert paper.mmlu_en.shots == paper.mmlu_ru.shots == 5
    assert paper.mt_bench.judge == "api:gpt-4" and paper.mt_bench.api_key_env == "OPENAI_API_KEY"
