"""Repetition: degenerate loops of the translation model that its source does not have.

Every statistic is computed on the translation and on its original; a message fails only when
the translation is clearly worse than the source, so a song chorus or a list that repeats by
design is kept. Rules:

- runaway length: far more characters than the source (slack for short texts);
- Gopher statistics (duplicate-line chars, top 2-4-gram char share, duplicated 5-10-gram char
  share) above the Gopher limit, above the source's value plus a margin and above the source's
  value times a factor;
- a run of one letter ("оооооооо");
- a run of words with one stem ("Р Р Р Р", "интригующий, интригующий, интригующим");
- a substring repeated back to back ("Фраза, фраза, фраза", "[Х][Х][Х]"), and a word glued to
  itself ("ЭтоЭтоЭто", "предложениеИнтересное предложение...");
- a run of one punctuation character ("::::::::", "Сила ----") longer than any in the source.

Run, loop and symbol rules compare the translation's prose (without code, inline code, URLs and
lines copied from the source, which other filters check) with the source's prose.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from .base import Filter, MessagePair, Reason, clip
from .text import (
    analyze,
    dup_line_char_fraction,
    dup_ngram_char_fraction,
    glued_loops,
    longest_loop,
    max_letter_run,
    max_stem_run,
    prose_of_source,
    prose_of_translation,
    symbol_runs,
    top_ngram_char_fraction,
    words,
)


@dataclass(frozen=True)
class _Prose:
    """The translation's prose and its source's prose (see the module docstring)."""

    ru: str
    en: str


class RepetitionFilter(Filter):
    name = "repetition"

    def stats(self, text: str) -> dict[str, float]:
        cfg = self.cfg
        ws = words(text)
        out = {"dup_line": dup_line_char_fraction(text)}
        for n in sorted(cfg.top_ngram_max):
            out[f"top_{n}gram"] = top_ngram_char_fraction(ws, n, cfg.top_ngram_min_count)
        for n in sorted(cfg.dup_ngram_max):
            out[f"dup_{n}gram"] = dup_ngram_char_fraction(ws, n)
        return out

    def limits(self) -> dict[str, float]:
        cfg = self.cfg
        out = {"dup_line": cfg.dup_line_max}
        out.update({f"top_{n}gram": v for n, v in cfg.top_ngram_max.items()})
        out.update({f"dup_{n}gram": v for n, v in cfg.dup_ngram_max.items()})
        return out

    def check_message(self, p: MessagePair) -> Iterator[Reason]:
        r, e = p.ru, p.en
        if not r.strip():
            return
        yield from _some(self.too_long(r, e), self.gopher(r, e))
        ri, ei = analyze(r), analyze(e)
        prose = _Prose(prose_of_translation(ri, ei), prose_of_source(ei, self.config.ascii_art.max_word_fraction))
        if not prose.ru.strip():
            return
        yield from _some(
            self.token_run(prose), self.letter_run(prose), self.glued_loop(prose), self.loop(prose), self.char_run(prose)
        )

    # ---- the rules, one per method ------------------------------------------------------------

    def too_long(self, r: str, e: str) -> Reason | None:
        """Runaway length: far more characters than the source (slack for short texts)."""
        cfg = self.cfg
        if len(r) > cfg.max_length_ratio * len(e) + cfg.length_slack_chars:
            return self.reason(
                "too_long",
                f"{len(r)} chars vs source {len(e)} (ratio {len(r) / max(1, len(e)):.2f} > {cfg.max_length_ratio})",
            )
        return None

    def gopher(self, r: str, e: str) -> Reason | None:
        """Gopher statistics above their limit, the source's value plus a margin and the source's
        value times a factor; the rule is named after the statistic that fails worst."""
        cfg = self.cfg
        if len(words(r)) < cfg.min_words:
            return None
        limits = self.limits()
        rs, es = self.stats(r), self.stats(e)
        failing = [
            (rs[k] - es[k], k)
            for k in rs
            if rs[k] > max(limits[k], es[k] + cfg.margin, es[k] * cfg.source_factor)
        ]
        if not failing:
            return None
        _, k = max(failing)
        more = f"; {len(failing) - 1} more statistics fail" if len(failing) > 1 else ""
        return self.reason(k, f"{rs[k]:.2f} > {limits[k]:.2f} (source {es[k]:.2f}){more}")

    def token_run(self, prose: _Prose) -> Reason | None:
        """One word (stem) over and over: a run of `max_token_run` or more, longer than the
        source's longest run."""
        cfg = self.cfg
        run, word = max_stem_run(prose.ru, cfg.stem_chars)
        if run < cfg.max_token_run:
            return None
        e_run, _ = max_stem_run(prose.en, cfg.stem_chars)
        if run > e_run:
            return self.reason("token_run", f"{word!r} x{run} (source max run {e_run})")
        return None

    def letter_run(self, prose: _Prose) -> Reason | None:
        """One letter held down ("ооооооо")."""
        cfg = self.cfg
        lrun, letter = max_letter_run(prose.ru)
        if lrun < cfg.letter_run_min:
            return None
        e_lrun, _ = max_letter_run(prose.en)
        if lrun > cfg.source_factor * e_lrun:
            return self.reason("letter_run", f"{letter * lrun!r} (source max run {e_lrun})")
        return None

    def glued_loop(self, prose: _Prose) -> Reason | None:
        """A word glued to itself ("ЭтоЭтоЭто"), more often than in the source."""
        glued = glued_loops(prose.ru)
        if len(glued) > len(glued_loops(prose.en)):
            return self.reason("glued_loop", f"{clip(glued[0], 40)!r}")
        return None

    def loop(self, prose: _Prose) -> Reason | None:
        """A substring repeated back to back, spaces or not ("Фраза, фраза, фраза")."""
        cfg = self.cfg
        span, unit = longest_loop(prose.ru, cfg.loop_max_unit)
        if span < cfg.loop_min_chars:
            return None
        e_span, _ = longest_loop(prose.en, cfg.loop_max_unit)
        if span > cfg.source_factor * e_span:
            return self.reason("loop", f"{clip(unit, 30)!r} repeated over {span} chars (source {e_span})")
        return None

    def char_run(self, prose: _Prose) -> Reason | None:
        """A run of one punctuation character longer than any in the source (an ellipsis aside)."""
        cfg = self.cfg
        e_runs = symbol_runs(prose.en)
        for c, n in sorted(symbol_runs(prose.ru).items()):
            if n < cfg.symbol_run_min or n <= e_runs.get(c, 0):
                continue
            if c in ".…" and n <= 3:  # an ellipsis
                continue
            return self.reason("char_run", f"{c * n!r} (source max {e_runs.get(c, 0)})")
        return None


def _some(*reasons: Reason | None) -> Iterator[Reason]:
    return (r for r in reasons if r is not None)
