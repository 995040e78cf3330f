"""MT-Bench: questions read strictly, answers generated in batches (left padding) equal to one at a
time, seeded sampling, turn 2 carries turn 1 and its answer, files in FastChat's schema read by
loaders written like FastChat's, scores as show_result computes them, and a run with the API
judge that never shows the key and pays nothing twice."""

from __future__ import annotations

import glob
import json
import logging
import os
import re
import shutil
from collections import Counter
from pathlib import Path

import pytest

from ruinstruct.errors import UserError
from ruinstruct.evaluate import mt_bench
from ruinstruct.evaluate.judge import NEED_REF_CATEGORIES, load_judge_prompts
from ruinstruct.evaluate.mt_bench import (
    CATEGORIES,
    fixture_judge_prompts_ru,
    fixture_questions,
    generate_answers,
    judge_requests,
    load_questions,
    load_references,
    resolve_references,
    run_mt_bench,
    scores,
)
from tests.unit.test_judge import KEY, ChatServer, reply

REPO = Path(__file__).resolve().parents[2]
SHARED = REPO.parent / "shared" / "data" / "mt_bench"
CYRILLIC = re.compile(r"[А-Яа-яЁё]")
ANSWER_FIELDS = {"question_id", "answer_id", "model_id", "choices", "tstamp"}
JUDGMENT_FIELDS = {"question_id", "model", "judge", "user_prompt", "judgment", "score", "turn", "tstamp"}


def make_chat_model(src: Path, dst: Path, kind: str) -> Path:
    """A copy of a tiny model whose tokenizer carries one of the paper's templates, as a trained
    folder's does."""
    from transformers import AutoTokenizer

    from ruinstruct.chat import install_template

    shutil.copytree(src, dst)
    install_template(AutoTokenizer.from_pretrained(dst), kind).save_pretrained(dst)
    return dst


@pytest.fixture(scope="module")
def chat_models(tiny_dir, tmp_path_factory):
    root = tmp_path_factory.mktemp("chat")
    return {"llama": make_chat_model(tiny_dir / "llama", root / "tiny-llama-lora", "lora"),
            "xglm": make_chat_model(tiny_dir / "xglm", root / "tiny-xglm-full", "full")}


@pytest.fixture(scope="module")
def questions():
    return load_questions(fixture_questions())


def load(path):
    from ruinstruct.evaluate.load import load_for_eval

    return load_for_eval(path, padding_side="left")


# ---------------------------------------------------------------------------------------------
# inputs


def test_fixture_set_has_every_category_in_russian_with_references(questions):
    assert len(questions) == 16
    assert Counter(q["category"] for q in questions) == {c: 2 for c in CATEGORIES}
    assert all(len(q["turns"]) == 2 and all(CYRILLIC.search(t) for t in q["turns"]) for q in questions)
    refs = resolve_references(questions)
    assert sorted(refs) == sorted(q["question_id"] for q in questions if q["category"] in NEED_REF_CATEGORIES)
    assert all(len(r) == 2 for r in refs.values()) and len(refs) == 6
    assert load_judge_prompts(fixture_judge_prompts_ru())["single-v1"]["system_prompt"] == "Вы полезный ассистент."


@pytest.mark.parametrize("line,message", [
    ('{"question_id": 1, "category": "math", "turns": []}', "turns must be a list of one or two"),
    ('{"question_id": 1, "category": "math", "turns": ["a", "b", "c"]}', "turns must be a list of one or two"),
    ('{"question_id": 1.5, "category": "math", "turns": ["a"]}', "question_id must be"),
    ('{"question_id": 1, "turns": ["a"]}', "category must be"),
    ('{"question_id": 1, "category": "math", "turns": ["a"], "reference": "x"}', "reference must be"),
    ("{not json", "malformed JSON line"),
    ("[1, 2]", "not a JSON object"),
])
def test_bad_question_lines_are_errors_naming_file_line_and_field(tmp_path, line, message):
    f = tmp_path / "q.jsonl"
    f.write_text('{"question_id": 0, "category": "stem", "turns": ["ok"]}\n' + line + "\n")
    with pytest.raises(UserError, match=rf"q\.jsonl:2: {message}"):
        load_questions(f)


