"""MMLU / MMLU RU: exact prompts, the one-pass letter scorer against an independent computation
(each letter's full-sequence log-likelihood as a continuation, one plain forward per option) on
tiny LLaMA and XGLM models at batch sizes 1 and 3, letter tokens when " A" is two tokens,
shot-dropping at a small context, OUT.json's schema and sums, rejects, and resume after a crash."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import pytest

from ruinstruct.errors import UserError
from ruinstruct.evaluate import mmlu
from ruinstruct.evaluate.mmlu import (
    LETTERS,
    SUBJECT_CATEGORY,
    SUBJECT_RU,
    SUBJECTS,
    build_prompt,
    compute_scores,
    encode_prompt,
    evaluate_mmlu,
    letter_tokens,
    load_subject,
    score_continuations,
    score_letters,
)
from ruinstruct.io import read_json, read_jsonl

REPO = Path(__file__).resolve().parents[2]
FIXTURES = REPO / "src" / "ruinstruct" / "resources" / "fixtures"
EN, RU = FIXTURES / "mmlu_en", FIXTURES / "mmlu_ru"
SHARED = REPO.parent / "shared" / "data"
FIXTURE_SUBJECTS = ["elementary_mathematics", "high_school_geography", "nutrition", "philosophy"]


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread():
    """Tiny models run ~15x faster on one thread than on two contended ones (this machine is shared)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def test_the_57_subjects_and_their_categories():
    assert len(SUBJECTS) == 57 == len(SUBJECT_RU)
    assert set(SUBJECT_RU) == set(SUBJECTS)
    counts = {c: sum(1 for s in SUBJECTS if SUBJECT_CATEGORY[s] == c) for c in mmlu.CATEGORIES}
    assert counts == {"STEM": 18, "humanities": 13, "social sciences": 12, "other": 14}
    assert SUBJECT_CATEGORY["anatomy"] == "other"  # the MMLU authors' grouping (lm-eval-harness: STEM)


def test_english_prompt_renders_exactly():
    d = load_subject(EN, "en", "philosophy")
    assert build_prompt("philosophy", d.dev[:2], d.test[1], "en") == (
        "The following are multiple choice questions (with answers) about philosophy.\n\n"
        "Who wrote the dialogue 'The Republic'?\nA. Aristotle\nB. Plato\nC. Kant\nD. Hume\nAnswer: B\n\n"
        "Which branch of philosophy studies knowledge?\nA. Ethics\nB. Aesthetics\nC. Epistemology\nD. Logic\n"
        "Answer: C\n\n"
        "Who wrote 'Critique of Pure Reason'?\nA. Hegel\nB. Marx\nC. Kant\nD. Mill\nAnswer:")
    # zero shots: the header, then the question
    assert build_prompt("high_school_geography", [], d.test[0], "en").startswith(
        "The following are multiple choice questions (with answers) about high school geography.\n\n"
        "The study of right and wrong conduct is called\nA. ethics\n")


def test_russian_prompt_renders_exactly():
    d = load_subject(RU, "ru", "high_school_geography")
    assert build_prompt("high_school_geography", d.dev[:2], d.test[0], "ru") == (
        "Ниже приведены вопросы с множественным выбором (с ответами) по географии в старшей школе.\n\n"
        "Какой океан самый большой?\nA. Атлантический\nB. Индийский\nC. Северный Ледовитый\nD. Тихий\n"
        "Ответ: D\n\n"
        "На каком континенте находится Египет?\nA. Африка\nB. Азия\nC. Европа\nD. Австралия\nОтвет: A\n\n"
        "Какая река самая длинная в Европе?\nA. Дунай\nB. Волга\nC. Луара\nD. Днепр\nОтвет:")


def test_fixture_sets_match_and_are_complete():
    for s in FIXTURE_SUBJECTS:
        en, ru = load_subject(EN, "en", s), load_subject(RU, "ru", s)
        assert (len(en.dev), len(en.test), en.rejects, ru.rejects) == (5, 4, [], [])
        assert [q.gold for q in en.dev + en.test] == [q.gold for q in ru.dev + ru.test]
        assert [q.index for q in en.test] == [0, 1, 2, 3]
    assert {SUBJECT_CATEGORY[s] for s in FIXTURE_SUBJECTS} == set(mmlu.CATEGORIES)


