"""`ruinstruct eval mmlu` as a user runs it: OUT.json with the scores printed, a rerun that resumes,
and expected errors as one line with exit code 2."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ruinstruct.io import read_json, read_jsonl
from tests.flows.test_cli import run_cli

REPO = Path(__file__).resolve().parents[2]
FIXTURES = REPO / "src" / "ruinstruct" / "resources" / "fixtures"
ONE_THREAD = {"OMP_NUM_THREADS": "1"}  # the tiny model on a shared 2-core machine


def test_eval_mmlu_writes_scores_and_resumes(tiny_dir, tmp_path):
    out = tmp_path / "eval" / "mmlu_ru.json"
    args = ("eval", "mmlu", "--model", tiny_dir / "llama", "--data", FIXTURES / "mmlu_ru", "--lang", "ru",
            "--shots", 2, "--output", out, "--batch-size", 3, "--subjects", "nutrition,philosophy", "--limit", 3)
    res = run_cli(*args, cwd=tmp_path, env=ONE_THREAD)
    assert res.returncode == 0, res.stderr
    printed = json.loads(res.stdout[res.stdout.index("{"): res.stdout.rindex("}") + 1])
    doc = read_json(out)
    assert printed["questions"] == doc["scores"]["questions"] == 6
    assert printed["headline"] == doc["scores"]["category_mean"]
    assert sorted((q["subject"], q["index"]) for q in doc["questions"]) == [
        ("nutrition", 0), ("nutrition", 1), ("nutrition", 2), ("philosophy", 0), ("philosophy", 1), ("philosophy", 2)]
    assert {q["shots"] for q in doc["questions"]} == {2}
    progress = read_jsonl(out.parent / "mmlu_ru.progress.jsonl")
    assert [p.get("subject") for p in progress] == [None, "nutrition", "philosophy"]

    again = run_cli(*args, cwd=tmp_path, env=ONE_THREAD)  # everything done: the same scores
    assert again.returncode == 0, again.stderr
    assert read_json(out)["scores"] == doc["scores"]


@pytest.mark.parametrize(("extra", "message"), [
    (["--lang", "de"], "--lang de: expected en or ru"),
    (["--shots", "-1"], "--shots -1: must be 0 or more"),
    (["--data", "{tmp}/nope"], "--data {tmp}/nope: no such folder"),
    (["--model", "{tmp}/nope"], "--model {tmp}/nope: no such folder"),
    (["--model", "{tmp}"], "not a model folder or hub id (the folder has no config.json)"),
    (["--subjects", "anatomy,nutrition"], "--subjects anatomy: not in"),
    (["--lang", "ru"], "no MMLU RU test files"),
    (["--output", "{tmp}"], "a folder; give the JSON file to write"),
])
def test_eval_mmlu_errors_are_one_line(tiny_dir, tmp_path, extra, message):
    opts = {"--model": str(tiny_dir / "llama"), "--data": str(FIXTURES / "mmlu_en"), "--lang": "en",
            "--output": str(tmp_path / "o.json")}
    for i in range(0, len(extra), 2):
        opts[extra[i]] = extra[i + 1].format(tmp=tmp_path)
    res = run_cli("eval", "mmlu", *[x for kv in opts.items() for x in kv], cwd=tmp_path)
    assert res.returncode == 2, res.stderr
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in res.stderr, res.stderr
    assert message.format(tmp=tmp_path) in lines[0]
    assert not (tmp_path / "o.json").exists()