def test_duplicate_ids_missing_files_and_missing_references(tmp_path):
    f = tmp_path / "q.jsonl"
    f.write_text('{"question_id": 3, "category": "stem", "turns": ["a"]}\n' * 2)
    with pytest.raises(UserError, match=r"q\.jsonl:2: question_id 3 already on line 1"):
        load_questions(f)
    with pytest.raises(UserError, match="question file not found"):
        load_questions(tmp_path / "none.jsonl")
    qs = [{"question_id": 1, "category": "math", "turns": ["a", "b"]},
          {"question_id": 2, "category": "coding", "turns": ["a", "b"], "reference": ["only one"]},
          {"question_id": 3, "category": "writing", "turns": ["a", "b"]}]
    with pytest.raises(UserError, match=r"no reference answers for question\(s\) 1, 2 "):
        resolve_references(qs)
    # a FastChat reference answer file fills them, and wins over a question's own reference
    ref = tmp_path / "gpt-4.jsonl"
    ref.write_text("".join(json.dumps({"question_id": i, "answer_id": "x", "model_id": "gpt-4", "choices": [
        {"index": 0, "turns": [f"r{i}a", f"r{i}b"]}], "tstamp": 0.0}) + "\n" for i in (1, 2)))
    assert resolve_references(qs, load_references(ref)) == {1: ["r1a", "r1b"], 2: ["r2a", "r2b"]}


# ---------------------------------------------------------------------------------------------
# answers


@pytest.mark.parametrize("family", ["llama", "xglm"])
def test_batched_greedy_answers_equal_one_at_a_time(chat_models, questions, family):
    model, tok = load(chat_models[family])
    qs = questions[::3]  # 6 questions of different lengths, one with a single turn below
    qs = [*qs[:-1], {**qs[-1], "turns": qs[-1]["turns"][:1]}]
    batched = generate_answers(model, tok, qs, max_new_tokens=10, batch_size=4, do_sample=False)
    single = generate_answers(model, tok, qs, max_new_tokens=10, batch_size=1, do_sample=False)
    assert batched == single
    assert [len(a) for a in batched] == [2, 2, 2, 2, 2, 1]
    assert sum(bool(t) for a in batched for t in a) >= 6  # mostly text, not empty strings


def test_sampling_is_seeded(chat_models, questions):
    model, tok = load(chat_models["llama"])
    qs = questions[:4]
    a = generate_answers(model, tok, qs, max_new_tokens=8, batch_size=2, seed=1)
    b = generate_answers(model, tok, qs, max_new_tokens=8, batch_size=2, seed=1)
    c = generate_answers(model, tok, qs, max_new_tokens=8, batch_size=2, seed=2)
    greedy = generate_answers(model, tok, qs, max_new_tokens=8, batch_size=2, do_sample=False)
    assert a == b
    assert a != c and a != greedy  # the seed and the sampling both matter


def test_second_turn_prompt_holds_the_first_turn_and_its_answer(chat_models, questions, monkeypatch):
    model, tok = load(chat_models["llama"])
    seen: list[tuple[list[dict], str]] = []
    real = mt_bench.render_prompt

    def spy(tokenizer, messages):
        ids = real(tokenizer, messages)
        seen.append((messages, tokenizer.decode(ids)))
        return ids

    monkeypatch.setattr(mt_bench, "render_prompt", spy)
    qs = questions[:3]
    answers = generate_answers(model, tok, qs, max_new_tokens=6, batch_size=3, do_sample=False)
    assert len(seen) == 6
    for q, a, (messages, text) in zip(qs, answers, seen[3:], strict=True):
        assert messages == [{"role": "user", "content": q["turns"][0]}, {"role": "assistant", "content": a[0]},
                            {"role": "user", "content": q["turns"][1]}]
        # the paper's LoRA template, rendered: turn 1, its answer, turn 2, then the bot header
        assert text.endswith(f"<s> user\n{q['turns'][0]} </s>\n<s> bot\n{a[0]} </s>\n"
                             f"<s> user\n{q['turns'][1]} </s>\n<s> bot\n")
    for q, (messages, text) in zip(qs, seen[:3], strict=True):
        assert messages == [{"role": "user", "content": q["turns"][0]}] and q["turns"][1] not in text


def test_prompts_longer_than_the_context_keep_their_last_tokens(chat_models, questions):
    model, tok = load(chat_models["xglm"])
    tok.model_max_length = 48
    stats: dict = {}
    answers = generate_answers(model, tok, questions[:4], max_new_tokens=8, batch_size=4, do_sample=False,
                               stats=stats)
    assert stats["truncated_prompts"] >= 4 and len(answers) == 4
    with pytest.raises(UserError, match="leaves no room"):
        generate_answers(model, tok, questions[:1], max_new_tokens=48, batch_size=1)


