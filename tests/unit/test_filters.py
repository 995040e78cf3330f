"""Corruption filters: each rule's positive and negative cases, the paper's failure cases, the
orchestration (counts, all reasons, pairing) and the quality target on the labelled set."""

from __future__ import annotations

import importlib.util
import json
from collections import Counter
from dataclasses import FrozenInstanceError
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from ruinstruct.filters import (
    FILTER_NAMES,
    AsciiArtFilter,
    CodeFilter,
    Decision,
    FilterConfig,
    GarbageFilter,
    LanguageFilter,
    Reason,
    RepetitionFilter,
    StructureFilter,
    apply_filters,
    build_filters,
    filter_report,
    pair_with_originals,
)
from ruinstruct.filters import text as tx
from ruinstruct.schema import make_dialog
from ruinstruct.translate.segment import translatable_units

REPO = Path(__file__).resolve().parents[2]
FIXTURE = REPO / "tests" / "fixtures" / "filter_set.jsonl"
#: per-kind rates of the labelled set's kinds at commit ad83132, before the NMT filters
BASELINE = REPO / "tests" / "fixtures" / "filter_kinds_ad83132.json"
#: the real public samples (heldout real translations); tests that read them skip without it
SHARED = REPO.parent / "shared"


def dlg(*turns: str, lang: str = "en", id: str = "t:1", roles: list[str] | None = None) -> dict:
    roles = roles or ["user", "assistant"] * len(turns)
    return make_dialog(
        id=id if lang == "en" else id + ":ru",
        source="local/test",
        license="Apache-2.0",
        lang=lang,
        origin_id=None if lang == "en" else id,
        messages=[{"role": r, "content": c} for r, c in zip(roles, turns, strict=False)],
    )


def en_ru(en_turns: tuple[str, ...], ru_turns: tuple[str, ...], **kw) -> tuple[dict, dict]:
    return dlg(*en_turns, **kw), dlg(*ru_turns, lang="ru", **kw)


def kinds(decision: Decision) -> set[str]:
    return {r.kind for r in decision.reasons}


Q_EN = "How do I find a job?"
Q_RU = "Как мне найти работу?"
A_EN = (
    "The best way to find a job is to create a strong resume and cover letter that highlights your skills. "
    "You can also search online for job openings in your area of expertise or contact local employers directly."
)
A_RU = (
    "Лучший способ найти работу - создать сильное резюме и сопроводительное письмо, в котором подчеркиваются "
    "ваши навыки. Вы также можете искать в Интернете вакансии в своей области знаний или напрямую обращаться "
    "к местным работодателям."
)
GOOD = en_ru((Q_EN, A_EN), (Q_RU, A_RU))


def with_answer(ru_answer: str, en_answer: str = A_EN, question: tuple[str, str] = (Q_EN, Q_RU)):
    return en_ru((question[0], en_answer), (question[1], ru_answer))


ALL_FILTERS = [StructureFilter, RepetitionFilter, CodeFilter, AsciiArtFilter, LanguageFilter, GarbageFilter]


@pytest.mark.parametrize("cls", ALL_FILTERS)
def test_every_filter_keeps_a_real_translation(cls):
    en, ru = GOOD
    assert cls().check(ru, en).keep


# ---- config and construction ---------------------------------------------------------------------

def test_config_defaults_are_documented_frozen_and_strict():
    cfg = FilterConfig()
    for name, field in FilterConfig.model_fields.items():
        assert field.description, f"{name} has no description"
        section = getattr(cfg, name)
        for sub, f in getattr(type(section), "model_fields", {}).items():
            assert f.description, f"{name}.{sub} has no description"
    assert set(FILTER_NAMES) <= set(FilterConfig.model_fields)
    with pytest.raises(ValidationError):
        FilterConfig(no_such_threshold=1)
    with pytest.raises(ValidationError):
        cfg.repetition.max_token_run = 9  # type: ignore[misc]
    with pytest.raises(ValidationError, match="unknown filter names"):
        FilterConfig(enabled=["repetition", "spelling"])
    assert FilterConfig(repetition={"top_ngram_max": {"2": 0.3}}).repetition.top_ngram_max == {2: 0.3}


