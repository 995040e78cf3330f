"""translate_dialogs with fake translators: protection, dedupe, cache reuse, chunking, metadata."""

from __future__ import annotations

import copy

import pytest

from ruinstruct.io import read_dialogs, write_dialogs
from ruinstruct.schema import make_dialog, validate
from ruinstruct.translate.cache import ParagraphCache
from ruinstruct.translate.dialogs import translate_dialogs, translate_texts
from ruinstruct.translate.engine import Translation


class Upper:
    """Uppercases and wraps each unit in «», so a protected span sent by mistake would show."""

    def __init__(self, id: str = "fake-upper@main#0") -> None:
        self.id = id
        self.calls: list[list[str]] = []

    def translate(self, texts: list[str]) -> list[str]:
        self.calls.append(list(texts))
        return [f"«{t.upper()}»" for t in texts]

    @property
    def sent(self) -> list[str]:
        return [t for call in self.calls for t in call]


class Mapped(Upper):
    def __init__(self, table: dict[str, str], id: str = "fake-map@main#0") -> None:
        super().__init__(id)
        self.table = table

    def translate(self, texts: list[str]) -> list[str]:
        self.calls.append(list(texts))
        return [self.table[t] for t in texts]


def dialog(i: int, user: str, assistant: str, **meta) -> dict:
    return make_dialog(
        id=f"dolly:{i}",
        source="dolly",
        license="CC-BY-SA-3.0",
        messages=[{"role": "user", "content": user}, {"role": "assistant", "content": assistant}],
        meta=meta,
    )


CODE_ANSWER = (
    "Here is the code:\n\n"
    "```python\ndef add(a, b):\n    return a + b\n```\n\n"
    "Call `add(1, 2)` and read https://docs.python.org/3/.\n"
    " X | O | X \n---+---+---\n"
    "| Name | Score |\n|---|---|\n| Alice | 10 |\n"
    "import os\n"
    "That is all."
)


def test_protected_spans_come_back_verbatim():
    tr = Upper()
    out, stats = translate_dialogs([dialog(1, "Write code, please.", CODE_ANSWER)], tr, None)
    assert out[0]["messages"][0]["content"] == "«WRITE CODE, PLEASE.»"
    assert out[0]["messages"][1]["content"] == (
        "«HERE IS THE CODE:»\n\n"
        "```python\ndef add(a, b):\n    return a + b\n```\n\n"
        "«CALL» `add(1, 2)` «AND READ» https://docs.python.org/3/.\n"
        " X | O | X \n---+---+---\n"
        "| «NAME» | «SCORE» |\n|---|---|\n| «ALICE» | 10 |\n"
        "import os\n"
        "«THAT IS ALL.»"
    )
    assert "def add" not in " ".join(tr.sent) and "https" not in " ".join(tr.sent)
    assert stats["translator_calls"] == 1


def test_output_records_and_input_untouched():
    dialogs = [dialog(1, "Hello there.", "General Kenobi.", category="open_qa"), dialog(2, "Hi.", "Hello there.")]
    before = copy.deepcopy(dialogs)
    out, _ = translate_dialogs(dialogs, Upper(), None)
    assert dialogs == before
    assert [d["id"] for d in out] == ["dolly:1:ru", "dolly:2:ru"]
    first = out[0]
    assert first["lang"] == "ru" and first["origin_id"] == "dolly:1"
    assert first["source"] == "dolly" and first["license"] == "CC-BY-SA-3.0"
    # a translator without scores: one unknown score per translated unit
    assert first["meta"] == {"category": "open_qa", "translator": "fake-upper@main#0", "mt_logprob": [[None], [None]]}
    assert [m["role"] for m in first["messages"]] == ["user", "assistant"]
    assert first["messages"][1]["content"] == "«GENERAL KENOBI.»"
    assert validate(first) == []
    assert "translator" not in dialogs[0]["meta"]


def test_same_paragraph_in_three_dialogs_is_sent_once():
    shared = "Water boils at 100 degrees Celsius."
    dialogs = [dialog(i, f"Question number {i}?", shared) for i in range(3)]
    tr = Upper()
    out, stats = translate_dialogs(dialogs, tr, None)
    assert tr.sent.count(shared) == 1
    assert sorted(tr.sent) == sorted([shared, "Question number 0?", "Question number 1?", "Question number 2?"])
    assert all(d["messages"][1]["content"] == f"«{shared.upper()}»" for d in out)
    assert stats == {
        "dialogs": 3,
        "messages": 6,
        "units": 6,
        "unique_units": 4,
        "cache_hits": 0,
        "translated": 4,
        "translator_calls": 1,
        "chars": sum(map(len, tr.sent)),
        "empty": 0,
    }