# ---------------------------------------------------------------------------------------------
# the scorer against the independent computation

def reference_logliks(model, tok, prompt: str) -> list[float]:
    """log P(" L" | prompt) for each letter: the whole text prompt + " L" tokenized and run alone
    (no padding, no batching), the continuation's token log-probs summed."""
    import torch

    ctx = tok(prompt)["input_ids"]
    out = []
    for letter in LETTERS:
        full = tok(f"{prompt} {letter}")["input_ids"]
        assert full[: len(ctx)] == ctx
        with torch.no_grad():
            logp = torch.log_softmax(model(input_ids=torch.tensor([full])).logits[0].float(), -1)
        out.append(sum(float(logp[i - 1, full[i]]) for i in range(len(ctx), len(full))))
    return out


def fixture_prompts(lang: str, shots: int = 2, per_subject: int = 2) -> list[str]:
    data = EN if lang == "en" else RU
    prompts = []
    for s in FIXTURE_SUBJECTS:
        d = load_subject(data, lang, s)
        prompts += [build_prompt(s, d.dev[:shots], q, lang) for q in d.test[:per_subject]]
    # different lengths in one batch: the same questions with other shot counts
    d = load_subject(data, lang, "nutrition")
    prompts += [build_prompt("nutrition", d.dev[:k], d.test[k % 4], lang) for k in (0, 1, 5)]
    return prompts


_REFERENCE: dict = {}


def reference_for(family: str, lang: str, model, tok) -> list[list[float]]:
    """reference_logliks of every fixture prompt, computed once per model and language."""
    if (family, lang) not in _REFERENCE:
        _REFERENCE[family, lang] = [reference_logliks(model, tok, p) for p in fixture_prompts(lang)]
    return _REFERENCE[family, lang]


@pytest.fixture(scope="module")
def models(tiny_dir):
    from ruinstruct.evaluate.load import load_for_eval

    return {name: load_for_eval(tiny_dir / name) for name in ("llama", "xglm")}


@pytest.mark.parametrize("family", ["llama", "xglm"])
@pytest.mark.parametrize("batch_size", [1, 3])
@pytest.mark.parametrize("lang", ["en", "ru"])
def test_one_pass_equals_four_continuations(models, family, batch_size, lang):
    model, tok = models[family]
    prompts = fixture_prompts(lang)
    letters = letter_tokens(tok, lang)
    # this tiny vocabulary has " A", " B", " C" but no " D" token: " D" is a bare space, then "D"
    assert letters.conts == tuple(tuple(tok(f" {x}", add_special_tokens=False)["input_ids"]) for x in LETTERS)
    assert [len(c) for c in letters.conts] == [1, 1, 1, 2] and letters.path == letters.conts[3][:1]
    inputs = [encode_prompt(tok, p, letters) for p in prompts]
    assert len({len(i) for i in inputs}) > 3  # padding is exercised
    probs = score_letters(model, tok, inputs, letters, batch_size=batch_size)
    for p, ll in zip(probs, reference_for(family, lang, model, tok), strict=True):
        want = [math.exp(x - max(ll)) for x in ll]
        want = [w / sum(want) for w in want]
        assert max(range(4), key=lambda j: p[j]) == max(range(4), key=lambda j: ll[j])
        assert p == pytest.approx(want, abs=2e-5)
    if batch_size == 3:  # the batched four-forward baseline (bench/eval.py times it): the same likelihoods
        batched = score_continuations(model, tok, prompts[-4:], batch_size=6)
        assert batched == [pytest.approx(ll, abs=1e-4) for ll in reference_for(family, lang, model, tok)[-4:]]