def test_build_filters_all_or_enabled_in_order():
    assert [f.name for f in build_filters()] == list(FILTER_NAMES)
    assert [f.name for f in build_filters(FilterConfig(enabled=["code", "structure"]))] == ["code", "structure"]


def test_decision():
    r = Reason("repetition", "token_run", "'р' x15")
    assert Decision().keep and not Decision((r,)).keep
    assert r.kind == "repetition/token_run"
    assert str(r.at("message 2")) == "repetition/token_run: 'р' x15 in message 2"
    with pytest.raises(FrozenInstanceError):
        r.rule = "x"  # type: ignore[misc]


# ---- structure -----------------------------------------------------------------------------------

def test_structure_rejects_missing_message_roles_and_empty():
    en, ru = GOOD
    dropped = dict(ru, messages=ru["messages"][:1])
    assert {"structure/message_count", "structure/roles"} <= kinds(StructureFilter().check(dropped, en))
    swapped = dict(ru, messages=[dict(m, role="assistant" if m["role"] == "user" else "user") for m in ru["messages"]])
    assert "structure/roles" in kinds(StructureFilter().check(swapped, en))
    empty = dict(ru, messages=[ru["messages"][0], {"role": "assistant", "content": "  "}])
    assert "structure/empty" in kinds(StructureFilter().check(empty, en))


def test_structure_truncated_vs_short_but_complete():
    en, ru = with_answer(A_RU[:40])
    assert "structure/truncated" in kinds(StructureFilter().check(ru, en))
    en, ru = en_ru(("Which is a species of fish? Tope or Rope", "Tope"), ("Что это за вид рыбы? Tope или Rope", "Топик"))
    assert StructureFilter().check(ru, en).keep  # short texts get slack


def test_structure_line_count_must_survive_paragraph_translation():
    en, ru = with_answer("Первая строка.\nВторая строка.", "First line.\nSecond line.")
    assert StructureFilter().check(ru, en).keep
    en, ru = with_answer("Первая строка. Вторая строка.", "First line.\nSecond line.")
    assert "structure/line_count" in kinds(StructureFilter().check(ru, en))
    assert StructureFilter(FilterConfig(structure={"require_same_line_count": False})).check(ru, en).keep


# ---- repetition ----------------------------------------------------------------------------------

def test_repetition_token_run_phrase_loop_and_char_run():
    cases = {
        "repetition/token_run": A_RU + " Р Р Р Р Р Р Р Р Р Р Р Р",
        "repetition/loop": A_RU[:120] + ", найти работу, найти работу, найти работу, найти работу",
        "repetition/char_run": A_RU + " Вячеслав:::::::::: Вячеслав:",
        "repetition/letter_run": A_RU[:150] + " оооооооооо",
        "repetition/glued_loop": A_RU[:150] + " ЭтоЭтоЭто",
    }
    for kind, answer in cases.items():
        en, ru = with_answer(answer)
        assert kind in kinds(RepetitionFilter().check(ru, en)), kind


def test_repetition_runaway_length_and_gopher_statistics():
    en, ru = with_answer(A_RU + " " + " ".join([A_RU] * 3))
    got = kinds(RepetitionFilter().check(ru, en))
    assert "repetition/too_long" in got
    assert any(k.startswith("repetition/dup_") or k.startswith("repetition/top_") for k in got)