def test_second_run_with_same_cache_sends_nothing(tmp_path):
    dialogs = [dialog(1, "How are you?", "Fine, thanks.\n\nAnd you?"), dialog(2, "Bye.", "See you.")]
    tr = Upper()
    with ParagraphCache(tmp_path / "c.sqlite3", tr.id) as cache:
        first, s1 = translate_dialogs(dialogs, tr, cache)
        assert s1["translated"] == 5 and s1["cache_hits"] == 0
        assert len(cache) == 5
    tr2 = Upper()
    with ParagraphCache(tmp_path / "c.sqlite3", tr2.id) as cache:  # reopened
        second, s2 = translate_dialogs(dialogs, tr2, cache)
    assert tr2.calls == []
    assert s2["translator_calls"] == 0 and s2["translated"] == 0 and s2["cache_hits"] == 5
    assert second == first


def test_other_translator_id_misses(tmp_path):
    dialogs = [dialog(1, "How are you?", "Fine, thanks.")]
    a, b = Upper("model#a"), Mapped({"How are you?": "Как дела?", "Fine, thanks.": "Хорошо, спасибо."}, "model#b")
    with ParagraphCache(tmp_path, a.id) as ca, ParagraphCache(tmp_path, b.id) as cb:
        translate_dialogs(dialogs, a, ca)
        out, stats = translate_dialogs(dialogs, b, cb)
        assert stats["cache_hits"] == 0 and stats["translated"] == 2
        assert out[0]["messages"][1]["content"] == "Хорошо, спасибо."
        assert out[0]["meta"]["translator"] == "model#b"
        with pytest.raises(ValueError, match="cache belongs to translator"):
            translate_dialogs(dialogs, b, ca)


def test_chunks_progress_and_incremental_cache(tmp_path):
    dialogs = [dialog(i, f"Question {i} here?", f"Answer {i} here.") for i in range(3)]  # 6 units
    events: list[tuple[int, int]] = []
    tr = Upper()
    with ParagraphCache(tmp_path, tr.id) as cache:
        cache.put_many({"Question 0 here?": "Вопрос 0?"})
        out, stats = translate_dialogs(dialogs, tr, cache, progress=lambda d, t: events.append((d, t)), chunk_size=2)
    assert [len(c) for c in tr.calls] == [2, 2, 1]
    assert events == [(1, 6), (3, 6), (5, 6), (6, 6)]
    assert stats["translator_calls"] == 3 and stats["cache_hits"] == 1 and stats["translated"] == 5
    assert out[0]["messages"][0]["content"] == "Вопрос 0?"


class Crashing(Upper):
    def __init__(self, fail_on_call: int) -> None:
        super().__init__()
        self.fail_on_call = fail_on_call

    def translate(self, texts):
        if len(self.calls) + 1 == self.fail_on_call:
            raise RuntimeError("GPU fell over")
        return super().translate(texts)


def test_killed_run_keeps_finished_chunks(tmp_path):
    dialogs = [dialog(i, f"Question {i} here?", f"Answer {i} here.") for i in range(3)]
    with ParagraphCache(tmp_path, "fake-upper@main#0") as cache:
        with pytest.raises(RuntimeError):
            translate_dialogs(dialogs, Crashing(fail_on_call=3), cache, chunk_size=2)
        assert len(cache) == 4
        tr = Upper()
        out, stats = translate_dialogs(dialogs, tr, cache, chunk_size=2)
    assert tr.sent == ["Question 2 here?", "Answer 2 here."]
    assert stats["cache_hits"] == 4
    assert out[2]["messages"][1]["content"] == "«ANSWER 2 HERE.»"


def test_empty_translation_stays_empty():
    tr = Mapped({"Keep this.": "Сохрани это.", "Lost one.": "   "})
    out, stats = translate_dialogs([dialog(1, "Keep this.", "Lost one.\nKeep this.")], tr, None)
    assert out[0]["messages"][1]["content"] == "\nСохрани это."
    assert "Lost one." not in out[0]["messages"][1]["content"]
    assert stats["empty"] == 1
    assert validate(out[0]) == []


def test_translator_output_whitespace_is_trimmed():
    tr = Mapped({"Hello there.": "  Привет.\n", "Bye now.": "Пока."})
    out, _ = translate_dialogs([dialog(1, "Hello there.", "  Bye now.  ")], tr, None)
    assert out[0]["messages"][0]["content"] == "Привет."
    assert out[0]["messages"][1]["content"] == "  Пока.  "


@pytest.mark.parametrize("bad", [[], ["a", "b", "c"], "ab", None])
def test_wrong_translator_output_fails_loudly(bad):
    class Bad(Upper):
        def translate(self, texts):
            return bad

    with pytest.raises(ValueError, match="outputs for 2 inputs"):
        translate_dialogs([dialog(1, "Hello there.", "Bye now.")], Bad(), None)


def test_non_string_output_fails_loudly():
    class Bad(Upper):
        def translate(self, texts):
            return [1 for _ in texts]

    with pytest.raises(TypeError):
        translate_dialogs([dialog(1, "Hello there.", "Bye now.")], Bad(), None)