def test_a_model_without_chat_template_is_one_error(tiny_dir, questions):
    model, tok = load(tiny_dir / "llama")
    with pytest.raises(UserError, match="has no chat template"):
        generate_answers(model, tok, questions[:1], max_new_tokens=4, batch_size=1)


# ---------------------------------------------------------------------------------------------
# files and scores


def fastchat_load_model_answers(answer_dir):
    """Written like FastChat's common.load_model_answers."""
    out = {}
    for filename in sorted(glob.glob(os.path.join(answer_dir, "*.jsonl"))):
        name = os.path.basename(filename)[:-6]
        out[name] = {}
        with open(filename) as fin:
            for line in fin:
                line = json.loads(line)
                out[name][line["question_id"]] = line
    return out


def fastchat_load_single_model_judgments(filename):
    """Written like FastChat's common.load_single_model_judgments."""
    judge_dict = {}
    for line in open(filename):
        obj = json.loads(line)
        judge = tuple(obj["judge"])
        judge_dict.setdefault(judge, {})[(obj["question_id"], obj["model"])] = {
            "score": obj["score"], "judgment": obj["judgment"]}
    return judge_dict


def show_result_single(filename):
    """show_result.py's display_result_single, as numbers: turn 1, turn 2 and average per model."""
    import pandas as pd

    df = pd.read_json(filename, lines=True)[["model", "score", "turn"]]
    df = df[df["score"] != -1]
    t1 = df[df["turn"] == 1].groupby(["model", "turn"]).mean()
    t2 = df[df["turn"] == 2].groupby(["model", "turn"]).mean()
    avg = df[["model", "score"]].groupby(["model"]).mean()
    return {m: (t1.loc[(m, 1), "score"], t2.loc[(m, 2), "score"], avg.loc[m, "score"]) for m in avg.index}


def test_run_writes_fastchat_files_that_fastchat_loaders_read(chat_models, tiny_dir, tmp_path, questions):
    out = tmp_path / "mt"
    res = run_mt_bench(chat_models["xglm"], fixture_questions(), f"local:{tiny_dir / 'llama'}", out,
                       judge_prompts=fixture_judge_prompts_ru(), max_new_tokens=8, batch_size=8)
    assert set(res) == {"turn1", "turn2", "average", "judged", "excluded"}
    assert res["judged"] + res["excluded"] == 32 and res["excluded"] == 0
    assert all(1 <= res[k] <= 10 for k in ("turn1", "turn2", "average"))

    answers = fastchat_load_model_answers(out / "model_answer")
    assert list(answers) == ["tiny-xglm-full"]
    rows = answers["tiny-xglm-full"]
    assert sorted(rows) == sorted(q["question_id"] for q in questions)
    for row in rows.values():
        assert set(row) == ANSWER_FIELDS and row["model_id"] == "tiny-xglm-full"
        assert [set(c) for c in row["choices"]] == [{"index", "turns"}] and row["choices"][0]["index"] == 0
        assert len(row["choices"][0]["turns"]) == 2 and isinstance(row["tstamp"], float)

    jfile = out / "model_judgment" / "local-llama_single.jsonl"
    raw = [json.loads(line) for line in jfile.read_text().splitlines()]
    assert all(set(r) == JUDGMENT_FIELDS for r in raw) and len(raw) == 32
    judgments = fastchat_load_single_model_judgments(jfile)
    cats = {q["question_id"]: q["category"] for q in questions}
    # FastChat's resolve_single_judgment_dict: which prompt judged which question and turn
    for q in questions:
        ref = q["category"] in NEED_REF_CATEGORIES
        t1 = ("local-llama", "single-math-v1" if ref else "single-v1")
        t2 = ("local-llama", "single-math-v1-multi-turn" if ref else "single-v1-multi-turn")
        assert (q["question_id"], "tiny-xglm-full") in judgments[t1]
        assert (q["question_id"], "tiny-xglm-full") in judgments[t2]
    assert sum(len(v) for v in judgments.values()) == 32
    for r in raw:
        if cats[r["question_id"]] in NEED_REF_CATEGORIES:
            ref = next(q["reference"] for q in questions if q["question_id"] == r["question_id"])
            assert ref[0] in r["user_prompt"]
        if r["turn"] == 2:
            a1 = rows[r["question_id"]]["choices"][0]["turns"][0]
            assert a1 in r["user_prompt"] and "### Ассистент A:" in r["user_prompt"]

    t1, t2, avg = show_result_single(jfile)["tiny-xglm-full"]
    assert (res["turn1"], res["turn2"], res["average"]) == pytest.approx((t1, t2, avg), abs=1e-4)
    summary = json.loads((out / "scores.json").read_text())
    assert summary["turn1"] == res["turn1"] and set(summary["by_category"]) == set(CATEGORIES)

    # a second model into the same folder: FastChat's habit of one judgment file for many models
    run_mt_bench(chat_models["llama"], fixture_questions(), f"local:{tiny_dir / 'llama'}", out,
                 judge_prompts=fixture_judge_prompts_ru(), max_new_tokens=8, batch_size=8, model_id="second")
    assert set(fastchat_load_model_answers(out / "model_answer")) == {"tiny-xglm-full", "second"}
    assert set(show_result_single(jfile)) == {"tiny-xglm-full", "second"}
    assert len(jfile.read_text().splitlines()) == 64


