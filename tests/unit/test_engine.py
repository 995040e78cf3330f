"""The HF translator on the tiny trained M2M100 (real generate(), CPU)."""

from __future__ import annotations

import math
import re
from pathlib import Path

import pytest

from ruinstruct.config import TranslationConfig
from ruinstruct.tiny import load_corpus
from ruinstruct.translate.engine import (
    HFTranslator,
    ScoringTranslator,
    Translation,
    Translator,
    load_translator,
    model_input_limit,
    model_positions,
    resolve_config,
    split_long,
    split_sentences,
    translate_scored,
    translator_id,
)

torch = pytest.importorskip("torch")

CYRILLIC = re.compile(r"[А-Яа-яЁё]")
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def corpus() -> list[tuple[str, str]]:
    return load_corpus()


def make(tiny_dir, **kw) -> HFTranslator:
    tr = load_translator(TranslationConfig(model=str(tiny_dir / "translator"), device="cpu", **kw))
    assert isinstance(tr, HFTranslator)
    return tr


@pytest.fixture(scope="module")
def translator(tiny_dir) -> HFTranslator:
    return make(tiny_dir)


def spy_generate(tr: HFTranslator) -> list[dict]:
    """Record (batch size, width, max_new_tokens) of every generate() call on `tr`."""
    calls: list[dict] = []
    real = tr._generate

    def wrapped(input_ids, attention_mask, max_new_tokens):
        calls.append({"size": input_ids.shape[0], "width": input_ids.shape[1], "max_new": max_new_tokens})
        return real(input_ids, attention_mask, max_new_tokens)

    tr._generate = wrapped  # type: ignore[method-assign]
    return calls


# --------------------------------------------------------------------------- protocol, id, laziness


def test_factory_returns_lazy_translator(tiny_dir):
    tr = make(tiny_dir)
    assert isinstance(tr, Translator)
    assert tr._model is None  # nothing loaded before the first translate()
    assert tr.translate([]) == []
    assert tr.id.startswith("translator@main#")  # a local folder is named by its content, not its path


def test_id_tracks_generation_settings_only():
    base = TranslationConfig(model="m", max_input_tokens=100)
    same = [
        base.model_copy(update={"max_batch_size": 3}),
        base.model_copy(update={"max_batch_tokens": 100}),
        base.model_copy(update={"device": "cpu"}),
        base.model_copy(update={"shard_size": 7}),
    ]
    different = [
        base.model_copy(update={"num_beams": 4}),
        base.model_copy(update={"length_ratio": 1.5}),
        base.model_copy(update={"no_repeat_ngram_size": 3}),
        base.model_copy(update={"tgt_lang": "de"}),
        base.model_copy(update={"revision": "abc"}),
    ]
    assert translator_id(base).startswith("m@main#")
    assert {translator_id(c) for c in same} == {translator_id(base)}
    ids = [translator_id(c) for c in different]
    assert translator_id(base) not in ids and len(set(ids)) == len(ids)
    assert HFTranslator(base.model_copy(update={"device": "cpu", "dtype": "float32"})).id == translator_id(
        base.model_copy(update={"dtype": "float32"})
    )
    assert translator_id(base.model_copy(update={"revision": "abc"})).startswith("m@abc#")


@pytest.mark.parametrize(
    "change",
    [
        {"dtype": "bfloat16"},
        {"dtype": "float16"},
        {"length_extra": 17},
        {"max_input_tokens": 99},
        {"max_input_tokens": None},
        {"repetition_penalty": 1.1},
        {"src_lang": "de"},
        {"num_beams": 4},
        {"length_ratio": 1.5},
        {"no_repeat_ngram_size": 3},
        {"tgt_lang": "de"},
        {"revision": "abc"},
    ],
    ids=lambda c: "-".join(f"{k}={v}" for k, v in c.items()),
)
def test_id_changes_with_each_setting_that_changes_the_text(change):
    """A setting left out of the id would let a cache serve translations made another way."""
    base = TranslationConfig(model="m", device="cpu", dtype="float32", max_input_tokens=100)
    assert translator_id(base.model_copy(update=change)) != translator_id(base)