def test_repetition_keeps_a_legitimately_repetitive_source():
    chorus_en = "Happy birthday to you\nHappy birthday to you\nHappy birthday, dear Anna\nHappy birthday to you"
    chorus_ru = "С днём рождения тебя\nС днём рождения тебя\nС днём рождения, дорогая Анна\nС днём рождения тебя"
    lines_en = "\n".join(["All work and no play makes Jack a dull boy."] * 12)
    lines_ru = "\n".join(["Делу время, потехе час, а Джек скучный парень."] * 12)
    laugh = ("That is funny! Ha ha ha ha ha! Aaaaaaah!", "Это смешно! Ха ха ха ха ха! Аааааааа!")
    for en_text, ru_text in ((chorus_en, chorus_ru), (lines_en, lines_ru), laugh):
        en, ru = with_answer(ru_text, en_text)
        assert RepetitionFilter().check(ru, en).keep, ru_text
    # the same loop without the source having it is dropped
    en, ru = with_answer(lines_ru, "Jack keeps typing the same proverb.")
    assert not RepetitionFilter().check(ru, en).keep


# ---- code ----------------------------------------------------------------------------------------

CODE_EN = """Here is a function that returns the square of a number:
```python
def square(x):
    # multiply x by itself
    return x * x

print(square(4))
```
Call `square(4)` to get 16. Docs: https://docs.python.org/3/"""
CODE_RU_OK = """Вот функция, которая возвращает квадрат числа:
```python
def square(x):
    # multiply x by itself
    return x * x

print(square(4))
```
Вызовите `square(4)`, чтобы получить 16. Документация: https://docs.python.org/3/"""


def code_pair(ru_answer: str):
    return with_answer(ru_answer, CODE_EN, ("Show me code.", "Покажи код."))


def test_code_kept_verbatim_is_kept():
    en, ru = code_pair(CODE_RU_OK)
    for f in build_filters():
        assert f.check(ru, en).keep, f.name


def test_translated_code_is_dropped():
    translated = CODE_RU_OK.replace("def square", "определить квадрат").replace("return", "вернуть").replace("print(", "печать(")
    en, ru = code_pair(translated)
    d = CodeFilter().check(ru, en)
    assert "code/tokens" in kinds(d)
    assert "'def'" in d.reasons[0].detail or "'return'" in d.reasons[0].detail


def test_code_comments_translated_is_still_code():
    en, ru = code_pair(CODE_RU_OK.replace("# multiply x by itself", "# умножаем x на себя"))
    assert CodeFilter().check(ru, en).keep


def test_code_indentation_spacing_inline_and_urls():
    cases = {
        "code/indentation": CODE_RU_OK.replace("    return x * x", "return x * x"),
        "code/lines": CODE_RU_OK.replace("print(square(4))", "print (square (4))"),
        "code/inline": CODE_RU_OK.replace("`square(4)`", "`квадрат(4)`"),
        "code/fences": CODE_RU_OK.replace("```python\n", ""),
    }
    for kind, answer in cases.items():
        en, ru = code_pair(answer)
        assert kind in kinds(CodeFilter().check(ru, en)), kind
    en, ru = code_pair(CODE_RU_OK.replace("https://docs.python.org/3/", "https: //docs.python.org/3/"))
    assert "code/inline" in kinds(CodeFilter().check(ru, en))


def test_code_like_lines_outside_fences():
    en_text = "Use a list comprehension:\nsquares = [x * x for x in range(10)]\nIt builds the list in one line."
    ok = "Используйте генератор списка:\nsquares = [x * x for x in range(10)]\nОн строит список в одну строку."
    en, ru = with_answer(ok, en_text)
    assert CodeFilter().check(ru, en).keep
    en, ru = with_answer(ok.replace("for x in", "для x в"), en_text)
    assert "code/tokens" in kinds(CodeFilter().check(ru, en))


# ---- ASCII art, boards, tables -------------------------------------------------------------------

