"""The HF translator on the tiny trained M2M100 (real generate(), CPU)."""

from __future__ import annotations

import math
import re

import pytest

from ruinstruct.config import TranslationConfig
from ruinstruct.tiny import load_corpus
from ruinstruct.translate.engine import (
    HFTranslator,
    Translator,
    load_translator,
    split_long,
    split_sentences,
    translator_id,
)

torch = pytest.importorskip("torch")

CYRILLIC = re.compile(r"[А-Яа-яЁё]")


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
    base = TranslationConfig(model="m")
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
    assert HFTranslator(base).id == translator_id(base)
    assert translator_id(base.model_copy(update={"revision": "abc"})).startswith("m@abc#")


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
    tr = HFTranslator(TranslationConfig(model="m", max_batch_tokens=100, max_batch_size=4))
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


def test_split_long_with_word_counter():
    count = lambda s: len(s.split())  # noqa: E731
    text = "A b c. D e f g h i j k l m. N o."
    chunks = split_long(text, count, 4)
    assert all(count(c) <= 4 for c in chunks)
    assert " ".join(chunks).split() == text.split()
    assert chunks[0] == "A b c."  # sentence boundary kept where it fits
    assert split_long("short one", count, 4) == ["short one"]
    # one over-long "word" is cut by characters
    chars = lambda s: len(s)  # noqa: E731
    assert split_long("x" * 25, chars, 10) == ["x" * 10, "x" * 10, "x" * 5]


def test_long_paragraph_is_split_translated_and_joined(tiny_dir, corpus):
    tr = make(tiny_dir, max_input_tokens=40)
    sents = [en for en, _ in corpus if 12 <= tr.count_tokens(en) <= 25][:5]
    paragraph = " ".join(sents)
    assert tr.count_tokens(paragraph) > 40
    calls = spy_generate(tr)
    out = tr.translate([paragraph, sents[0]])
    assert all(c["width"] <= 40 for c in calls)
    chunks = split_long(paragraph, tr.count_tokens, 40)
    assert len(chunks) >= 3 and all(tr.count_tokens(c) <= 40 for c in chunks)
    assert out[0] == " ".join(tr.translate_naive(chunks))
    assert out[1] == tr.translate_naive([sents[0]])[0]
    # a run-on text with no sentence ends falls back to whitespace splits
    runon = " ".join(s.rstrip(".!?") for s in sents).lower()
    pieces = split_long(runon, tr.count_tokens, 40)
    assert len(pieces) > 1 and all(tr.count_tokens(p) <= 40 for p in pieces)
    assert CYRILLIC.search(tr.translate([runon])[0])


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
