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

from ..schema import Dialog
from .base import Decision, Filter, clip, message_pairs
from .text import LOWER_EN_WORD_RE, NON_RUSSIAN_CYRILLIC, WORD_RE, is_cyrillic, translatable_text

_CODE_CHARS = re.compile(r"[|=<>{}*\\$#@]")


class LanguageFilter(Filter):
    name = "language"

    def check(self, ru: Dialog, en: Dialog) -> Decision:
        cfg = self.cfg
        reasons: list[str] = []
        for p in message_pairs(ru, en):
            units, verbatim = translatable_text(p.en)
            trans_letters = sum(len(w) - w.count("'") for w in LOWER_EN_WORD_RE.findall(units))
            en_letters = sum(c.isalpha() for c in p.en)
            ru_letters = sum(c.isalpha() for c in p.ru)
            ru_cyr = sum(is_cyrillic(c) for c in p.ru)
            if trans_letters >= cfg.language_min_source_letters and en_letters:
                expected = trans_letters / en_letters
                share = ru_cyr / ru_letters if ru_letters else 0.0
                if share < cfg.language_min_cyrillic_ratio * expected:
                    reasons.append(
                        self.reason(
                            "cyrillic",
                            f"Cyrillic share {share:.2f} < {cfg.language_min_cyrillic_ratio} x expected "
                            f"{expected:.2f} in {p.where}",
                        )
                    )
            for unit in dict.fromkeys(units.split("\n")):
                if len(WORD_RE.findall(unit)) < cfg.language_line_min_words or not LOWER_EN_WORD_RE.search(unit):
                    continue
                if _CODE_CHARS.search(unit):  # a command or expression the segmenter took for text
                    continue
                if p.ru.count(unit) > verbatim.count(unit):
                    reasons.append(self.reason("untranslated", f"{clip(unit)!r} copied verbatim in {p.where}"))
                    break
            if ru_cyr >= 20:
                foreign = sum(c in NON_RUSSIAN_CYRILLIC for c in p.ru) - sum(c in NON_RUSSIAN_CYRILLIC for c in p.en)
                if foreign / ru_cyr > cfg.language_max_foreign_cyrillic:
                    reasons.append(
                        self.reason("not_russian", f"{foreign} letters Russian does not use (і ї є ґ ...) in {p.where}")
                    )
        return Decision(tuple(reasons))
