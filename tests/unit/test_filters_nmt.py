"""The filters for neural MT's common failures (numbers, untranslated sentences, omissions,
hallucinations, translator confidence), the datatrove-style base class, structured reasons,
counts and the per-filter config sections."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest
from pydantic import ValidationError

from ruinstruct.filters import (
    ConfidenceFilter,
    FilterConfig,
    LengthFilter,
    NumbersFilter,
    Reason,
    RepetitionFilter,
    UntranslatedFilter,
    apply_filters,
    build_filters,
    filter_report,
    filter_report_markdown,
)
from ruinstruct.filters.base import Filter, MessagePair, ParagraphPair, paragraph_pairs
from ruinstruct.filters.length import align
from ruinstruct.filters.numbers import compare, number_words
from ruinstruct.filters.report import score_distribution
from ruinstruct.filters.text import sentences
from ruinstruct.schema import make_dialog

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "filter_set.jsonl"
NEW_KINDS = ("changed_number", "english_sentence", "omitted_sentence", "hallucinated_sentence")


def pair(en: str | list[str], ru: str | list[str], *, source: str = "local/test", id: str = "t:1", meta=None):
    en_msgs, ru_msgs = ([en] if isinstance(en, str) else en), ([ru] if isinstance(ru, str) else ru)
    roles = ["user", "assistant"] * 4
    e = make_dialog(id=id, source=source, license="Apache-2.0",
                    messages=[{"role": r, "content": c} for r, c in zip(roles, en_msgs, strict=False)])
    r = make_dialog(id=id + ":ru", source=source, license="Apache-2.0", lang="ru", origin_id=id, meta=meta,
                    messages=[{"role": r, "content": c} for r, c in zip(roles, ru_msgs, strict=False)])
    return e, r


def kinds(f: Filter, en: str | list[str], ru: str | list[str]) -> list[str]:
    e, r = pair(en, ru)
    return [x.kind for x in f.check(r, e).reasons]


# ---- numbers -------------------------------------------------------------------------------------

@pytest.mark.parametrize(
    ("en", "ru"),
    [
        ("The city has 1,000 residents.", "В городе 1 000 жителей."),
        ("The city has 1,000 residents.", "В городе 1\u00a0000 жителей."),
        ("It costs 2,500,000 dollars.", "Это стоит 2\u202f500\u202f000 долларов."),
        ("Add 3.5 cups of flour.", "Добавьте 3,5 стакана муки."),
        ("I have three cats.", "У меня 3 кошки."),
        ("Wait 5 minutes.", "Подождите пять минут."),
        ("It takes 2 days.", "Это занимает двух дней."),
        ("He came third in 1999.", "Он пришёл 3-м в 1999 году."),
        ("Russia in the 19th century.", "Россия XIX века."),
        ("No numbers at all here.", "Здесь вообще нет чисел."),
    ],
)
def test_numbers_keep_legitimate_rewrites(en, ru):
    assert kinds(NumbersFilter(), en, ru) == []


@pytest.mark.parametrize(
    ("en", "ru", "kind", "named"),
    [
        ("It was founded in 2000 with 32 cities.", "Она основана в 2001 году с 32 городами.", "numbers/changed", "2000"),
        ("It was founded in 2000 with 32 cities.", "Она основана с 32 городами.", "numbers/missing", "2000"),
        ("It was founded with 32 cities.", "Она основана в 1998 году с 32 городами.", "numbers/added", "1998"),
        ("Add 3.5 cups.", "Добавьте 35 стаканов.", "numbers/changed", "3.5"),
        ("The city has 1,000 residents.", "В городе 10 000 жителей.", "numbers/changed", "1,000"),
    ],
)
def test_numbers_drop_changed_missing_and_invented(en, ru, kind, named):
    e, r = pair(en, ru)
    reasons = NumbersFilter().check(r, e).reasons
    assert [x.kind for x in reasons] == [kind]
    assert named in reasons[0].detail and reasons[0].detail.endswith("in message 1 (user), paragraph 1")


def test_numbers_a_word_forgives_one_digit_only():
    # "two" accounts for one "2"; the second "2" (1/4 -> 2/4) is a changed number
    assert compare("two cups and 1/4 spoon", "две чашки и 2/4 ложки") == (["1"], ["2"])
    assert compare("two cups and 1/4 spoon", "2 чашки и 1/4 ложки") == ([], [])
    words = number_words()
    assert {"двух", "двумя", "трех", "третьего", "пяти"} <= set(words["ru"])
    assert {"three", "third", "twenty"} <= set(words["en"])


def test_numbers_paragraph_pairs_are_aligned_by_line():
    # the same numbers on swapped lines: each paragraph pair is wrong
    assert kinds(NumbersFilter(), "Line 1 has 10.\nLine 2 has 20.", "Строка 1 имеет 20.\nСтрока 2 имеет 10.") == [
        "numbers/changed", "numbers/changed"]


def test_numbers_in_verbatim_code_lines_are_not_paragraphs():
    en = "Run this:\n```python\nx = 10\n```\nDone."
    ru = "Выполните это:\n```python\nx = 11\n```\nГотово."
    assert kinds(NumbersFilter(), en, ru) == []  # code is the code filter's business


def test_paragraph_pairs_verbatim_keeps_every_line():
    m = MessagePair("message 1 (user)", "Выполните это:\n```\nx = 11\n```\n\nГотово.", "Run this:\n```\nx = 10\n```\n\nDone.")
    assert [(p.where, p.en) for p in paragraph_pairs(m)] == [
        ("message 1 (user), paragraph 1", "Run this:"), ("message 1 (user), paragraph 6", "Done.")]
    assert [p.en for p in paragraph_pairs(m, verbatim=True)] == ["Run this:", "```", "x = 10", "```", "", "Done."]
    # line counts differ: the whole messages, even when nothing in them is translated
    code = MessagePair("message 2 (assistant)", "```\nx = 1\n```", "```\nx = 1\n\n```")
    assert paragraph_pairs(code) == []
    assert paragraph_pairs(code, verbatim=True) == [ParagraphPair(code.where, code.ru, code.en, aligned=False)]


# ---- untranslated --------------------------------------------------------------------------------

def test_untranslated_catches_one_english_sentence_in_a_russian_paragraph():
    en = "Cats sleep a lot. They are most active at night. Feed them twice a day."
    ru = "Кошки много спят. They are most active at night. Кормите их два раза в день."
    e, r = pair(en, ru)
    (reason,) = UntranslatedFilter().check(r, e).reasons
    assert reason.kind == "untranslated/english_sentence" and "They are most active at night." in reason.detail


@pytest.mark.parametrize(
    "ru",
    [
        "Process Mining - это семейство методов анализа процессов.",
        "Virgin Australia, торговое название Virgin Australia Airlines Pty Ltd, является австралийской авиакомпанией.",
        "Установите пакет командой `pip install --upgrade numpy pandas` и перезапустите ядро.",
        "Посмотрите документацию на https://docs.python.org/3/tutorial/index.html и попробуйте.",
        "Мой любимый фильм - The Lord of the Rings.",
    ],
)
def test_untranslated_keeps_names_terms_code_and_urls(ru):
    en = "This is an English sentence about the thing, with names and code kept as they are."
    assert kinds(UntranslatedFilter(), en, ru) == []


def test_untranslated_needs_source_prose():
    # the source line is code (verbatim for the translator): nothing to translate, nothing to check
    en = "```\nprint('the quick brown fox jumps over the lazy dog')\n```"
    assert kinds(UntranslatedFilter(), en, en) == []


# ---- length --------------------------------------------------------------------------------------

EN_P = ("The museum opened in the spring. It holds paintings from five centuries. "
        "Guided tours start every hour. Tickets are cheaper for students.")
RU_P = ("Музей открылся весной. В нём хранятся картины пяти столетий. "
        "Экскурсии начинаются каждый час. Для студентов билеты дешевле.")


def test_length_keeps_a_faithful_paragraph_and_short_answers():
    assert kinds(LengthFilter(), EN_P, RU_P) == []
    assert kinds(LengthFilter(), "Yes.", "Да.") == []
    assert kinds(LengthFilter(), "Tope", "Топ") == []


def test_length_omission_addition_and_extremes():
    omitted = RU_P.replace(" Экскурсии начинаются каждый час.", "")
    assert kinds(LengthFilter(), EN_P, omitted) == ["length/omission"]
    added = RU_P + " Музей также известен своим садом, где летом проходят концерты."
    assert kinds(LengthFilter(), EN_P, added) == ["length/addition"]
    assert kinds(LengthFilter(), EN_P, "Музей открылся.") == ["length/too_short"]
    assert kinds(LengthFilter(), EN_P, RU_P + " " + RU_P.replace(".", ",")) == ["length/too_long"]


def test_length_a_merged_sentence_is_not_an_omission():
    en = "I called him. He did not answer."
    ru = "Я позвонил ему, но он не ответил."
    assert kinds(LengthFilter(), en, ru) == []


def test_sentences_split_real_mt_quirks():
    assert sentences("Я слышал, что хорошо иметь завещание.Что такое завещание?") == [
        "Я слышал, что хорошо иметь завещание.", "Что такое завещание?"]
    assert sentences("J. K. Rowling wrote it, e.g. in 1997. It sold 3.5 million copies.") == [
        "J. K. Rowling wrote it, e.g. in 1997.", "It sold 3.5 million copies."]
    assert sentences("В 2000 г. он ушёл, т.е. уволился. Потом вернулся.") == [
        "В 2000 г. он ушёл, т.е. уволился.", "Потом вернулся."]


# ---- confidence ----------------------------------------------------------------------------------

def scored(*per_message):
    return pair(["Hi there.", "Hello, how are you?"], ["Привет.", "Здравствуйте, как дела?"],
                meta={"mt_logprob": [list(m) for m in per_message]})


def test_confidence_is_off_by_default_and_drops_below_a_threshold():
    e, r = scored([-0.2], [-0.5, -2.5])
    assert ConfidenceFilter().check(r, e).keep
    f = ConfidenceFilter(FilterConfig(confidence={"min_logprob": -2.0}))
    (reason,) = f.check(r, e).reasons
    assert reason.kind == "confidence/low_logprob" and "-2.500" in reason.detail and "message 2" in reason.detail
    e, r = scored([-0.2], [None, -1.0])  # unknown scores (old cache rows) are ignored
    assert f.check(r, e).keep
    e, r = pair("Hi.", "Привет.")  # no scores at all
    assert f.check(r, e).keep
    strict = ConfidenceFilter(FilterConfig(confidence={"min_logprob": -2.0, "missing_ok": False}))
    assert [x.kind for x in strict.check(r, e).reasons] == ["confidence/missing"]


def test_report_shows_the_score_distribution_either_way():
    dialogs = [scored([-0.1 * k], [])[1] for k in range(1, 21)] + [pair("a", "б")[1]]
    dist = score_distribution(dialogs, bins=4)
    assert (dist["dialogs"], dist["scored"], dist["min"]) == (21, 20, -2.0)
    assert dist["quantiles"] == {"1%": -2.0, "5%": -2.0, "25%": -1.6, "50%": -1.1}
    assert [b["dialogs"] for b in dist["histogram"]] == [5, 5, 5, 5]
    result = apply_filters([(r, pair("a", "б")[0]) for r in dialogs[:3]], FilterConfig(enabled=["confidence"]))
    rep = filter_report(result)
    assert rep["translator_scores"]["scored"] == 3 and rep["kept"] == 3


# ---- the base class, reasons, counts -------------------------------------------------------------

def test_base_class_owns_the_loops_and_appends_where():
    seen: list[str] = []

    class Spy(Filter):
        name = "numbers"  # any existing section

        def check_message(self, p: MessagePair):
            seen.append(f"m:{p.where}")
            return ()

        def check_paragraph(self, p: ParagraphPair):
            seen.append(f"p:{p.where}")
            yield self.reason("spy", p.ru)

    e, r = pair(["Hello.\n\n```\ncode\n```\nBye.", "Fine."], ["Привет.\n\n```\ncode\n```\nПока.", "Хорошо."])
    reasons = Spy().check(r, e).reasons
    assert seen == ["m:message 1 (user)", "p:message 1 (user), paragraph 1", "p:message 1 (user), paragraph 6",
                    "m:message 2 (assistant)", "p:message 2 (assistant), paragraph 1"]
    assert [str(x) for x in reasons] == [
        "numbers/spy: Привет. in message 1 (user), paragraph 1",
        "numbers/spy: Пока. in message 1 (user), paragraph 6",
        "numbers/spy: Хорошо. in message 2 (assistant), paragraph 1",
    ]


def test_counts_per_filter_rule_and_source_add_up():
    q = ("Tell me about the museum.", "Расскажи мне о музее.")
    good = pair([q[0], EN_P], [q[1], RU_P], id="g:1", source="a")
    num = pair([q[0], "Founded in 2000."], [q[1], "Основан в 2001 году."], id="n:1", source="a")
    both = pair([q[0], EN_P + " It was built in 1900."],
                [q[1], RU_P.replace("Экскурсии начинаются каждый час. ", "")], id="b:1", source="b")
    orphan = pair([q[0], "x"], [q[1], "х"], id="o:1", source="b")[1]
    result = apply_filters([(good[1], good[0]), (num[1], num[0]), (both[1], both[0]), (orphan, None)])
    assert (len(result.kept), len(result.rejected), result.total) == (1, 3, 4)
    assert result.per_filter["numbers"] == 2 and result.per_filter["length"] == 1 and result.per_filter["pairing"] == 1
    assert result.per_filter["repetition"] == 0  # every filter that ran is listed
    assert result.per_rule == Counter({"numbers/changed": 1, "numbers/missing": 1, "length/too_short": 1,
                                       "pairing/missing_original": 1})
    a, b = result.per_source["a"], result.per_source["b"]
    assert (a.total, a.kept, a.rejected, b.total, b.kept, b.rejected) == (2, 1, 1, 2, 0, 2)
    assert sum(s.rejected for s in result.per_source.values()) == len(result.rejected)
    assert b.per_filter == Counter({"numbers": 1, "length": 1, "pairing": 1})
    # each rejected row carries readable strings; the structured reasons sit beside it
    for row, reasons in result.rejected_with_reasons():
        assert row["reasons"] == [str(x) for x in reasons] and all(isinstance(x, Reason) for x in reasons)
    rep = filter_report(result)
    json.dumps(rep)
    assert rep["per_rule"]["numbers/changed"] == 1 and rep["per_source"]["b"]["per_rule"]["length/too_short"] == 1
    md = filter_report_markdown({"report": rep, "translated": 4, "kept": 1, "rejected": 3, "rejects_file": "r.jsonl",
                                 "per_source": {"a": {"translated": 2, "kept": 1, "rejected": 1}}})
    assert "| numbers/changed | 1 |" in md and "| numbers | 2 |" in md


def test_new_filters_are_enabled_by_default():
    assert {"numbers", "untranslated", "length", "confidence"} <= {f.name for f in build_filters()}


# ---- repetition: the token-run threshold, exactly ------------------------------------------------

@pytest.mark.parametrize("max_run", [3, 4, 6])
def test_token_run_threshold_is_exact(max_run):
    f = RepetitionFilter(FilterConfig(repetition={"max_token_run": max_run}))
    en = "The answer is simple and clear for everyone."
    below = "Ответ прост " + " ".join(["очень"] * (max_run - 1)) + " и понятен всем."
    at = "Ответ прост " + " ".join(["очень"] * max_run) + " и понятен всем."
    assert "repetition/token_run" not in kinds(f, en, below)
    assert "repetition/token_run" in kinds(f, en, at)


def test_repetition_rules_are_named_methods():
    for rule in ("too_long", "gopher", "token_run", "letter_run", "glued_loop", "loop", "char_run"):
        assert callable(getattr(RepetitionFilter, rule)) and getattr(RepetitionFilter, rule).__doc__


# ---- config sections -----------------------------------------------------------------------------

def test_config_sections_validate_and_unknown_keys_name_the_field():
    cfg = FilterConfig(numbers={"max_mismatches": 1}, length={"max_sd": 3})
    assert cfg.numbers.max_mismatches == 1 and cfg.length.max_sd == 3.0 and cfg.length.ratio_mean == 1.04
    with pytest.raises(ValidationError, match=r"numbers\.bogus"):
        FilterConfig(numbers={"bogus": 1})
    with pytest.raises(ValidationError, match=r"repetition\.max_token_run"):
        FilterConfig(repetition={"max_token_run": 1})
    with pytest.raises(ValidationError, match=r"repetition_max_token_run"):
        FilterConfig(repetition_max_token_run=4)  # the old flat names are gone


def test_paper_profile_spells_out_the_filter_defaults():
    import yaml

    paper = yaml.safe_load((Path(__file__).resolve().parents[2] / "configs/paper.yaml").read_text(encoding="utf-8"))
    assert FilterConfig(**paper["filters"]) == FilterConfig(enabled=paper["filters"]["enabled"])


# ---- the labelled set: the new kinds, tune and held-out ------------------------------------------

@pytest.fixture(scope="module")
def new_kind_rows() -> list[dict]:
    rows = [json.loads(line) for line in FIXTURE.read_text(encoding="utf-8").splitlines() if line.strip()]
    return [r for r in rows if r["kind"] in (*NEW_KINDS, "dolly_real", "chip2_real", "real_omission")]


def test_new_kinds_recall_and_false_rejects(new_kind_rows):
    counts = Counter((r["kind"], r["split"]) for r in new_kind_rows)
    for kind in NEW_KINDS:
        assert counts[kind, "tune"] >= 25 and counts[kind, "heldout"] >= 5, kind
    cfg = FilterConfig(enabled=["numbers", "untranslated", "length"])
    result = apply_filters([(r["ru"], r["en"]) for r in new_kind_rows], cfg)
    rejected = {row["id"] for row in result.rejected}
    for kind in NEW_KINDS:
        rows = [r for r in new_kind_rows if r["kind"] == kind and r["split"] == "tune"]
        assert sum(r["ru"]["id"] in rejected for r in rows) / len(rows) >= 0.9, kind
    good = [r for r in new_kind_rows if r["label"] == "good"]
    assert sum(r["ru"]["id"] in rejected for r in good) / len(good) <= 0.02
    assert all(r["ru"]["id"] in rejected for r in new_kind_rows if r["kind"] == "real_omission")


# ---- length: sentences aligned by length ----------------------------------------------------------

EN_4 = ("Sure, I think it is probably because of a mix of factors. First off, the environment for Native "
        "American people can be stressful, which can make alcohol abuse more of a temptation. Also, there is "
        "some speculation that American Indians might have different genes which affect how alcohol affects "
        "them. But I do not think we have a really firm explanation yet.")
RU_4 = ("Конечно, я думаю, что это, вероятно, из-за сочетания факторов. Во-первых, среда для коренных "
        "американцев может быть стрессовой, что может сделать злоупотребление алкоголем более соблазнительным. "
        "Кроме того, есть некоторые предположения, что у американских индейцев могут быть разные гены, которые "
        "влияют на то, как алкоголь влияет на них. Но я не думаю, что у нас еще есть действительно твердое "
        "объяснение.")


def test_length_alignment_finds_a_short_sentence_missing_from_a_long_paragraph():
    assert kinds(LengthFilter(), EN_4, RU_4) == []
    dropped = RU_4[RU_4.index("Во-первых"):]
    # the paragraph ratio alone (0.96) is inside the calibrated band; the lengths of the three
    # remaining sentences match the last three of the source one to one
    reasons = LengthFilter().check(*reversed(pair(EN_4, dropped))).reasons
    assert [x.kind for x in reasons] == ["length/omission"]
    assert "missing: 'Sure, I think it is probably because of a mix of factors.'" in reasons[0].detail
    # the sentence count rule alone (no gaps allowed in the alignment) keeps it
    assert kinds(LengthFilter(FilterConfig(length={"gap_prior": 1e-12})), EN_4, dropped) == []


def test_length_a_sentence_split_at_a_colon_is_not_an_addition():
    en = ("- TechRadar's review of the latest iPhone: The new iPhone is a stunning triumph of engineering that "
          "sets a new bar for smartphone performance and camera quality. However, the incremental design and "
          "high price mean it lacks the 'wow' factor of previous iPhones. Still, its power and intelligence "
          "are unrivaled.")
    ru = ("- Обзор новейшего iPhone от TechRadar. Новый iPhone — это потрясающий триумф инженерной мысли, "
          "который устанавливает новую планку производительности смартфонов и качества камеры. Тем не менее, "
          "инкрементный дизайн и высокая цена означают, что ему не хватает «вау-фактора» предыдущих iPhone. "
          "Тем не менее, его сила и интеллект не имеют себе равных.")
    assert kinds(LengthFilter(), en, ru) == []
    # the same translation with its last sentence gone is an omission, colon or not
    assert kinds(LengthFilter(), en, ru[: ru.rindex(" Тем не менее")]) == ["length/omission"]


def test_align_beads():
    cfg = FilterConfig().length
    kw = {"ratio": cfg.sentence_ratio, "var": cfg.sentence_var, "gap_prior": cfg.gap_prior}
    one_to_one = [(b.i, b.a, b.j, b.b) for b in align([50, 120, 80], [53, 128, 85], **kw)]
    assert one_to_one == [(0, 1, 0, 1), (1, 1, 1, 1), (2, 1, 2, 1)]
    merged = [(b.i, b.a, b.j, b.b) for b in align([50, 120, 80], [180, 85], **kw)]
    assert merged == [(0, 2, 0, 1), (2, 1, 1, 1)]
    lost = [(b.i, b.a, b.j, b.b) for b in align([60, 130, 140, 90], [135, 150, 95], **kw)]
    assert lost == [(0, 1, 0, 0), (1, 1, 0, 1), (2, 1, 1, 1), (3, 1, 2, 1)]
    added = [(b.i, b.a, b.j, b.b) for b in align([130, 140, 90], [135, 150, 60, 95], **kw)]
    assert added == [(0, 1, 0, 1), (1, 1, 1, 1), (2, 0, 2, 1), (2, 1, 3, 1)]
    assert len(align([40] * 3000, [42] * 3000, **kw)) == 3000  # banded: linear in the length


# ---- numbers: compounds --------------------------------------------------------------------------

@pytest.mark.parametrize(
    ("en", "ru"),
    [
        ("Picture yourself as a 100-years-old tree.", "Представьте, что вы столетнее дерево."),
        ("A 3-story house with a 12-hour guard.", "Трёхэтажный дом с двенадцатичасовой охраной."),
        ("It took 21 days.", "Это заняло двадцать один день."),
        ("It took twenty-one days.", "Это заняло 21 день."),
        ("A three-day trip for 5 people.", "Поездка на 3 дня для пяти человек."),
        ("The 1000-year history.", "Тысячелетняя история."),
    ],
)
def test_numbers_read_compound_number_words(en, ru):
    assert kinds(NumbersFilter(), en, ru) == []


@pytest.mark.parametrize(
    ("en", "ru", "kind"),
    [
        ("It took 21 days.", "Это заняло двадцать дней.", "numbers/missing"),  # "двадцать" is 20, not 21
        ("It took twenty-one days.", "Это заняло 20 дней.", "numbers/added"),
        ("A 3-story house.", "Пятиэтажный дом.", "numbers/missing"),
        ("He held 7 seminars.", "Он провёл семинары.", "numbers/missing"),  # "семинар" is no "семи-" compound
    ],
)
def test_numbers_compound_words_do_not_hide_a_changed_number(en, ru, kind):
    assert kinds(NumbersFilter(), en, ru) == [kind]
