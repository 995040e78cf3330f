"""`ruinstruct chat render` as a user runs it: one row per rendered dialog, rejects beside the output
with reasons (invalid records and context-policy drops), counts that add up, one-line errors."""

from __future__ import annotations

import json

import pytest

from ruinstruct import chat
from ruinstruct.io import read_jsonl, write_jsonl
from ruinstruct.schema import make_dialog
from tests.flows.test_cli import run_cli

ONE = [{"role": "user", "content": "How do I boil an egg?"},
       {"role": "assistant", "content": "Ten minutes in boiling water."}]
MULTI = [{"role": "user", "content": "Привет!"}, {"role": "assistant", "content": "Здравствуйте."},
         {"role": "user", "content": "Как дела?"}, {"role": "assistant", "content": "Хорошо."}]
LONG_FIRST = [{"role": "user", "content": "слово " * 60}, {"role": "assistant", "content": "Да."}]


def dialog(i: int, messages: list[dict]) -> dict:
    return make_dialog(id=f"local/t:{i}", source="local/t", license="MIT", lang="ru", messages=messages)


@pytest.fixture
def dialogs_file(tmp_path):
    p = tmp_path / "dialogs.jsonl"
    write_jsonl(p, [dialog(0, ONE), dialog(1, MULTI), dialog(2, LONG_FIRST)])
    with p.open("a") as f:
        f.write("{not json\n")
        f.write(json.dumps({**dialog(3, ONE), "messages": ONE[:1]}) + "\n")  # no answer
    return p


@pytest.fixture(scope="module")
def llama_tok(tiny_dir):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_dir / "llama")


def summary(stdout: str) -> dict:
    return json.loads(stdout[stdout.index("{"): stdout.rindex("}") + 1])


@pytest.mark.parametrize("policy", ["drop", "truncate"])
def test_render_lora_with_context_policy(tmp_path, tiny_dir, dialogs_file, llama_tok, policy):
    limit = len(chat.render(llama_tok, MULTI, "lora")["input_ids"]) - 1
    out = tmp_path / "out" / "rendered.jsonl"
    res = run_cli("chat", "render", "--model", tiny_dir / "llama", "--template", "lora", "--input", dialogs_file,
                  "--output", out, "--max-length", limit, "--policy", policy, cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    s = summary(res.stdout)
    truncated = 1 if policy == "truncate" else 0
    keys = ("input", "invalid", "dialogs", "kept", "truncated", "dropped", "special_tokens", "rows", "rejected")
    assert {k: s[k] for k in keys} == {
        "input": 5, "invalid": 2, "dialogs": 3, "kept": 1, "truncated": truncated, "dropped": 2 - truncated,
        "special_tokens": 0, "rows": 1 + truncated, "rejected": 4 - truncated}
    assert s["input"] == s["dialogs"] + s["invalid"] == s["rows"] + s["rejected"]
    assert (s["max_length"], s["policy"], s["template"]) == (limit, policy, "lora")

    rows = read_jsonl(out)
    expected = [("local/t:0", ONE)] + ([("local/t:1", MULTI[:2])] if truncated else [])
    assert [r["id"] for r in rows] == [i for i, _ in expected]
    for row, (_, messages) in zip(rows, expected, strict=True):
        assert {k: row[k] for k in ("text", "input_ids", "labels")} == chat.render(llama_tok, messages, "lora")
        assert row["labels"][-1] == llama_tok.eos_token_id and row["labels"][0] == -100

    rejects = read_jsonl(out.parent / "rendered.rejects.jsonl")
    assert len(rejects) == s["rejected"]
    reasons = [r["reasons"][0] for r in rejects]
    assert reasons[0] == "malformed JSON line"
    assert "needs at least one user and one assistant message" in rejects[1]["reasons"]
    too_long = [(r["id"], r["reasons"]) for r in rejects[2:]]
    if policy == "drop":
        assert too_long == [("local/t:1", [f"longer than the context ({limit} tokens)"]),
                            ("local/t:2", [f"longer than the context ({limit} tokens)"])]
    else:
        assert too_long == [("local/t:2", [f"first turn longer than the context ({limit} tokens)"])]


def test_render_full_defaults_to_the_tokenizer_context(tmp_path, tiny_dir, dialogs_file, llama_tok):
    out = tmp_path / "full.jsonl"
    res = run_cli("chat", "render", "--model", tiny_dir / "gpt2", "--template", "full", "--input", dialogs_file,
                  "--output", out, cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    s = summary(res.stdout)
    assert (s["dialogs"], s["kept"], s["truncated"], s["dropped"], s["rows"], s["rejected"]) == (3, 3, 0, 0, 3, 2)
    assert s["max_length"] == llama_tok.model_max_length == 2048
    rows = read_jsonl(out)
    assert [r["id"] for r in rows] == ["local/t:0", "local/t:1", "local/t:2"]
    assert all(r["labels"] == r["input_ids"] for r in rows)
    assert rows[0]["text"] == ("<s> Human:\nHow do I boil an egg?\nAssistant:\n"
                               "Ten minutes in boiling water. <|endoftext|>")


@pytest.mark.parametrize("args, named", [
    (["--model", "./no-such-model", "--template", "lora", "--input", "dialogs.jsonl"], "--model ./no-such-model"),
    (["--model", "MODEL", "--template", "lora", "--input", "./no-such.jsonl"], "--input ./no-such.jsonl"),
    (["--model", "MODEL", "--template", "chatml", "--input", "dialogs.jsonl"], "unknown template 'chatml'"),
], ids=["missing model", "missing input", "unknown template"])
def test_errors_are_one_line_with_exit_code_2(tmp_path, tiny_dir, dialogs_file, args, named):
    args = [str(tiny_dir / "llama") if a == "MODEL" else a for a in args]
    res = run_cli("chat", "render", *args, "--output", "o.jsonl", cwd=dialogs_file.parent)
    lines = [line for line in res.stderr.splitlines() if line.strip()]
    assert res.returncode == 2, res.stdout + res.stderr
    assert "Traceback" not in res.stderr + res.stdout
    assert len(lines) == 1 and named in lines[0], res.stderr
    assert not (dialogs_file.parent / "o.jsonl").exists()