ART_EN = "Here is a cat:\n /\\_/\\\n( o.o )\n > ^ <\nIt is a happy cat."
ART_RU = "Вот кошка:\n /\\_/\\\n( o.o )\n > ^ <\nЭто счастливая кошка."
BOARD_EN = "Your move! The board:\n X | O | X\n---+---+---\n O | X |  \n---+---+---\n   |   | O\nPick a square."
BOARD_RU = "Твой ход! Доска:\n X | O | X\n---+---+---\n O | X |  \n---+---+---\n   |   | O\nВыбери клетку."


def test_ascii_art_intact_vs_broken():
    en, ru = with_answer(ART_RU, ART_EN)
    assert AsciiArtFilter().check(ru, en).keep
    for broken in (
        ART_RU.replace("( o.o )", "( о.о )"),  # Cyrillic о
        ART_RU.replace(" /\\_/\\", "/\\_/\\"),  # reflowed
        ART_RU.replace(" > ^ <", " > ^ <  >^<"),  # characters changed
    ):
        en, ru = with_answer(broken, ART_EN)
        assert "ascii_art/lines" in kinds(AsciiArtFilter().check(ru, en))


def test_tic_tac_toe_board_intact_vs_translated():
    en, ru = with_answer(BOARD_RU, BOARD_EN)
    for f in build_filters():
        assert f.check(ru, en).keep, f.name
    translated = BOARD_RU.replace("X", "Х").replace("O", "О")  # Cyrillic Х and О
    en, ru = with_answer(translated, BOARD_EN)
    d = AsciiArtFilter().check(ru, en)
    assert "ascii_art/lines" in kinds(d) and "3 of 5" in d.reasons[0].detail  # the 3 rows with marks
    dashed = BOARD_RU.replace("---+---+---", "—+—+—")
    en, ru = with_answer(dashed, BOARD_EN)
    assert not AsciiArtFilter().check(ru, en).keep


TABLE_EN = "| Planet | Diameter (km) | Mass |\n|---|---|---|\n| Mercury | 4,880 | 3.30 x 10^23 |\n| Venus | 12,104 | 4.87 x 10^24 |"
TABLE_RU = "| Планета | Диаметр (км) | Масса |\n|---|---|---|\n| Меркурий | 4,880 | 3.30 x 10^23 |\n| Венера | 12,104 | 4.87 x 10^24 |"


def test_table_cells_with_words_are_translated_numbers_and_syntax_are_not():
    en, ru = with_answer(TABLE_RU, TABLE_EN)
    assert AsciiArtFilter().check(ru, en).keep
    for broken, kind in (
        (TABLE_RU.replace("|---|---|---|", "|—|—|—|"), "ascii_art/lines"),
        (TABLE_RU.replace("3.30 x 10^23", "3,30 х 10^23"), "ascii_art/table_cells"),
        (TABLE_RU.replace("| Венера | 12,104 |", "| Венера 12,104 |"), "ascii_art/table_shape"),
    ):
        en, ru = with_answer(broken, TABLE_EN)
        assert kind in kinds(AsciiArtFilter().check(ru, en)), kind


# ---- language ------------------------------------------------------------------------------------

def test_language_untranslated_vs_names_only_source():
    en, ru = with_answer(A_EN)
    assert {"language/cyrillic", "language/untranslated"} <= kinds(LanguageFilter().check(ru, en))
    en, ru = en_ru(
        ("Give me the top 5 golf equipment company names.", "Titleist, Taylormade, Callaway, Ping, Cobra"),
        ("Назовите пять крупнейших компаний, производящих оборудование для гольфа.", "Titleist, Taylormade, Callaway, Ping, Cobra"),
    )
    assert LanguageFilter().check(ru, en).keep


def test_language_copied_segment_and_non_russian_cyrillic():
    en_text = "First, open the settings.\nThen click on the blue button at the bottom of the page."
    ru_text = "Сначала откройте настройки.\nThen click on the blue button at the bottom of the page."
    en, ru = with_answer(ru_text, en_text)
    assert "language/untranslated" in kinds(LanguageFilter().check(ru, en))
    uk = "Найкращий спосіб знайти роботу - створити сильне резюме та супровідний лист, шукати вакансії в інтернеті."
    en, ru = with_answer(uk)
    assert "language/not_russian" in kinds(LanguageFilter().check(ru, en))