def char_tokenizer_and_model(merged: str):
    """A character-level tokenizer where the letters in `merged` have a " L" token and the others
    are a bare "▁" then "L", and a tiny random LLaMA over it."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    text = "".join(p for lang in ("en", "ru") for p in fixture_prompts(lang, 5, 4)) + "ABCD"
    vocab = {"<pad>": 0, "<s>": 1, "</s>": 2, "<unk>": 3, "▁": 4}
    for ch in sorted(set(text) - {" "}):
        vocab.setdefault(ch, len(vocab))
    for letter in merged:
        vocab[f"▁{letter}"] = len(vocab)
    core = Tokenizer(models.BPE(vocab=vocab, merges=[("▁", x) for x in merged], unk_token="<unk>"))
    core.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="never")
    core.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="never")
    tok = PreTrainedTokenizerFast(tokenizer_object=core, bos_token="<s>", eos_token="</s>", unk_token="<unk>",
                                  pad_token="<pad>")
    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=len(vocab), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                      num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=2048, pad_token_id=0)
    return LlamaForCausalLM(cfg).eval(), tok


@pytest.mark.parametrize("merged", ["", "ABCD", "AC"])
def test_letters_with_and_without_a_space_token(merged):
    model, tok = char_tokenizer_and_model(merged)
    letters = letter_tokens(tok, "ru")
    want = tuple((tok.convert_tokens_to_ids(f"▁{x}"),) if x in merged else (4, tok.convert_tokens_to_ids(x))
                 for x in LETTERS)
    assert letters.conts == want
    assert letters.path == ((4,) if merged != "ABCD" else ())
    prompts = fixture_prompts("ru", shots=1, per_subject=1)
    inputs = [encode_prompt(tok, p, letters) for p in prompts]
    probs = score_letters(model, tok, inputs, letters, batch_size=3)
    for prompt, p in zip(prompts, probs, strict=True):
        ll = reference_logliks(model, tok, prompt)
        want_p = [math.exp(x - max(ll)) for x in ll]
        assert p == pytest.approx([w / sum(want_p) for w in want_p], abs=2e-5)
        assert max(range(4), key=lambda j: p[j]) == max(range(4), key=lambda j: ll[j])


# ---------------------------------------------------------------------------------------------
# shot dropping

def small_context_model(tiny_dir, tmp_path, context: int) -> Path:
    """The tiny LLaMA with a position table of `context` tokens (RoPE: the weights do not change)."""
    dst = tmp_path / f"llama-{context}"
    shutil.copytree(tiny_dir / "llama", dst)
    cfg = json.loads((dst / "config.json").read_text())
    cfg["max_position_embeddings"] = context
    (dst / "config.json").write_text(json.dumps(cfg))
    tc = json.loads((dst / "tokenizer_config.json").read_text())
    tc["model_max_length"] = context
    (dst / "tokenizer_config.json").write_text(json.dumps(tc))
    return dst


def test_shots_are_dropped_from_the_end_until_the_prompt_fits(tiny_dir, tmp_path, models):
    _, tok = models["llama"]
    letters = letter_tokens(tok, "en")
    data = {s: load_subject(EN, "en", s) for s in FIXTURE_SUBJECTS}

    def length(s, k, q):
        return len(encode_prompt(tok, build_prompt(s, data[s].dev[:k], q, "en"), letters))

    five = sorted(length(s, 5, q) for s in FIXTURE_SUBJECTS for q in data[s].test)
    context = five[len(five) // 2]  # about half the questions lose shots
    want = {}
    for s in FIXTURE_SUBJECTS:
        for q in data[s].test:
            want[(s, q.index)] = max(k for k in range(6) if length(s, k, q) <= context)
    assert min(want.values()) < 5 and max(want.values()) == 5

    out = tmp_path / "small" / "mmlu_en.json"
    scores = evaluate_mmlu(small_context_model(tiny_dir, tmp_path, context), EN, "en", 5, out, batch_size=4)
    doc = read_json(out)
    got = {(r["subject"], r["index"]): r["shots"] for r in doc["questions"]}
    assert got == want
    assert scores["shots_dropped"] == sum(1 for k in want.values() if k < 5)
    assert doc["max_length"] == context and scores["too_long"] == 0 and scores["questions"] == 16
    # the kept shots are the first ones: the prompt is the k-shot prompt
    assert all(length(s, k, q) <= context for (s, i), k in want.items() for q in [data[s].test[i]])


def test_a_question_too_long_without_shots_is_rejected_and_counted(models, tmp_path, tiny_dir):
    _, tok = models["llama"]
    letters = letter_tokens(tok, "en")
    d = load_subject(EN, "en", "elementary_mathematics")
    bare = sorted(len(encode_prompt(tok, build_prompt("elementary_mathematics", [], q, "en"), letters)) for q in d.test)
    out = tmp_path / "m.json"
    scores = evaluate_mmlu(tiny_dir / "llama", EN, "en", 5, out, subjects=["elementary_mathematics"],
                           max_length=bare[1])  # only the two shortest fit, with no shot
    assert scores["too_long"] == 2 and scores["questions"] == 2 and scores["shots_dropped"] == 2
    rejects = read_jsonl(out.parent / "m.rejects.jsonl")
    assert len(rejects) == 2 and all(r["too_long"] and "longer than the context" in r["reasons"][0] for r in rejects)


# ---------------------------------------------------------------------------------------------
# OUT.json and scores

@pytest.mark.parametrize("lang", ["en", "ru"])
def test_out_json_schema_and_scores_add_up(tiny_dir, tmp_path, lang):
    data = EN if lang == "en" else RU
    out = tmp_path / f"mmlu_{lang}.json"
    calls = []
    scores = evaluate_mmlu(tiny_dir / "xglm", data, lang, 5, out, batch_size=3,
                           progress=lambda done, total: calls.append((done, total)))
    doc = read_json(out)
    assert doc["scores"] == scores
    assert {"model", "lang", "shots", "data", "scores", "questions", "subjects"} <= set(doc)
    assert (doc["lang"], doc["shots"], doc["subjects"]) == (lang, 5, FIXTURE_SUBJECTS)
    qs = doc["questions"]
    assert len(qs) == 16 == scores["questions"]
    assert calls[-1] == (16, 16)
    for r in qs:
        assert set(r) == {"subject", "index", "predicted", "gold", "probs", "shots"}
        assert r["predicted"] in LETTERS and r["gold"] in LETTERS and len(r["probs"]) == 4
        assert sum(r["probs"]) == pytest.approx(1, abs=1e-5)
        assert r["predicted"] == LETTERS[max(range(4), key=lambda j: r["probs"][j])]
    golds = {(s, q.index): q.gold for s in FIXTURE_SUBJECTS for q in load_subject(data, lang, s).test}
    assert {(r["subject"], r["index"]): r["gold"] for r in qs} == golds
    correct = sum(r["predicted"] == r["gold"] for r in qs)
    assert scores["correct"] == correct
    assert scores["micro"] == pytest.approx(100 * correct / 16, abs=1e-3)
    for s in FIXTURE_SUBJECTS:
        mine = [r for r in qs if r["subject"] == s]
        assert scores["by_subject"][s] == pytest.approx(100 * sum(r["predicted"] == r["gold"] for r in mine) / 4,
                                                        abs=1e-3)
    assert scores["category_mean"] == pytest.approx(sum(scores["by_category"].values()) / 4, abs=1e-3)
    assert scores["headline"] == (scores["category_mean"] if lang == "ru" else scores["micro"])
    assert not (tmp_path / f"mmlu_{lang}.rejects.jsonl").exists()


def test_category_scores_follow_each_benchmarks_authors():
    def rows(subject, right, wrong):
        return [{"subject": subject, "predicted": "A", "gold": "A"}] * right + \
               [{"subject": subject, "predicted": "B", "gold": "A"}] * wrong

    # STEM: 1/1 and 1/3 right; humanities 0/2
    recs = rows("astronomy", 1, 0) + rows("college_physics", 1, 2) + rows("philosophy", 0, 2)
    en, ru = compute_scores(recs, "en"), compute_scores(recs, "ru")
    assert en["by_category"] == {"STEM": 50.0, "humanities": 0.0}  # 2 of the category's 4 questions
    assert ru["by_category"] == {"STEM": pytest.approx(66.6667, abs=1e-3), "humanities": 0.0}  # (100 + 33.3) / 2
    assert en["micro"] == ru["micro"] == pytest.approx(100 * 2 / 6, abs=1e-3)
    assert en["headline"] == en["micro"] and ru["headline"] == ru["category_mean"] == pytest.approx(33.3333, abs=1e-3)


# ---------------------------------------------------------------------------------------------
# bad rows

def test_bad_rows_go_to_the_rejects_file_with_reasons(tiny_dir, tmp_path):
    en = tmp_path / "en"
    shutil.copytree(EN, en)
    test_csv = en / "test" / "nutrition_test.csv"
    test_csv.write_text(test_csv.read_text() + "Which is a fruit?,Apple,Stone,Glass,Iron,E\n"
                        "Only three choices?,One,Two,Three\n", encoding="utf-8")
    out = tmp_path / "out" / "en.json"
    scores = evaluate_mmlu(tiny_dir / "llama", en, "en", 2, out, subjects=["nutrition"])
    rejects = read_jsonl(tmp_path / "out" / "en.rejects.jsonl")
    assert [(r["index"], r["reasons"]) for r in rejects] == [
        (4, ["answer 'E' is not one of A, B, C, D"]),
        (5, ["expected 4 choices, got 3", "answer None is not one of A, B, C, D"])]
    assert rejects[0]["where"].endswith("nutrition_test.csv:5") and rejects[0]["row"][0] == "Which is a fruit?"
    assert scores["rejected"] == 2 and scores["questions"] == 4
    assert read_json(out)["rejects_file"] == str(tmp_path / "out" / "en.rejects.jsonl")

    ru = tmp_path / "ru"
    shutil.copytree(RU, ru)
    path = ru / "philosophy_test.jsonl"
    rows = read_jsonl(path)
    bad = [{**rows[0], "answer": 7}, {**rows[1], "choices_ru": rows[1]["choices_ru"][:3]}]
    path.write_text(path.read_text() + "".join(json.dumps(b, ensure_ascii=False) + "\n" for b in bad) + "{oops\n",
                    encoding="utf-8")
    d = load_subject(ru, "ru", "philosophy")
    assert len(d.test) == 4
    assert [(r["index"], r["reasons"]) for r in d.rejects] == [
        (4, ["answer 7 is not one of A, B, C, D"]), (5, ["expected 4 choices, got 3"]),
        (6, ["malformed JSON line"])]
    assert d.rejects[2]["raw"] == "{oops"


@pytest.mark.parametrize("split", ["dev", "test"])
def test_an_empty_file_is_an_error_naming_it(tmp_path, split):
    en = tmp_path / "en"
    shutil.copytree(EN, en)
    (en / split / f"philosophy_{split}.csv").write_text("", encoding="utf-8")
    with pytest.raises(UserError, match=rf"{split}/philosophy_{split}.csv: empty, no {split} questions for philosophy"):
        load_subject(en, "en", "philosophy")
    assert len(load_subject(en, "en", "nutrition").test) == 4


def test_unreadable_lines_are_rejected_with_their_own_reason(tmp_path):
    """A byte that is not UTF-8 in a CSV row, or a JSONL line that is not JSON, is that row's
    reject (with why), never a traceback for the whole file; the rejects stay writable JSON."""
    en = tmp_path / "en"
    shutil.copytree(EN, en)
    test_csv = en / "test" / "nutrition_test.csv"
    test_csv.write_bytes(b"\xef\xbb\xbf" + test_csv.read_bytes() + b"Bad \xff byte?,a,b,c,d,A\n")
    d = load_subject(en, "en", "nutrition")
    assert len(d.test) == 4 and not d.test[0].question.startswith("\ufeff")
    assert [(r["index"], r["reasons"], r["row"][0]) for r in d.rejects] == [
        (4, ["not UTF-8: byte 0xff"], "Bad \\xff byte?")]
    assert json.loads(json.dumps(d.rejects, ensure_ascii=False).encode("utf-8"))

    ru = tmp_path / "ru"
    shutil.copytree(RU, ru)
    path = ru / "philosophy_test.jsonl"
    path.write_bytes(path.read_bytes() + b"\xff\xfe\n[1, 2]\n")
    d = load_subject(ru, "ru", "philosophy")
    assert len(d.test) == 4
    assert [(r["index"], r["reasons"][0].split(":")[0], r["raw"]) for r in d.rejects] == [
        (4, "not UTF-8", "\\xff\\xfe"), (5, "not a JSON object", "[1, 2]")]


# ---------------------------------------------------------------------------------------------
# resume

def test_resume_scores_only_the_subjects_not_finished(tiny_dir, tmp_path, monkeypatch):
    out = tmp_path / "ru.json"
    subjects = ["nutrition", "philosophy", "elementary_mathematics"]
    seen = []
    real = mmlu.score_letters

    def crash_on_third(model, tok, inputs, letters, **kw):
        seen.append(len(inputs))
        if len(seen) == 3:
            raise KeyboardInterrupt  # the run is killed while scoring the third subject
        return real(model, tok, inputs, letters, **kw)

    monkeypatch.setattr(mmlu, "score_letters", crash_on_third)
    with pytest.raises(KeyboardInterrupt):
        evaluate_mmlu(tiny_dir / "llama", RU, "ru", 3, out, subjects=subjects)
    assert not out.exists()
    progress = read_jsonl(tmp_path / "ru.progress.jsonl")
    assert [p.get("subject") for p in progress[1:]] == ["nutrition", "philosophy"]

    seen.clear()
    monkeypatch.setattr(mmlu, "score_letters", lambda *a, **kw: seen.append(a[3]) or real(*a, **kw))
    resumed = evaluate_mmlu(tiny_dir / "llama", RU, "ru", 3, out, subjects=subjects)
    assert len(seen) == 1  # only elementary_mathematics was scored again

    fresh = evaluate_mmlu(tiny_dir / "llama", RU, "ru", 3, tmp_path / "fresh.json", subjects=subjects)
    assert resumed == fresh and resumed["questions"] == 12
    assert read_json(out)["questions"] == read_json(tmp_path / "fresh.json")["questions"]

    # all done: no model is loaded at all
    monkeypatch.setattr("ruinstruct.evaluate.load.load_for_eval", lambda *a, **k: pytest.fail("model loaded"))
    assert evaluate_mmlu(tiny_dir / "llama", RU, "ru", 3, out, subjects=subjects) == fresh


def test_other_settings_score_everything_again(tiny_dir, tmp_path, monkeypatch):
    out = tmp_path / "en.json"
    evaluate_mmlu(tiny_dir / "llama", EN, "en", 1, out, subjects=["nutrition"])
    seen = []
    real = mmlu.score_letters
    monkeypatch.setattr(mmlu, "score_letters", lambda *a, **kw: seen.append(1) or real(*a, **kw))
    evaluate_mmlu(tiny_dir / "llama", EN, "en", 2, out, subjects=["nutrition"])  # other shots
    assert seen == [1]
    assert {r["shots"] for r in read_json(out)["questions"]} == {2}


def test_a_retrained_model_at_the_same_path_is_scored_again(tiny_dir, tmp_path, monkeypatch):
    """New weights of the same size, at the same path, with the file times put back: the resume
    must see the content, not names, sizes or times."""
    import os

    import torch
    from transformers import AutoModelForCausalLM

    model = tmp_path / "model"
    shutil.copytree(tiny_dir / "llama", model)
    out = tmp_path / "en.json"
    evaluate_mmlu(model, EN, "en", 1, out, subjects=["nutrition"], limit=1)
    weights = next(model.glob("*.safetensors"))
    size, times = weights.stat().st_size, (weights.stat().st_atime_ns, weights.stat().st_mtime_ns)
    net = AutoModelForCausalLM.from_pretrained(model)
    with torch.no_grad():
        next(net.parameters()).add_(0.5)
    net.save_pretrained(model)
    os.utime(weights, ns=times)
    assert weights.stat().st_size == size

    seen = []
    real = mmlu.score_letters
    monkeypatch.setattr(mmlu, "score_letters", lambda *a, **kw: seen.append(1) or real(*a, **kw))
    evaluate_mmlu(model, EN, "en", 1, out, subjects=["nutrition"], limit=1)
    assert seen == [1]


# ---------------------------------------------------------------------------------------------
# errors and the real samples

def test_expected_errors_are_user_errors(tiny_dir, tmp_path):
    with pytest.raises(UserError, match="expected en or ru"):
        evaluate_mmlu(tiny_dir / "llama", EN, "de", 5, tmp_path / "o.json")
    with pytest.raises(UserError, match="no MMLU RU test files"):
        evaluate_mmlu(tiny_dir / "llama", EN, "ru", 5, tmp_path / "o.json")
    with pytest.raises(UserError, match="subjects anatomy: not in"):
        evaluate_mmlu(tiny_dir / "llama", EN, "en", 5, tmp_path / "o.json", subjects=["anatomy"])
    with pytest.raises(UserError, match="no such folder"):
        evaluate_mmlu(tiny_dir / "llama", tmp_path / "nope", "en", 5, tmp_path / "o.json")


def test_hub_rows_map_to_questions(monkeypatch):
    """cais/mmlu rows (question, choices, answer index) and the MMLU RU parquet export's rows
    (question_ru, choices_ru, answer index), as datasets yields them."""
    en = [{"question": "Q?", "subject": "anatomy", "choices": ["a", "b", "c", "d"], "answer": 2},
          {"question": "Q2?", "subject": "anatomy", "choices": ["a", "b", "c"], "answer": 0}]
    ru = [{"question_ru": "В?", "choices_ru": ["а", "б", "в", "г"], "answer": 3, "question_en": "Q?",
           "choices_en": ["a", "b", "c", "d"], "subject": "anatomy"}]
    monkeypatch.setattr(mmlu, "_hub_records", lambda lang, subject, split: en if lang == "en" else ru)
    d = load_subject(None, "en", "anatomy")
    assert [(q.question, q.choices, q.gold, q.index) for q in d.test] == [("Q?", ("a", "b", "c", "d"), "C", 0)]
    assert d.rejects[-1]["where"] == "cais/mmlu/anatomy/test[1]" and d.rejects[-1]["reasons"] == [
        "expected 4 choices, got 3"]
    d = load_subject(None, "ru", "anatomy")
    assert [(q.question, q.gold) for q in d.test] == [("В?", "D")] and d.rejects == []


def test_hub_unreachable_offline_is_one_user_error(tiny_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    with pytest.raises(UserError, match=r"^cais/mmlu \(anatomy, dev\): cannot load it from the hub .*--data"):
        evaluate_mmlu(tiny_dir / "llama", None, "en", 5, tmp_path / "o.json", subjects=["anatomy"])


def test_hub_parquet_export_address():
    assert mmlu.HUB_RU_PARQUET.format(subject="anatomy", split="test") == \
        "hf://datasets/NLPCoreTeam/mmlu_ru@refs%2Fconvert%2Fparquet/anatomy/mmlu_ru-test.parquet"


@pytest.mark.skipif(not (SHARED / "mmlu_en").is_dir() or not (SHARED / "mmlu_ru").is_dir(),
                    reason="../shared/data (real MMLU samples) is absent")
def test_real_samples_load_whole_and_agree():
    assert mmlu.local_subjects(SHARED / "mmlu_en", "en") == mmlu.local_subjects(SHARED / "mmlu_ru", "ru") == [
        "abstract_algebra", "high_school_geography", "world_religions"]
    for s, n in (("abstract_algebra", 100), ("high_school_geography", 198), ("world_religions", 171)):
        en, ru = load_subject(SHARED / "mmlu_en", "en", s), load_subject(SHARED / "mmlu_ru", "ru", s)
        assert (len(en.dev), len(en.test), len(ru.dev), len(ru.test), en.rejects, ru.rejects) == (5, n, 5, n, [], [])
        raw = read_jsonl(SHARED / "mmlu_ru" / f"{s}_test.jsonl")
        assert [q.question.strip() for q in en.test] == [r["question_en"].strip() for r in raw]
        assert [q.gold for q in en.test] == [q.gold for q in ru.test]
    ru = load_subject(SHARED / "mmlu_ru", "ru", "world_religions")
    assert build_prompt("world_religions", ru.dev[:1], ru.test[0], "ru").startswith(
        "Ниже приведены вопросы с множественным выбором (с ответами) по мировым религиям.\n\n")
