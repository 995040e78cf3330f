"""Language: the translation must be Russian wherever its source had translatable prose.

- Cyrillic share: the source's expected share is the fraction of its letters that sit in
  lowercase English words the translator translates (so names, code, numbers and URLs, which
  stay Latin, lower the expectation: "Titleist, Taylormade, Callaway" may stay as is). The
  translation's Cyrillic share of letters must reach `language_min_cyrillic_ratio` of that.
- Untranslated segments: a segment the translator translates (a sentence, a line, a table
  cell) with enough words, one of them a lowercase English word, that reappears verbatim in the
  translation (more often than the source keeps it verbatim in code or quotes).
- Wrong Cyrillic language: letters Russian does not use (Ukrainian і ї є ґ, Serbian ј љ њ ...).
"""

from __future__ import annotations

import re
from collections.abc import Iterator

from .base import Filter, MessagePair, Reason, clip
from .text import LOWER_EN_WORD_RE, NON_RUSSIAN_CYRILLIC, WORD_RE, is_cyrillic, translatable_text

#: characters that make a would-be sentence a command or expression
CODE_CHARS = re.compile(r"[|=<>{}*\\$#@]")
_CODE_CHARS = CODE_CHARS


class LanguageFilter(Filter):
    name = "language"

    def check_message(self, p: MessagePair) -> Iterator[Reason]:
        cfg = self.cfg
        units, verbatim = translatable_text(p.en)
        trans_letters = sum(len(w) - w.count("'") for w in LOWER_EN_WORD_RE.findall(units))
        en_letters = sum(c.isalpha() for c in p.en)
        ru_letters = sum(c.isalpha() for c in p.ru)
        ru_cyr = sum(is_cyrillic(c) for c in p.ru)
        if trans_letters >= cfg.min_source_letters and en_letters:
            expected = trans_letters / en_letters
            share = ru_cyr / ru_letters if ru_letters else 0.0
            if share < cfg.min_cyrillic_ratio * expected:
                yield self.reason(
                    "cyrillic",
                    f"Cyrillic share {share:.2f} < {cfg.min_cyrillic_ratio} x expected "
                    f"{expected:.2f}",
                )
        for unit in dict.fromkeys(units.split("\n")):
            if len(WORD_RE.findall(unit)) < cfg.line_min_words or not LOWER_EN_WORD_RE.search(unit):
                continue
            if _CODE_CHARS.search(unit):  # a command or expression the segmenter took for text
                continue
            if p.ru.count(unit) > verbatim.count(unit):
                yield self.reason("untranslated", f"{clip(unit)!r} copied verbatim")
                break
        if ru_cyr >= 20:
            foreign = sum(c in NON_RUSSIAN_CYRILLIC for c in p.ru) - sum(c in NON_RUSSIAN_CYRILLIC for c in p.en)
            if foreign / ru_cyr > cfg.max_foreign_cyrillic:
                yield self.reason("not_russian", f"{foreign} letters Russian does not use (і ї є ґ ...)")