# ---- garbage -------------------------------------------------------------------------------------

def test_garbage_rules_and_names_from_the_source():
    cases = {
        "garbage/mixed_script": A_RU + " Cтудент1Студент2",  # Latin C
        "garbage/new_latin": A_RU + " Мы счастливы asdfasdgdfgsdfg",
        "garbage/symbol_chunk": A_RU + " [r][n][b][q][k][b][n][r]",
    }
    for kind, answer in cases.items():
        en, ru = with_answer(answer)
        assert kind in kinds(GarbageFilter().check(ru, en)), kind
    en, ru = with_answer(A_RU + "\n[r][n][b][q][k][b][n][r]", A_EN + "\nSee the board.")
    assert "garbage/symbol_lines" in kinds(GarbageFilter().check(ru, en))
    en, ru = en_ru(("When did Virgin Australia start operating?",), ("Когда Virgin Australia начала работать?",), roles=["user"])
    assert GarbageFilter().check(ru, en).keep


# The degenerate fragments the ru_lm author hard-coded (shared/data/mt_ru_samples); the filters
# must catch each of them by general rules when the source does not have it.
FRAGMENTS = [
    "Сила ----", "Cтудент1Студент2", "Сиденье---", "Сидзур--", "[Х][Х][Х][Х][Х][Х][Х][Х][Х][Х]",
    "Р Р Р Р Р Р Р Р Р Р Р Р Р Р Р", "## Мы счастливы asdfasdgdfgsdfg", "Вячеслав:::::::::: Вячеслав:",
    "Cactus Cactus Cactus Cactus Cactus Cactus Cactus Cactus",
    "Интересный, интересный, интригующий, интригующий, интригующий, интригующим",
    "Интересное предложениеИнтересное предложениеИнтересное предложениеИнтересное", "Сиденье -----",
    "[r][n][b][q][k][b][n][r]",
]


@pytest.mark.parametrize("fragment", FRAGMENTS)
@pytest.mark.parametrize("where", ["middle", "end", "own_line"])
def test_degenerate_fragments_are_caught(fragment, where):
    first, rest = A_RU.split(". ", 1)
    answer = {
        "middle": f"{first}. {fragment} {rest}",
        "end": f"{A_RU} {fragment}",
        "own_line": f"{A_RU}\n{fragment}",
    }[where]
    en_answer = A_EN + ("\nThat is all." if where == "own_line" else "")
    en, ru = with_answer(answer, en_answer)
    result = apply_filters([(ru, en)])
    assert len(result.rejected) == 1, result.rejected


# ---- apply_filters, pairing, report --------------------------------------------------------------

def test_apply_filters_counts_add_up_and_all_reasons_are_kept():
    good_en, good_ru = GOOD
    en2, bad2 = with_answer(A_EN[:60])  # untranslated AND truncated: two filters
    bad2 = dict(bad2, id="t:2:ru", origin_id="t:1")
    en3, orphan = GOOD
    orphan = dict(orphan, id="t:3:ru", origin_id="t:404")
    pairs = [(good_ru, good_en), (bad2, en2), (orphan, None)]
    result = apply_filters(pairs, FilterConfig())
    assert len(result.kept) + len(result.rejected) == len(pairs) == result.total
    assert [d["id"] for d in result.kept] == ["t:1:ru"]
    by_id = {r["id"]: r for r in result.rejected}
    reasons = by_id["t:2:ru"]["reasons"]
    assert {r.filter for r in result.reasons[[row["id"] for row in result.rejected].index("t:2:ru")]} >= {
        "structure", "language"}
    assert all(isinstance(r, str) for r in reasons)
    assert by_id["t:2:ru"]["origin_id"] == "t:1"
    assert result.per_filter["structure"] >= 1 and result.per_filter["language"] >= 1  # counted in both
    assert by_id["t:3:ru"]["reasons"] == ["pairing/missing_original: no English original with id 't:404'"]
    assert result.per_filter["pairing"] == 1


