"""Numbers: every number of a paragraph must survive its translation.

Numbers are digit sequences with their separators, compared by value after normalising the two
conventions: English "1,000" / "3.5" and Russian "1 000" (also with a no-break or thin space) /
"3,5" are the same numbers. A separator that could be either ("1,500" in a Russian text, "1.000")
matches both readings. A number in digits on one side may be a number word on the other
("three" -> "3", "5" -> "пяти"); the words known are the cardinals and ordinals 0-20, the tens,
100 and 1000 in English and, in Russian, every case, gender and number form num2words generates
for them ("двух", "двумя", "третьего"), and Roman numerals II-XXXIX ("XIX век"). Compound words ("twenty-one", "двадцать один") are not
read: a paragraph that spells one out on one side and writes digits on the other fails.

A number changed, dropped or invented rejects, naming the number.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from decimal import Decimal, InvalidOperation
from functools import lru_cache

from .base import Filter, ParagraphPair, Reason

# thousands separators: ",", ".", space, no-break space, narrow no-break space, thin space
_SEP = r"[,.\u0020\u00a0\u202f\u2009]"
_NUMBER_RE = re.compile(r"(?<![\d.,])\d{1,3}(?:" + _SEP + r"\d{3})+(?:[.,]\d+)?(?![\d])|(?<![\d])\d+(?:,\d{1,3}(?!\d)|\.\d+)?(?![\d])")
_SPACES = "\u0020\u00a0\u202f\u2009"


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


def numbers_in(text: str) -> list[tuple[str, frozenset[Decimal]]]:
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

    for n in _WORD_VALUES:
        for to in ("cardinal", "ordinal"):
            add("en", num2words(n, lang="en", to=to), n)
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


def word_numbers(text: str, lang: str) -> list[frozenset[Decimal]]:
    """The values of the number words of `text`, one entry per word."""
    table = number_words()[lang]
    return [table[w] for w in _WORD_RE.findall(text.lower().replace("ё", "е")) if w in table]


def _forgive(unmatched: list[tuple[str, frozenset[Decimal]]], spare: list[frozenset[Decimal]]) -> list[str]:
    """Digits left over on one side, less those a spare number word of the other side accounts
    for (each word once)."""
    spare = list(spare)
    out = []
    for tok, vals in unmatched:
        k = next((k for k, w in enumerate(spare) if w & vals), None)
        if k is None:
            out.append(tok)
        else:
            spare.pop(k)
    return out


def _spare_words(mine: list[frozenset[Decimal]], theirs: list[frozenset[Decimal]]) -> list[frozenset[Decimal]]:
    """Number words of one side that the other side's number words do not pair with."""
    left = list(theirs)
    out = []
    for w in mine:
        k = next((k for k, t in enumerate(left) if t & w), None)
        if k is None:
            out.append(w)
        else:
            left.pop(k)
    return out


def compare(en: str, ru: str, *, words: bool = True) -> tuple[list[str], list[str]]:
    """(numbers of `en` not found in `ru`, numbers of `ru` not in `en`), each as written."""
    unmatched_r = numbers_in(ru)
    missing: list[tuple[str, frozenset[Decimal]]] = []
    for tok, vals in numbers_in(en):
        k = next((k for k, (_, rv) in enumerate(unmatched_r) if rv & vals), None)
        if k is None:
            missing.append((tok, vals))
        else:
            unmatched_r.pop(k)
    if words and (missing or unmatched_r):
        en_words, ru_words = word_numbers(en, "en"), word_numbers(ru, "ru")
        return (
            _forgive(missing, _spare_words(ru_words, en_words)),
            _forgive(unmatched_r, _spare_words(en_words, ru_words)),
        )
    return [t for t, _ in missing], [t for t, _ in unmatched_r]


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
