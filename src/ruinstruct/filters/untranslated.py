"""Untranslated fragments: a sentence of the translation still in English.

Sentence-level language identification (lingua, English vs Russian, models shipped in its
wheel, offline) finds the one sentence left in English inside a Russian paragraph, which the
language filter's verbatim and Cyrillic-share tests miss. Only paragraphs whose source has
translatable English prose are looked at, and in the translation only sentences with enough
Latin words, some lowercase, once protected spans (inline code, URLs, math, HTML) are set
aside: names, titles, terms and code kept in Latin script ("Virgin Australia Airlines Pty
Ltd", "Process Mining", `pip install x`) do not reject.
"""

from __future__ import annotations

from collections.abc import Iterator
from functools import lru_cache
from typing import Any

from ..translate.segment import WORD_RE, looks_like_code
from .base import Filter, ParagraphPair, Reason, clip
from .language import CODE_CHARS as _CODE_CHARS
from .text import LOWER_EN_WORD_RE, is_cyrillic, is_latin, sentences, strip_protected, translatable_text


@lru_cache(maxsize=1)
def detector() -> Any:
    """The English/Russian lingua detector, built once per process on first use."""
    from lingua import Language, LanguageDetectorBuilder

    return LanguageDetectorBuilder.from_languages(Language.ENGLISH, Language.RUSSIAN).build()


def english_confidence(text: str) -> float:
    from lingua import Language

    return float(detector().compute_language_confidence(text, Language.ENGLISH))


class UntranslatedFilter(Filter):
    name = "untranslated"

    def check_paragraph(self, p: ParagraphPair) -> Iterator[Reason]:
        cfg = self.cfg
        units, _ = translatable_text(p.en)
        if not LOWER_EN_WORD_RE.search(units):
            return  # nothing of the source's prose to translate here
        for line in p.ru.splitlines():
            if not line.strip() or looks_like_code(line):
                continue
            for s in sentences(strip_protected(line)):
                if _CODE_CHARS.search(s):  # a command or expression the segmenter took for text
                    continue
                latin = [w for w in WORD_RE.findall(s) if all(is_latin(c) for c in w)]
                if len(latin) < cfg.min_latin_words:
                    continue
                if sum(w.islower() for w in latin) < cfg.min_lowercase_words:
                    continue
                letters = sum(c.isalpha() for c in s)
                if letters and sum(is_cyrillic(c) for c in s) / letters > cfg.max_cyrillic_share:
                    continue
                conf = english_confidence(s)
                if conf >= cfg.min_confidence:
                    yield self.reason("english_sentence", f"{clip(s)!r} is English ({conf:.2f})")
                    return
