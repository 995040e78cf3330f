"""Garbage: junk the translation model produced that has no counterpart in the source.

- mixed-script words ("Cтудент1Студент2" with a Latin "C"), which Russian text never has;
- Latin words in translated prose that the source does not contain (keyboard mash
  "asdfasdgdfgsdfg", hallucinated "Cactus"); names copied from the source are fine;
- symbol chunks of single letters ("[r][n][b][q][k][b][n][r]", "[Х][Х][Х][Х]") not in the source;
- extra symbol lines: more lines without any word than the source has.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterator

from .base import Filter, MessagePair, Reason, clip
from .text import (
    LETTER_RUN_RE,
    TOKEN_RE,
    TextInfo,
    analyze,
    is_cyrillic,
    is_latin,
    nonspace,
    prose_of_translation,
    word_letters,
)

_CHUNK_RE = re.compile(r"\S+")


def _mixed_script(token: str) -> bool:
    return any(is_latin(c) for c in token) and any(is_cyrillic(c) for c in token)


def _symbol_lines(info: TextInfo, min_chars: int) -> Counter[str]:
    """Lines without a single word of 2+ letters (outside fenced blocks)."""
    return Counter(
        ln.strip()
        for k, ln in enumerate(info.lines)
        if not (info.fenced[k] or info.fence_marker[k]) and nonspace(ln) >= min_chars and not word_letters(ln)
    )


class GarbageFilter(Filter):
    name = "garbage"

    def check_message(self, p: MessagePair) -> Iterator[Reason]:
        cfg = self.cfg
        ri, ei = analyze(p.ru), analyze(p.en)
        prose = prose_of_translation(ri, ei)
        mixed = [t for t in TOKEN_RE.findall(prose) if _mixed_script(t)]
        if mixed:
            yield self.reason("mixed_script", f"{clip(mixed[0], 30)!r} mixes Latin and Cyrillic")
        en_letters = "".join(c for c in p.en.lower() if c.isalpha())
        new_latin = [
            w
            for w in LETTER_RUN_RE.findall(prose)
            if len(w) >= cfg.min_latin_word and all(is_latin(c) for c in w) and w.lower() not in en_letters
        ]
        if len(new_latin) > cfg.max_new_latin_words:
            yield self.reason("new_latin", f"Latin word(s) not in the source: {', '.join(map(repr, new_latin[:3]))}")
        junk = []
        for k, ln in enumerate(ri.lines):
            if ri.fenced[k] or ri.fence_marker[k] or ri.code_like[k]:
                continue
            for chunk in _CHUNK_RE.findall(ln):
                runs = LETTER_RUN_RE.findall(chunk)
                if len(runs) >= cfg.min_isolated_letters and all(len(r) == 1 for r in runs) and chunk not in p.en:
                    junk.append(chunk)
        if junk:
            yield self.reason("symbol_chunk", f"{clip(junk[0], 40)!r}")

        r_sym = _symbol_lines(ri, cfg.min_symbol_line_chars)
        e_sym = _symbol_lines(ei, cfg.min_symbol_line_chars)
        extra = sum((r_sym - e_sym).values()) - sum((e_sym - r_sym).values())
        if extra > 0:
            first = next(iter(r_sym - e_sym))
            yield self.reason("symbol_lines", f"{extra} extra non-letter line(s), e.g. {clip(first, 40)!r}")