def test_pair_with_originals_by_origin_id():
    en, ru = GOOD
    orphan = dict(ru, id="x:ru", origin_id="missing")
    assert pair_with_originals([ru, orphan], [en]) == [(ru, en), (orphan, None)]


def test_origin_mismatch_is_a_reason():
    en, ru = GOOD
    result = apply_filters([(dict(ru, origin_id="other"), en)])
    assert result.rejected[0]["reasons"][0].startswith("pairing/origin_mismatch")


def test_filter_report_per_filter_per_source_and_examples():
    en, ru = GOOD
    bad = [with_answer(A_RU + " Р Р Р Р Р Р Р Р")[1] for _ in range(5)]
    bad = [dict(b, id=f"b:{i}:ru", source="chip2") for i, b in enumerate(bad)]
    result = apply_filters([(ru, en), *[(b, en) for b in bad]])
    rep = filter_report(result, examples_per_kind=2, max_chars=50)
    json.dumps(rep)  # JSON-able
    assert (rep["in"], rep["kept"], rep["rejected"]) == (6, 1, 5)
    assert rep["per_filter"]["repetition"] == 5
    assert rep["per_source"]["chip2"]["rejected"] == 5 and rep["per_source"]["local/test"]["kept"] == 1
    assert rep["per_source"]["chip2"]["per_filter"]["repetition"] == 5
    exs = rep["examples"]["repetition/token_run"]
    assert len(exs) == 2 and all(len(e["translation"]) <= 50 and len(e["reason"]) <= 50 for e in exs)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    en_text=st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), min_size=1, max_size=300),
    ru_text=st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), min_size=0, max_size=300),
)
def test_filters_never_crash_and_counts_add_up(en_text, ru_text):
    en, ru = with_answer(ru_text, en_text)
    result = apply_filters([(ru, en), (ru, None)])
    assert result.total == 2 and len(result.rejected) >= 1
    for row in result.rejected:
        assert row["reasons"] and all(isinstance(r, str) and ":" in r for r in row["reasons"])


@settings(max_examples=40, deadline=None)
@given(st.lists(st.sampled_from([A_EN, CODE_EN, ART_EN, BOARD_EN, TABLE_EN, "Hi!", "x = 1"]), min_size=2, max_size=4))
def test_an_identical_copy_fails_only_language_checks(texts):
    """A verbatim copy keeps every protected span, so only the language filter may object."""
    en = dlg(*texts, roles=["user", "assistant"] * 2)
    result = apply_filters([(dict(en, id="c:ru", lang="ru", origin_id=en["id"]), en)])
    for _, reasons in result.rejected_with_reasons():
        assert {r.filter for r in reasons} <= {"language", "untranslated"}


# ---- text helpers: the translator's spans, linear time on adversarial input ----------------------

@pytest.mark.parametrize(
    ("line", "protected"),
    [
        (
            "See [the docs](https://example.com/a_(b)) and `pip install x`, or mail me@example.org.",
            ["[", "](https://example.com/a_(b))", "`pip install x`", "me@example.org"],
        ),
        (
            "Solve $x^2$ and \\(y + 1\\) in <b>bold</b>, see https://en.wikipedia.org/wiki/Foo_(bar).",
            ["$x^2$", "\\(y + 1\\)", "<b>", "</b>", "https://en.wikipedia.org/wiki/Foo_(bar)"],
        ),
    ],
)
def test_strip_protected_removes_what_the_translator_keeps(line, protected):
    stripped = tx.strip_protected(line)
    assert not any(span in stripped for span in protected)
    assert all(unit in stripped for unit in translatable_units(line))
    assert tx.urls(line) == [span.lstrip("](").removesuffix(")") if span.startswith("]") else span
                             for span in protected if "://" in span]


