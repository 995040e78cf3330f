"""`ruinstruct eval mt-bench`: a run on a tiny model with the local judge prints the scores and
writes FastChat's files; with the API judge the key planted in the environment shows nowhere, not
even when the server echoes it in a refusal; expected errors are one line with exit 2."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ruinstruct.evaluate.mt_bench import fixture_judge_prompts_ru, fixture_questions
from tests.flows.test_cli import run_cli
from tests.unit.test_judge import KEY, ChatServer, reply
from tests.unit.test_mt_bench import make_chat_model

NO_KEY = {"RUINSTRUCT_JUDGE_API_KEY": "", "OPENAI_API_KEY": "", "RUINSTRUCT_JUDGE_API_BASE": ""}


@pytest.fixture(scope="module")
def model(tiny_dir, tmp_path_factory) -> Path:
    return make_chat_model(tiny_dir / "llama", tmp_path_factory.mktemp("m") / "tiny-llama-lora", "lora")


def test_local_judge_run_prints_scores_and_writes_fastchat_files(model, tiny_dir, tmp_path):
    res = run_cli("eval", "mt-bench", "--model", model, "--questions", fixture_questions(), "--judge",
                  f"local:{tiny_dir / 'gpt2'}", "--output", "out", "--judge-prompts", fixture_judge_prompts_ru(),
                  "--max-new-tokens", "6", "--batch-size", "16", "--model-id", "mine", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    scores = json.loads(res.stdout[: res.stdout.rindex("}") + 1])
    assert set(scores) == {"turn1", "turn2", "average", "judged", "excluded"}
    assert scores["judged"] == 32 and scores["excluded"] == 0 and 1 <= scores["average"] <= 10
    assert res.stdout.rstrip().endswith("output: out")
    assert (tmp_path / "out/model_answer/mine.jsonl").is_file()
    rows = (tmp_path / "out/model_judgment/local-gpt2_single.jsonl").read_text().splitlines()
    assert len(rows) == 32 and {json.loads(r)["model"] for r in rows} == {"mine"}


def test_api_judge_key_from_the_environment_shows_nowhere(model, tmp_path):
    with ChatServer(default=reply("ok [[8]]")) as server:
        server.script = [(503, b"ECHO", {}, 0.0)]  # retried (its body, echoing the key, is logged redacted)
        env = {"RUINSTRUCT_JUDGE_API_KEY": KEY, "RUINSTRUCT_JUDGE_API_BASE": server.base}
        ok = run_cli("eval", "mt-bench", "--model", model, "--questions", fixture_questions(), "--judge",
                     "api:gpt-4", "--output", "out", "--max-new-tokens", "4", "--batch-size", "16", cwd=tmp_path,
                     env=env)
        assert ok.returncode == 0, ok.stderr
        assert json.loads(ok.stdout[: ok.stdout.rindex("}") + 1])["average"] == 8
        server.default = (401, b"ECHO", {}, 0.0)
        refused = run_cli("eval", "mt-bench", "--model", model, "--questions", fixture_questions(), "--judge",
                          "api:gpt-4o", "--output", "out", "--max-new-tokens", "4", cwd=tmp_path, env=env)
    assert refused.returncode == 2
    assert refused.stderr.strip().splitlines()[-1].startswith("api judge gpt-4o at http://127.0.0.1:")
    assert "HTTP 401" in refused.stderr and "Bearer ***" in refused.stderr and "Traceback" not in refused.stderr
    texts = [ok.stdout, ok.stderr, refused.stdout, refused.stderr]
    texts += [p.read_text() for p in (tmp_path / "out").rglob("*") if p.is_file()]
    assert [t[:80] for t in texts if KEY in t] == []
    assert len(server.requests) == 33 + 1 and all(h["Authorization"] == f"Bearer {KEY}" for h, _ in server.requests)


@pytest.mark.parametrize("args,message", [
    (["--questions", "nope.jsonl"], "--questions nope.jsonl: no such file"),
    (["--judge", "gpt-4"], "--judge gpt-4: expected local:<model dir> or api:<model name>"),
    (["--judge", "local:./no-judge"], "--judge local:./no-judge: ./no-judge: model folder not found"),
    (["--judge", "api:gpt-4"], "api judge gpt-4: no API key for https://api.openai.com/v1 (set RUINSTRUCT_JUDGE_API_KEY or OPENAI_API_KEY"),
    (["--max-new-tokens", "0"], "--max-new-tokens 0: must be 1 or more"),
    (["--model", "./no-model"], "--model no-model: no such folder"),
    (["--questions", "badq.jsonl"], "badq.jsonl:2: turns must be a list of one or two non-empty strings"),
    (["--judge-prompts", "badp.jsonl"], "badp.jsonl:1: not a JSON object"),
])
def test_expected_errors_are_one_line_exit_2(model, tmp_path, args, message):
    (tmp_path / "badq.jsonl").write_text('{"question_id": 1, "category": "x", "turns": ["a"]}\n'
                                         '{"question_id": 2, "category": "x", "turns": "one"}\n')
    (tmp_path / "badp.jsonl").write_text("[1]\n")
    base = {"--model": str(model), "--questions": str(fixture_questions()), "--judge": "api:gpt-4",
            "--output": "out"}
    base.update(dict(zip(args[::2], args[1::2], strict=True)))
    if "--judge" not in args:
        base["--judge"] = "local:" + str(model)
    res = run_cli("eval", "mt-bench", *[x for kv in base.items() for x in kv], cwd=tmp_path, env=NO_KEY)
    assert res.returncode == 2, res.stderr
    assert res.stderr.strip() == message or (res.stderr.strip().startswith(message) and "\n" not in res.stderr.strip())
    assert not (tmp_path / "out").exists()
