"""Numbers: every number of a paragraph must survive its translation.

Numbers are digit sequences with their separators, compared by value after normalising the two
conventions: English "1,000" / "3.5" and Russian "1 000" (also with a no-break or thin space) /
"3,5" are the same numbers. A separator that could be either ("1,500" in a Russian text, "1.000")
matches both readings. A number in digits on one side may be a number word on the other
("three" -> "3", "5" -> "пяти"); the words known are the cardinals and ordinals 0-20, the tens,
100 and 1000 in English (with 21-99 as num2words hyphenates them, "twenty-one") and, in Russian,
every case, gender and number form num2words generates for them ("двух", "двумя", "третьего"),
and Roman numerals II-XXXIX ("XIX век"). A tens word followed by a unit word ("двадцать один",
"twenty one") is their sum. Parts of a hyphenated word count ("three-day", "пяти-шести"), and
so does a numeral stem opening a Russian compound of a measure ("столетнее" for "100-years-old",
"трёхэтажный", "пятиминутный", "тысячелетие"): Russian writes those as one word.

A number changed, dropped or invented rejects, naming the number.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from decimal import Decimal, InvalidOperation
from functools import lru_cache
from typing import TypeVar

from .base import Filter, ParagraphPair, Reason

# thousands separators: ",", ".", space, no-break space, narrow no-break space, thin space
_SEP = r"[,.\u0020\u00a0\u202f\u2009]"
_NUMBER_RE = re.compile(r"(?<![\d.,])\d{1,3}(?:" + _SEP + r"\d{3})+(?:[.,]\d+)?(?![\d])|(?<![\d])\d+(?:,\d{1,3}(?!\d)|\.\d+)?(?![\d])")
_SPACES = "\u0020\u00a0\u202f\u2009"

Number = tuple[str, frozenset[Decimal]]  # a number in digits as written, and its readings


def _dec(s: str) -> Decimal | None:
    try:
        return Decimal(s).normalize()
    except InvalidOperation:
        return None


def readings(token: str) -> frozenset[Decimal]:
    """Every value a number token can stand for in English or Russian text."""
    out: set[Decimal | None] = set()
    t = token
    for sp in _SPACES:
        t = t.replace(sp, " ")
    if " " in t:  # a space only ever groups thousands
        head, _, tail = t.replace(" ", "").rpartition(",") if "," in t.split(" ")[-1] else (t.replace(" ", ""), "", "")
        out.add(_dec(f"{head}.{tail}" if tail else head))
        return frozenset(x for x in out if x is not None)
    seps = [c for c in t if c in ",."]
    if not seps:
        out.add(_dec(t))
    elif len(seps) == 1:
        a, b = re.split(r"[,.]", t)
        out.add(_dec(f"{a}.{b}"))  # a decimal point or comma
        if len(b) == 3:
            out.add(_dec(a + b))  # a thousands separator
    else:
        # "1,000,000", "1.000.000", "1,000.5", "1.000,5": the last separator may be the decimal one
        digits = re.split(r"[,.]", t)
        if len(set(seps)) == 1:
            out.add(_dec("".join(digits)))
        else:
            out.add(_dec("".join(digits[:-1]) + "." + digits[-1]))
    return frozenset(x for x in out if x is not None)


def numbers_in(text: str) -> list[Number]:
    return [(m.group(0), readings(m.group(0))) for m in _NUMBER_RE.finditer(text)]


_WORD_VALUES = [*range(0, 21), 30, 40, 50, 60, 70, 80, 90, 100, 1000]
_WORD_RE = re.compile(r"[^\W\d_]+(?:-[^\W\d_]+)*")


@lru_cache(maxsize=1)
def number_words() -> dict[str, dict[str, frozenset[Decimal]]]:
    """lang -> word -> values: the small numbers as words, built once from num2words."""
    from num2words import num2words

    table: dict[str, dict[str, set[Decimal]]] = {"en": {}, "ru": {}}

    def add(lang: str, words: str, n: int) -> None:
        w = words.lower().replace("ё", "е")
        if " " not in w:  # compound numerals are not read (module docstring)
            table[lang].setdefault(w, set()).add(Decimal(n))

    for n in sorted({*range(0, 100), *_WORD_VALUES}):  # 21-99 are one hyphenated word in English
        for to in ("cardinal", "ordinal"):
            add("en", num2words(n, lang="en", to=to), n)
    for n in _WORD_VALUES:
        for case in ("n", "g", "d", "a", "i", "p"):
            for gender in ("m", "f", "n"):
                for plural in (False, True):
                    for animate in (True, False):
                        kw = {"case": case, "gender": gender, "plural": plural, "animate": animate}
                        try:
                            add("ru", num2words(n, lang="ru", **kw), n)
                            add("ru", num2words(n, lang="ru", to="ordinal", **kw), n)
                        except (TypeError, NotImplementedError, KeyError):  # a form num2words lacks
                            continue
    for w in ("a", "an"):  # "a hundred", "one" as an article aside: the digits "1" must not need them
        table["en"].pop(w, None)
    table["en"].update({"dozen": {Decimal(12)}, "once": {Decimal(1)}, "twice": {Decimal(2)}})
    table["ru"].update({"тысяча": {Decimal(1000)}, "тысячи": {Decimal(1000)}, "тысячу": {Decimal(1000)}})
    # Russian writes centuries in Roman numerals ("19th-century" -> "XIX века"); single letters
    # ("C", "V") are left out, they are names far more often
    for n in range(2, 40):
        roman = "x" * (n // 10) + ("", "i", "ii", "iii", "iv", "v", "vi", "vii", "viii", "ix")[n % 10]
        if len(roman) > 1:
            table["ru"].setdefault(roman, set()).add(Decimal(n))
    return {lang: {w: frozenset(v) for w, v in t.items()} for lang, t in table.items()}


#: Russian numeral stems that open a compound adjective or noun ("сто|летний", "двух|этажный"):
#: the genitive of the numeral, plus the forms compounds use instead ("одно", "дву", "сто", "тысяче")
_RU_STEMS = {"одно": 1, "дву": 2, "сто": 100, "тысяче": 1000, "полу": None}
#: the second half of such a compound: measures of time, size, count (a word that merely starts
#: like a numeral, "семинар", "сорока", "сторона", never reaches this list)
_RU_COMPOUND_ROOTS = (
    "лет", "летн", "годичн", "веков", "месяч", "недельн", "днев", "час", "минут", "секунд",
    "метр", "километр", "сантиметр", "градус", "процент", "тонн", "литр", "граммов", "комнатн",
    "мест", "этаж", "крат", "раз", "уровнев", "мерн", "сторон", "уголь", "значн", "томн",
    "серийн", "ступенчат", "цветн", "голосн", "ходов", "колесн", "цилиндров", "ядерн", "слойн",
    "звездочн", "звёздочн", "кратн", "летие", "полосн", "местн",
)


@lru_cache(maxsize=1)
def _ru_stems() -> list[tuple[str, Decimal]]:
    """(stem, value), longest first, so "двенадцати" is not read as "дву"+..."""
    from num2words import num2words

    stems = {w: Decimal(n) for w, n in _RU_STEMS.items() if n is not None}
    for n in _WORD_VALUES:
        if n:
            stems.setdefault(num2words(n, lang="ru", case="g").replace("ё", "е"), Decimal(n))
    return sorted(stems.items(), key=lambda t: -len(t[0]))


def _compound_value(word: str) -> frozenset[Decimal] | None:
    """The number a Russian compound word opens with ("столетнее" -> 100), None if it does not."""
    for stem, n in _ru_stems():
        if word.startswith(stem) and word[len(stem):].startswith(_RU_COMPOUND_ROOTS):
            return frozenset({n})
    return None


def _value_of(word: str, table: dict[str, frozenset[Decimal]], lang: str) -> frozenset[Decimal] | None:
    if word in table:
        return table[word]
    if lang == "ru":
        return _compound_value(word)
    return None


def word_numbers(text: str, lang: str) -> list[frozenset[Decimal]]:
    """The values of the number words of `text`, one entry per number written in words."""
    table = number_words()[lang]
    out: list[frozenset[Decimal]] = []
    tens_open = False  # the last entry was a bare tens word a unit word may complete
    for token in _WORD_RE.findall(text.lower().replace("ё", "е")):
        whole = _value_of(token, table, lang)
        parts = [whole] if whole is not None else [_value_of(w, table, lang) for w in token.split("-")]
        for v in parts:
            if v is None:
                tens_open = False
                continue
            tens = [x for x in v if 20 <= x <= 90 and x % 10 == 0]
            units = [x for x in v if 1 <= x <= 9]
            if tens_open and units and len(token.split("-")) == 1:
                out[-1] = frozenset(t + u for t in out[-1] for u in units)
                tens_open = False
                continue
            out.append(v)
            tens_open = bool(tens) and "-" not in token
    return out


def _values(x: Number | frozenset[Decimal]) -> frozenset[Decimal]:
    return x if isinstance(x, frozenset) else x[1]


L = TypeVar("L", Number, frozenset[Decimal])
R = TypeVar("R", Number, frozenset[Decimal])


def _match(left: list[L], right: list[R]) -> tuple[list[L], list[R]]:
    """Pair each item of `left`, in order, with the first still-unpaired item of `right` that
    shares a value with it; (unpaired of `left`, unpaired of `right`). Greedy, so not symmetric:
    callers keep the side order they mean."""
    rest = list(right)
    unpaired = []
    for a in left:
        va = _values(a)
        k = next((k for k, b in enumerate(rest) if _values(b) & va), None)
        if k is None:
            unpaired.append(a)
        else:
            rest.pop(k)
    return unpaired, rest


def compare(en: str, ru: str, *, words: bool = True) -> tuple[list[str], list[str]]:
    """(numbers of `en` not found in `ru`, numbers of `ru` not in `en`), each as written."""
    missing, added = _match(numbers_in(en), numbers_in(ru))
    if words and (missing or added):
        en_words, ru_words = word_numbers(en, "en"), word_numbers(ru, "ru")
        # a number word the other side's words do not pair with may stand for a leftover
        # number in digits of that other side (each word once)
        spare_ru, spare_en = _match(ru_words, en_words)[0], _match(en_words, ru_words)[0]
        missing, added = _match(missing, spare_ru)[0], _match(added, spare_en)[0]
    return [t for t, _ in missing], [t for t, _ in added]


class NumbersFilter(Filter):
    name = "numbers"

    def check_paragraph(self, p: ParagraphPair) -> Iterator[Reason]:
        missing, new = compare(p.en, p.ru, words=self.cfg.word_numbers)
        if len(missing) + len(new) <= self.cfg.max_mismatches:
            return
        if missing and new:
            yield self.reason("changed", f"{', '.join(missing[:3])} became {', '.join(new[:3])}")
        elif missing:
            yield self.reason("missing", f"{', '.join(missing[:3])} not in the translation")
        else:
            yield self.reason("added", f"{', '.join(new[:3])} not in the source")