def test_scores_exclude_minus_one_and_count_it():
    rows = [{"question_id": 1, "turn": 1, "score": 8}, {"question_id": 2, "turn": 1, "score": -1},
            {"question_id": 1, "turn": 2, "score": 4}, {"question_id": 2, "turn": 2, "score": 5},
            {"question_id": 3, "turn": 1, "score": 6}]
    assert scores(rows) == {"turn1": 7.0, "turn2": 4.5, "average": 5.75, "judged": 4, "excluded": 1}
    assert scores(rows, {1: "math", 2: "stem", 3: "math"})["by_category"] == {"math": 6.0, "stem": 5.0}
    assert scores([{"question_id": 1, "turn": 1, "score": -1}])["average"] is None


def test_api_judge_run_hides_the_key_and_a_rerun_pays_nothing(chat_models, tmp_path, monkeypatch, caplog, capsys):
    monkeypatch.setenv("RUINSTRUCT_JUDGE_API_KEY", KEY)
    caplog.set_level(logging.DEBUG)
    out = tmp_path / "mt"
    with ChatServer(default=reply("Хороший ответ. Оценка: [[7]]")) as server:
        # a 500 that echoes the Authorization header, and a reply that quotes it
        server.script = [(500, b"ECHO", {}, 0.0), reply(f"key {KEY}? Rating: [[3]]")]
        monkeypatch.setenv("RUINSTRUCT_JUDGE_API_BASE", server.base)
        res = run_mt_bench(chat_models["llama"], fixture_questions(), "api:gpt-4", out, max_new_tokens=6,
                           batch_size=16, judge_options={"backoff": 0.01})
        assert res == {"turn1": pytest.approx((3 + 7 * 15) / 16, abs=1e-4), "turn2": 7.0,
                       "average": pytest.approx((3 + 7 * 31) / 32, abs=1e-4), "judged": 32, "excluded": 0}
        assert len(server.requests) == 33
        assert {h["Authorization"] for h, _ in server.requests} == {f"Bearer {KEY}"}
        again = run_mt_bench(chat_models["llama"], fixture_questions(), "api:gpt-4", out, max_new_tokens=6,
                             batch_size=16)
        assert again == res and len(server.requests) == 33  # every verdict from the cache
    assert (out / "model_judgment" / "gpt-4_single.jsonl").is_file()
    files = [p for p in out.rglob("*") if p.is_file()]
    assert len(files) == 4  # answers, judgments, scores, cache
    leaks = [str(p) for p in files if KEY in p.read_text()]
    leaks += [t[:80] for t in (caplog.text, *capsys.readouterr()) if KEY in t]
    assert leaks == []
    assert any("HTTP 500" in r.getMessage() and "***" in r.getMessage() for r in caplog.records)


@pytest.mark.skipif(not SHARED.is_dir(), reason="shared/data is absent")
def test_real_mt_bench_ru_files_build_every_judge_prompt():
    qs = load_questions(SHARED / "question_ru_dmitrymailk.jsonl")
    assert len(qs) == 80 and Counter(q["category"] for q in qs) == {c: 10 for c in CATEGORIES}
    refs = resolve_references(qs, load_references(SHARED / "reference_answer_gpt-4.jsonl"))
    assert len(refs) == 30
    prompts = load_judge_prompts(SHARED / "judge_prompts_ru_dmitrymailk.jsonl")
    reqs = judge_requests(qs, [["ответ один", "ответ два"]] * 80, prompts, refs)
    assert len(reqs) == 160 and Counter(r.prompt_name for r in reqs) == {
        "single-v1": 50, "single-math-v1": 30, "single-v1-multi-turn": 50, "single-math-v1-multi-turn": 30}
    assert all("ответ один" in r.user_prompt for r in reqs)
    assert all(refs[r.question_id][1] in r.user_prompt for r in reqs if r.prompt_name == "single-math-v1-multi-turn")