def _thue_morse(n: int) -> str:
    """No piece three times back to back anywhere (cube-free), yet squares everywhere."""
    return "".join("ab"[bin(i).count("1") % 2] for i in range(n))


def test_text_helpers_finish_on_adversarial_input():
    """40k-character inputs on which an unbounded or overlapping pattern backtracks
    quadratically (the old TeX math pattern took ~5 s on the first one) or worse. Not timed:
    each must give the right answer, and a quadratic pattern makes this test visibly slow."""
    # nothing closes, so nothing is protected
    for s in ("\\( " * 20000, "\\[ " * 20000, "$ " * 20000, "`" * 40000, "[" * 40000,
              "](" * 20000, "a@" * 20000, "<a " * 13333):
        assert tx.strip_protected(s) == s
        assert tx.urls(s) == [] and tx.inline_code_spans(s) == []
    # everything is protected
    for s in ("$a$ " * 10000, "$$ " * 13332, "\\(x\\) " * 6666, "` " * 20000):
        assert tx.strip_protected(s).strip() == ""
    assert tx.inline_code_spans("` " * 20000) == ["` `"] * 10000
    url = "http://" + "a" * 40000
    assert tx.strip_protected(url) == " " and tx.urls(url) == [url]
    s = "http://x" + ")" * 40000  # unbalanced closing brackets are not part of a URL
    assert tx.urls(s) == ["http://x"] and tx.strip_protected(s) == " " + ")" * 40000
    # code tokens: unclosed literals and comments, a placeholder with a long run of zero flags
    s = '"' + '\\"' * 20000
    assert tx.code_tokens(s) == ['"'] + ["\\", '"'] * 20000 and tx.code_skeleton(s) == s
    s = "x = '" + "\\'" * 20000
    assert tx.code_tokens(s) == ["x", "=", "'"] + ["\\", "'"] * 20000
    s = "/* " * 13333
    assert tx.code_tokens(s) == ["/", "*"] * 13333 and tx.code_skeleton(s) == s.rstrip()
    fmt = "%" + "0" * 40000 + "d"
    s = f'printf("{fmt}")'
    assert tx.code_tokens(s) == ["printf", "(", '"', fmt, '"', ")"] and tx.code_skeleton(s) == s
    # loops: a cube-free word has none, a periodic one is one loop
    tm = _thue_morse(40000)
    assert tx.glued_loops(tm) == [] and tx.longest_loop(tm, 80) == (0, "")
    assert tx.glued_loops("ab" * 20000) == ["ab" * 20000] and tx.longest_loop("ab" * 20000, 80)[0] == 40000
    # table delimiter rows: long runs of blanks that almost fit, and one long real row
    for s in ("a | b\n" + " " * 40000 + "|", "a | b\n|-" + " " * 40000 + "x"):
        assert tx.analyze(s).table_delim == (False, False)
    assert tx.analyze("a | b\n|" + "---|" * 10000).table_delim == (False, True)


def test_filters_finish_on_adversarial_copies():
    for s in ("\\( " * 20000, "$ " * 20000, "`" * 40000, "[" * 40000, "http://" + "a" * 40000,
              '"' + '\\"' * 20000, "/* " * 13333, "a | b\n" + " " * 40000 + "|"):
        en, ru = with_answer(s, s)
        result = apply_filters([(ru, en)])
        assert result.total == 1
        for _, reasons in result.rejected_with_reasons():  # a verbatim copy: only language checks may object
            assert {r.filter for r in reasons} <= {"language", "untranslated"}


# ---- the labelled set ----------------------------------------------------------------------------

@pytest.fixture(scope="module")
def labelled() -> list[dict]:
    return [json.loads(line) for line in FIXTURE.read_text(encoding="utf-8").splitlines() if line.strip()]