# --------------------------------------------------------------------------- real translations


def test_translates_corpus_sentences_to_russian(translator, corpus):
    sample = corpus[::6]
    out = translator.translate([en for en, _ in sample])
    assert len(out) == len(sample)
    assert all(CYRILLIC.search(o) for o in out)
    assert not any("__ru__" in o or "</s>" in o for o in out)
    exact = sum(o == ru for o, (_, ru) in zip(out, sample, strict=True))
    assert exact / len(sample) >= 0.85, [(o, ru) for o, (_, ru) in zip(out, sample, strict=True) if o != ru]


def test_order_restored_duplicates_and_empty(tiny_dir, corpus):
    tr = make(tiny_dir, max_batch_tokens=256)
    by_len = sorted(corpus, key=lambda p: len(p[0]))
    picks = [by_len[-1][0], by_len[0][0], by_len[len(by_len) // 2][0], by_len[-2][0], by_len[1][0]]
    texts = [picks[2], picks[0], "", picks[1], picks[0], picks[3], "   ", picks[4], picks[2]]
    calls = spy_generate(tr)
    out = tr.translate(texts)
    alone = {t: tr.translate_naive([t])[0] for t in picks}
    assert out == [alone[t] if t.strip() else t for t in texts]
    assert out[1] == out[4] and out[0] == out[8]
    # 5 unique non-empty texts went to the model, in fewer calls than texts
    assert sum(c["size"] for c in calls[: len(calls) - len(picks)]) == 5
    assert tr.texts_translated == len(texts) + len(picks)


def test_budget_batching_matches_naive(tiny_dir, corpus):
    texts = [en for en, _ in corpus[::4]]
    tr = make(tiny_dir, max_batch_tokens=200, max_batch_size=6)
    calls = spy_generate(tr)
    batched = tr.translate(texts)
    n_batched = len(calls)
    for c in calls:
        assert c["size"] <= 6
        assert c["size"] == 1 or c["size"] * c["width"] <= 200
    widths = [c["width"] for c in calls]
    assert widths == sorted(widths, reverse=True)  # longest first: padding stays small
    naive = tr.translate_naive(texts)
    assert len(calls) - n_batched == len(texts)  # naive: one generate() per text
    assert batched == naive
    assert n_batched < len(texts)


def test_counters(tiny_dir, corpus):
    tr = make(tiny_dir)
    texts = [en for en, _ in corpus[:5]]
    tr.translate(texts + texts[:2])
    assert tr.generate_calls == 1
    assert tr.texts_translated == 7
    assert tr.segments_generated == 5
    assert tr.tokens_in == sum(tr.count_tokens(t) for t in texts)
    assert tr.tokens_out > 5


def test_max_new_tokens_is_set_per_batch_and_beats_checkpoint_max_length(tiny_dir, corpus):
    tr = make(tiny_dir, max_batch_size=1)
    ru_len = {en: len(tr.tokenizer(text_target=ru)["input_ids"]) for en, ru in corpus}
    # sentences the tiny model knows whose translation is longer than the cap below
    texts = [en for en, ru in corpus if ru_len[en] > 12][:3]
    reference = tr.translate(texts)
    tr.model.generation_config.max_length = 8  # the real checkpoint says 200; we must ignore it
    calls = spy_generate(tr)
    assert tr.translate(texts) == reference
    assert all(len(tr.tokenizer(text_target=o)["input_ids"]) > 8 for o in reference)
    for c in calls:
        assert c["max_new"] == math.ceil(tr.cfg.length_ratio * c["width"]) + tr.cfg.length_extra
    assert tr.max_new_tokens(150) == 316 > 200  # a 150-token paragraph may produce > 200 tokens
    assert tr.max_new_tokens(10) < tr.max_new_tokens(11)


def test_plan_batches_budget_and_size():
    tr = HFTranslator(TranslationConfig(model="m", device="cpu", max_input_tokens=64, max_batch_tokens=100, max_batch_size=4))
    lengths = [5, 50, 10, 10, 30, 120, 10, 10, 10, 10, 10]
    batches = tr.plan_batches(lengths)
    assert sorted(i for b in batches for i in b) == list(range(len(lengths)))
    assert batches[0] == [5]  # over the budget alone: its own batch
    for b in batches:
        width = max(lengths[i] for i in b)
        assert len(b) <= 4 and (len(b) == 1 or len(b) * width <= 100)
    flat = [lengths[i] for b in batches for i in b]
    assert flat == sorted(flat, reverse=True)


# --------------------------------------------------------------------------- long paragraphs


def test_split_sentences():
    text = "One two. Two three! «Три» четыре? Пять. e.g. lower. Done"
    assert split_sentences(text) == ["One two.", "Two three!", "«Три» четыре?", "Пять. e.g. lower.", "Done"]


def words(s: str) -> int:
    return len(s.split())


def test_split_long_with_word_counter():
    text = "A b c. D e f g h i j k l m. N o."
    chunks = split_long(text, words, 4)
    assert chunks == ["A b c. ", "D e f g ", "h i j k ", "l m. ", "N o."]
    assert "".join(chunks) == text
    assert split_long("short one", words, 4) == ["short one"]
    # one over-long "word" is cut by characters, the last resort
    chars = lambda s: len(s)  # noqa: E731
    assert split_long("x" * 25, chars, 10) == ["x" * 10, "x" * 10, "x" * 5]


def test_split_prefers_sentence_ends_then_clauses_then_words():
    text = "One two three. Four five, six seven; eight nine: ten eleven twelve. Thirteen."
    # whole sentences packed while they fit
    assert split_long(text, words, 12) == ["One two three. Four five, six seven; eight nine: ten eleven twelve. ", "Thirteen."]
    # the long sentence alone at clause boundaries (packed), never merged with its neighbours
    assert split_long(text, words, 5) == [
        "One two three. ", "Four five, six seven; ", "eight nine: ten eleven twelve. ", "Thirteen."
    ]
    # a clause over the limit between words
    assert split_long(text, words, 2) == [
        "One two ", "three. ", "Four five, ", "six seven; ", "eight nine: ", "ten eleven ", "twelve. ", "Thirteen."
    ]
    # numbers and times are no clause boundaries
    assert split_long("Pay 1,000 at 10:30 today, or 2,000 later.", words, 5) == [
        "Pay 1,000 at 10:30 today, ", "or 2,000 later."
    ]


def test_split_keeps_every_space_for_the_join():
    text = "First  sentence, with  two   spaces.   Second\tone here, too. Third."
    for limit in (1, 2, 3, 4, 6, 9):
        chunks = split_long(text, words, limit)
        assert "".join(chunks) == text, limit
        assert all(c.strip() and words(c) <= limit for c in chunks), (limit, chunks)
        assert all(not c[0].isspace() for c in chunks)  # the separator goes with the chunk before


PYRAMIDS = "The pyramids were built by ancient Egyptian workers more than four thousand years ago."
PYRAMIDS_RU = "Пирамиды построили древнеегипетские рабочие более четырёх тысяч лет назад."


def test_issue_sentence_just_over_the_limit(translator):
    """The issue's example: a sentence one token over the limit."""
    n = translator.count_tokens(PYRAMIDS)
    assert n == 43
    # no clause boundary: cut between words (the last resort), never inside one
    chunks = split_long(PYRAMIDS, translator.count_tokens, n - 1)
    assert len(chunks) == 2 and "".join(chunks) == PYRAMIDS
    assert chunks[0].endswith(" ") and all(translator.count_tokens(c.strip()) <= n - 1 for c in chunks)
    assert all(w in PYRAMIDS.split() for c in chunks for w in c.split())
    # with a comma, at the comma, not mid-phrase
    clause = PYRAMIDS.replace("workers more", "workers, more")
    m = translator.count_tokens(clause)
    assert split_long(clause, translator.count_tokens, m - 1) == [
        "The pyramids were built by ancient Egyptian workers, ",
        "more than four thousand years ago.",
    ]


def test_paragraph_over_the_limit_splits_at_sentence_ends(translator, corpus):
    sents = [en for en, _ in corpus if 12 <= translator.count_tokens(en) <= 25][:5]
    paragraph = " ".join(sents)
    chunks = split_long(paragraph, translator.count_tokens, 40)
    assert len(chunks) >= 3 and "".join(chunks) == paragraph
    # every chunk is whole sentences
    assert all(set(split_sentences(c)) <= set(sents) for c in chunks)
    assert all(translator.count_tokens(c.strip()) <= 40 for c in chunks)


def test_long_paragraph_is_split_translated_and_joined(tiny_dir, corpus):
    tr = make(tiny_dir, max_input_tokens=40)
    sents = [en for en, _ in corpus if 12 <= tr.count_tokens(en) <= 25][:5]
    paragraph = "  ".join(sents)  # two spaces between sentences: they come back between translations
    assert tr.count_tokens(paragraph) > 40
    calls = spy_generate(tr)
    out = tr.translate([paragraph, sents[0]])
    assert all(c["width"] <= 40 for c in calls)
    chunks = split_long(paragraph, tr.count_tokens, 40)
    assert len(chunks) >= 3
    assert out[0] == "  ".join(tr.translate_naive([c.strip() for c in chunks]))
    assert out[1] == tr.translate_naive([sents[0]])[0]
    # a run-on text with no sentence ends falls back to clauses and words
    runon = " ".join(s.rstrip(".!?") for s in sents).lower()
    pieces = split_long(runon, tr.count_tokens, 40)
    assert len(pieces) > 1 and all(tr.count_tokens(p.strip()) <= 40 for p in pieces)
    assert CYRILLIC.search(tr.translate([runon])[0])


def tiny_profile_translation() -> TranslationConfig:
    """configs/tiny.yaml's translation section (read alone: other sections are not this test's)."""
    import yaml

    section = yaml.safe_load((REPO / "configs" / "tiny.yaml").read_text())["translation"]
    return TranslationConfig(**section)


def test_default_limit_comes_from_the_model(tiny_dir):
    cfg = TranslationConfig(model=str(tiny_dir / "translator"), device="cpu")
    assert cfg.max_input_tokens is None
    # the tiny model has 1024 positions: (1024 - 1 - 16) / 2 inputs leave room for the output
    assert model_input_limit(cfg) == 503
    assert model_input_limit(cfg.model_copy(update={"length_ratio": 1.0, "length_extra": 0})) == 1023
    resolved = resolve_config(cfg)
    assert resolved.max_input_tokens == 503 and resolve_config(resolved) == resolved
    assert make(tiny_dir).cfg.max_input_tokens == 503
    # a limit in the profile wins
    assert resolve_config(cfg.model_copy(update={"max_input_tokens": 40})).max_input_tokens == 40


def test_profiles_do_not_cap_below_the_model(tiny_dir):
    for name in ("tiny.yaml", "paper.yaml"):
        section = yaml_translation(name)
        assert section.get("max_input_tokens") is None, name  # the model decides
    cfg = tiny_profile_translation().model_copy(update={"model": str(tiny_dir / "translator")})
    tr = load_translator(cfg)
    assert tr.cfg.max_input_tokens == 503
    assert tr.translate([PYRAMIDS]) == [PYRAMIDS_RU]  # whole, not cut at a word


def yaml_translation(name: str) -> dict:
    import yaml

    return yaml.safe_load((REPO / "configs" / name).read_text())["translation"]


def test_model_without_positions_needs_a_limit():
    class Config:
        max_position_embeddings = None

    with pytest.raises(ValueError, match="max_input_tokens"):
        model_input_limit(TranslationConfig(model="m"), Config())
    assert model_positions(type("C", (), {"max_source_positions": 512, "max_target_positions": 256})()) == (512, 256)


def test_max_new_tokens_stays_within_the_decoder_positions(translator):
    translator.load()
    assert translator.max_new_tokens(503) == 1022 <= 1023
    assert translator.max_new_tokens(900) == 1023  # a hand-set limit above the default


# --------------------------------------------------------------------------- resolved ids


def test_translator_id_is_the_resolved_one(tiny_dir, tmp_path):
    """What `ruinstruct translate` does (a profile's "auto" device and dtype, no limit): the id
    that keys the cache must name fp32 on CPU, so a shared --cache never serves CPU fp32
    translations as bf16 ones (or the other way round)."""
    import sqlite3

    from ruinstruct.schema import make_dialog
    from ruinstruct.translate.cache import ParagraphCache
    from ruinstruct.translate.dialogs import translate_dialogs

    cfg = TranslationConfig(model=str(tiny_dir / "translator"))  # device/dtype "auto"
    assert (cfg.device, cfg.dtype, cfg.max_input_tokens) == ("auto", "auto", None)
    resolved = resolve_config(cfg)
    assert (resolved.device, resolved.dtype, resolved.max_input_tokens) == ("cpu", "float32", 503)
    tr = load_translator(cfg)
    assert tr.id == resolved.translator_id != cfg.translator_id
    assert tr.id == translator_id(cfg.model_copy(update={"device": "cpu", "dtype": "float32", "max_input_tokens": 503}))
    assert tr.id != translator_id(resolved.model_copy(update={"dtype": "bfloat16"}))
    dialog = make_dialog(id="d:1", source="d", license="MIT", messages=[{"role": "user", "content": PYRAMIDS}])
    with ParagraphCache(tmp_path, tr.id) as cache:
        out, _ = translate_dialogs([dialog], tr, cache)
    assert out[0]["meta"]["translator"] == tr.id
    with sqlite3.connect(tmp_path / "paragraphs.sqlite3") as conn:
        assert conn.execute("SELECT DISTINCT translator FROM paragraphs").fetchall() == [(resolved.translator_id,)]
    conn.close()


# --------------------------------------------------------------------------- scores


def teacher_forced_mean(tr: HFTranslator, text: str) -> tuple[str, float]:
    """`text` translated alone, and the mean log-probability of the generated tokens recomputed
    by one forward pass over them (the forced language token left out, the end token in)."""
    src = torch.tensor(tr.encode([text]))
    seq = tr._generate(src, torch.ones_like(src), tr.max_new_tokens(src.shape[1])).sequences
    ids = seq[0].tolist()
    eos = tr.model.generation_config.eos_token_id
    end = ids.index(eos, 1) + 1 if eos in ids[1:] else len(ids)
    with torch.no_grad():
        logits = tr.model(input_ids=src, decoder_input_ids=seq[:, : end - 1]).logits
    lp = torch.log_softmax(logits.float(), -1).gather(-1, seq[:, 1:end, None])[0, :, 0]
    text_out = tr.tokenizer.decode([t for t in ids[1:] if t not in tr._drop_ids], skip_special_tokens=True)
    return text_out.strip(), lp[1:].mean().item()


@pytest.mark.parametrize("beams", [1, 3])
def test_scores_are_the_mean_token_logprob(tiny_dir, corpus, beams):
    tr = make(tiny_dir, num_beams=beams, max_batch_size=4)
    texts = [corpus[0][0], corpus[7][0], "Zebra quantum lollipop frobnicates the wardrobe.", PYRAMIDS, corpus[3][0]]
    scored = tr.translate_scored(texts + [""])
    assert [t.text for t in scored] == tr.translate(texts + [""])
    assert scored[-1] == Translation("", None)
    for text, (out, lp) in zip(texts, scored, strict=False):
        alone, expected = teacher_forced_mean(tr, text)
        assert out == alone  # batching (and beam rows of other texts) changed nothing
        assert lp is not None and lp <= 0
        assert lp == pytest.approx(expected, abs=1e-4), (text, out)
    # a sentence the tiny model knows is far more certain than nonsense
    assert scored[0].logprob > -0.05 > -0.3 > scored[2].logprob


def test_score_of_a_split_text_weighs_its_chunks_by_tokens(tiny_dir, corpus):
    tr = make(tiny_dir, max_input_tokens=40)
    sents = [en for en, _ in corpus if 12 <= tr.count_tokens(en) <= 25][:4]
    paragraph = " ".join(sents)
    chunks = [c.strip() for c in split_long(paragraph, tr.count_tokens, 40)]
    assert len(chunks) >= 2
    parts = [tr._run_batch([ids])[0] for ids in tr.encode(chunks)]  # (text, log-prob sum, tokens)
    expected = sum(p.logprob_sum for p in parts) / sum(p.tokens for p in parts)
    assert expected != pytest.approx(sum(p.logprob_sum / p.tokens for p in parts) / len(parts), abs=1e-6)
    assert tr.translate_scored([paragraph])[0] == (" ".join(p.text for p in parts), pytest.approx(expected, abs=1e-4))


def test_any_translator_can_be_asked_for_scores():
    class Plain:
        id = "plain"

        def translate(self, texts):
            return [t.upper() for t in texts]

    assert translate_scored(Plain(), ["a", "b"]) == [Translation("A", None), Translation("B", None)]
    assert isinstance(Plain(), Translator) and not isinstance(Plain(), ScoringTranslator)
    assert isinstance(HFTranslator(TranslationConfig(model="m", device="cpu", dtype="float32", max_input_tokens=64)), ScoringTranslator)


# --------------------------------------------------------------------------- CUDA OOM handling


def test_oom_halves_batch_and_keeps_order(tiny_dir, corpus):
    texts = [en for en, _ in corpus[10:18]]
    tr = make(tiny_dir, max_batch_size=8, max_batch_tokens=10_000)
    expected = tr.translate(texts)
    sizes: list[int] = []
    real = tr._generate

    def flaky(input_ids, attention_mask, max_new_tokens):
        sizes.append(input_ids.shape[0])
        if input_ids.shape[0] > 2:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory (injected)")
        return real(input_ids, attention_mask, max_new_tokens)

    tr._generate = flaky  # type: ignore[method-assign]
    calls_before = tr.generate_calls
    assert tr.translate(texts) == expected
    assert sizes == [8, 4, 2, 2, 2, 2]  # the second half starts at the size that fitted
    assert tr.oom_retries == 2
    assert tr.generate_calls - calls_before == 4
    # later batches start at the remembered size: no OOM again
    sizes.clear()
    assert tr.translate([en for en, _ in corpus[20:28]]) == tr.translate_naive([en for en, _ in corpus[20:28]])
    assert sizes[:4] == [2, 2, 2, 2] and tr.oom_retries == 2


def test_oom_at_batch_size_one_reraises(tiny_dir, corpus):
    tr = make(tiny_dir)

    def always(input_ids, attention_mask, max_new_tokens):
        raise torch.cuda.OutOfMemoryError("CUDA out of memory (injected)")

    tr._generate = always  # type: ignore[method-assign]
    with pytest.raises(torch.cuda.OutOfMemoryError):
        tr.translate([corpus[0][0], corpus[1][0]])
    assert tr.oom_retries == 1


def test_unknown_language_is_an_error(tiny_dir):
    tr = make(tiny_dir, tgt_lang="xx")
    with pytest.raises(ValueError, match="'xx'"):
        tr.translate(["Hello"])


def test_cuda_that_torch_cannot_use_is_one_line_naming_the_field(monkeypatch, tiny_dir):
    """On a CPU build of torch, device: cuda used to fail shard by shard (and let some shards
    run in fp16 on the CPU); it is refused when the settings are resolved, before any work."""
    import torch

    from ruinstruct.errors import UserError
    from ruinstruct.translate import ct2

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    cfg = TranslationConfig(model=str(tiny_dir / "translator"), device="cuda", max_input_tokens=200)
    with pytest.raises(UserError, match=r"^translation\.device: cuda, but torch sees no CUDA device \(torch "):
        resolve_config(cfg)
    # CTranslate2 brings its own CUDA runtime: torch's view does not decide for that backend
    monkeypatch.setattr(ct2, "cuda_devices", lambda: 1)
    monkeypatch.setattr(ct2, "resolve_compute_type", lambda compute_type, device: "int8_float16")
    resolved = resolve_config(cfg.model_copy(update={"backend": "ctranslate2"}))
    assert (resolved.device, resolved.compute_type) == ("cuda", "int8_float16")