def test_deterministic_and_nothing_to_translate():
    dialogs = [dialog(1, "```\nprint(1)\n```", "42"), dialog(2, "Hello there.", "Hello there.")]
    a, sa = translate_dialogs(dialogs, Upper(), None)
    b, sb = translate_dialogs(dialogs, Upper(), None)
    assert a == b and sa == sb
    assert a[0]["messages"][0]["content"] == "```\nprint(1)\n```"
    assert a[0]["messages"][1]["content"] == "42"
    tr = Upper()
    out, stats = translate_dialogs([dialogs[0]], tr, None)
    assert tr.calls == [] and stats["translator_calls"] == 0 and stats["units"] == 0
    empty, stats = translate_dialogs([], tr, None)
    assert empty == [] and stats["dialogs"] == 0


def test_translate_texts():
    tr = Upper()
    out, stats = translate_texts(["Hi there.\n`x`", "Hi there."], tr)
    assert out == ["«HI THERE.»\n`x`", "«HI THERE.»"]
    assert stats["units"] == 2 and stats["unique_units"] == 1 and tr.sent == ["Hi there."]


def test_chunk_size_must_be_positive():
    with pytest.raises(ValueError):
        translate_dialogs([dialog(1, "Hello there.", "Bye now.")], Upper(), None, chunk_size=0)


# --------------------------------------------------------------------------- translator scores


class Scored(Upper):
    """Scores each unit by its length, so every score says which unit it belongs to."""

    def __init__(self, id: str = "fake-scored@main#0") -> None:
        super().__init__(id)

    def translate_scored(self, texts: list[str]) -> list[Translation]:
        self.calls.append(list(texts))
        return [Translation(f"«{t.upper()}»", -len(t) / 100) for t in texts]


def score(unit: str) -> float:
    return -len(unit) / 100


def test_scores_per_message_per_unit_in_order():
    answer = "First part here.\n\n```python\nprint(1)\n```\n\nSecond part, see `x`.\nFirst part here."
    dialogs = [dialog(1, "Hello there.", answer), dialog(2, "```\ncode only\n```", "Hello there.")]
    tr = Scored()
    out, stats = translate_dialogs(dialogs, tr, None)
    assert out[0]["meta"]["mt_logprob"] == [
        [score("Hello there.")],
        # units in order, the repeated paragraph scored again; code and `x` are not units
        [score("First part here."), score("Second part, see"), score("First part here.")],
    ]
    assert out[1]["meta"]["mt_logprob"] == [[], [score("Hello there.")]]  # nothing translated: []
    assert stats["translated"] == 3  # each distinct unit translated once


def test_scores_come_back_from_the_cache_and_old_rows_give_none(tmp_path):
    dialogs = [dialog(1, "How are you?", "Fine, thanks.")]
    tr = Scored()
    with ParagraphCache(tmp_path, tr.id) as cache:
        first, _ = translate_dialogs(dialogs, tr, cache)
        assert cache.get_entries(["Fine, thanks."])["Fine, thanks."].logprob == score("Fine, thanks.")
        tr2 = Scored()
        second, stats = translate_dialogs(dialogs, tr2, cache)
        assert tr2.calls == [] and stats["cache_hits"] == 2
        assert second == first
        cache.put("How are you?", "Как дела?")  # an entry without a score, as old caches hold
        third, _ = translate_dialogs(dialogs, Scored(), cache)
    assert third[0]["meta"]["mt_logprob"] == [[None], [score("Fine, thanks.")]]


def test_scores_survive_parquet_and_jsonl_round_trips(tmp_path):
    dialogs = [dialog(1, "Hello there.", "First one.\n\n```\nx\n```\n\nSecond one."), dialog(2, "```\nx\n```", "Bye.")]

    class Odd(Upper):  # scores that are not short decimals, and one unknown
        def translate_scored(self, texts):
            return [Translation(t, None if t == "Bye." else -1 / 3 - len(t) * 1e-7) for t in texts]

    out, _ = translate_dialogs(dialogs, Odd(), None)
    logprobs = [d["meta"]["mt_logprob"] for d in out]
    assert logprobs[1] == [[], [None]]
    assert isinstance(logprobs[0][1][0], float) and len(logprobs[0][1]) == 2
    for name in ("t.parquet", "t.jsonl"):
        write_dialogs(tmp_path / name, out)
        back = read_dialogs(tmp_path / name)
        assert back == out, name  # floats exact, nested lists and None kept
        assert [d["meta"]["mt_logprob"] for d in back] == logprobs


def test_non_finite_score_is_unknown_and_wrong_score_type_fails():
    class Inf(Upper):
        def translate_scored(self, texts):
            return [Translation(t, float("-inf")) for t in texts]

    out, _ = translate_dialogs([dialog(1, "Hello there.", "Bye now.")], Inf(), None)
    assert out[0]["meta"]["mt_logprob"] == [[None], [None]]  # JSON cannot hold -inf

    class BadScore(Upper):
        def translate_scored(self, texts):
            return [(t, "high") for t in texts]

    with pytest.raises(TypeError, match="str score"):
        translate_dialogs([dialog(1, "Hello there.", "Bye now.")], BadScore(), None)