def test_labelled_set_shape(labelled):
    labels = Counter(r["label"] for r in labelled)
    assert 500 <= len(labelled) <= 700
    assert labels["corrupt"] >= 0.35 * len(labelled)
    kinds_ = Counter(r["kind"] for r in labelled)
    for kind in ("dolly_real", "chip2_real", "ours_code_art", "repetitive_source", "translated_code_keywords",
                 "broken_ascii", "broken_board", "untranslated", "truncated", "role_broken", "degenerate_fragment",
                 "loop_phrase", "loop_char", "wrong_language", "empty_message"):
        assert kinds_[kind] > 0, kind
    assert len({r["id"] for r in labelled}) == len(labelled)
    assert len({r["ru"]["id"] for r in labelled}) == len(labelled)


@pytest.fixture(scope="module")
def bench():
    """bench/filters.py, whose metrics and targets the tests below reuse (one computation for both)."""
    spec = importlib.util.spec_from_file_location("bench_filters", REPO / "bench" / "filters.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def labelled_rejects(bench, labelled) -> dict[str, list[str]]:
    return bench.ruinstruct_rejects(labelled)[0]


def test_quality_target_on_the_labelled_set(bench, labelled, labelled_rejects):
    m = bench.metrics(labelled, labelled_rejects)
    assert m["rows"] == m["corrupt"] + m["good"] == len(labelled)
    assert m["recall"] >= 0.90, m["recall"]
    assert m["false_reject_rate"] <= 0.05, m["false_reject_rate"]
    # no corrupt kind slips through wholesale
    for kind, k in m["per_kind"].items():
        assert k["label"] == "good" or k["rate"] >= 0.75, kind


def test_the_kinds_of_ad83132_stay_where_they_were(bench, labelled, labelled_rejects):
    # the labelled set had no split at ad83132: its rates are over every row of a kind, so are these
    before = json.loads(BASELINE.read_text(encoding="utf-8"))["per_kind"]
    now = bench.metrics(labelled, labelled_rejects)["per_kind"]
    assert len(before) == 29
    for kind, old in before.items():
        assert now[kind]["label"] == old["label"] and now[kind]["rows"] > 0, kind
        if old["label"] == "corrupt":
            assert now[kind]["rate"] >= old["rate"], (kind, "recall fell", old["rate"], now[kind])
        else:
            assert now[kind]["rate"] <= old["rate"], (kind, "false rejects rose", old["rate"], now[kind])


def test_new_kinds_reach_their_targets_in_sample_and_held_out(bench, labelled, labelled_rejects):
    ours = {name: bench.metrics(part, labelled_rejects) for name, part in bench.splits(labelled, None).items()}
    assert set(ours) == {"in_sample", "heldout"}
    for name in ours:
        for kind in bench.NEW_KINDS:
            assert ours[name]["per_kind"][kind]["rows"] >= 20, (name, kind)
    targets = bench.targets(ours)  # recall >= 0.9 per new kind and split; false rejects <= 0.02 per split
    assert len(targets) == 2 * len(bench.NEW_KINDS) + 2
    failed = [name for name, ok in targets.items() if not ok]
    assert failed == [], {name: {k: ours[name]["per_kind"][k]["rate"] for k in bench.NEW_KINDS}
                          | {"false_reject_rate": ours[name]["false_reject_rate"]} for name in ours}


@pytest.mark.skipif(not (SHARED / "data" / "mmlu_ru").is_dir(), reason="../shared/data absent")
def test_real_translations_keep_their_false_reject_target(bench):
    rows = bench.splits([], SHARED)["heldout_real_translations"]
    m = bench.metrics(rows, bench.ruinstruct_rejects(rows)[0])
    assert m["good"] >= 600
    assert m["false_reject_rate"] <= bench.TARGET_FALSE_REJECT == 0.02, m["false_reject_rate"]
