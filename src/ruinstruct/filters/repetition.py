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

from ..schema import Dialog
from .base import Decision, Filter, clip, message_pairs
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


class RepetitionFilter(Filter):
    name = "repetition"

    def stats(self, text: str) -> dict[str, float]:
        cfg = self.cfg
        ws = words(text)
        out = {"dup_line": dup_line_char_fraction(text)}
        for n in sorted(cfg.repetition_top_ngram_max):
            out[f"top_{n}gram"] = top_ngram_char_fraction(ws, n, cfg.repetition_top_ngram_min_count)
        for n in sorted(cfg.repetition_dup_ngram_max):
            out[f"dup_{n}gram"] = dup_ngram_char_fraction(ws, n)
        return out

    def limits(self) -> dict[str, float]:
        cfg = self.cfg
        out = {"dup_line": cfg.repetition_dup_line_max}
        out.update({f"top_{n}gram": v for n, v in cfg.repetition_top_ngram_max.items()})
        out.update({f"dup_{n}gram": v for n, v in cfg.repetition_dup_ngram_max.items()})
        return out

    def check(self, ru: Dialog, en: Dialog) -> Decision:
        cfg = self.cfg
        reasons: list[str] = []
        limits = self.limits()
        for p in message_pairs(ru, en):
            r, e = p.ru, p.en
            if not r.strip():
                continue
            # runaway length
            if len(r) > cfg.repetition_max_length_ratio * len(e) + cfg.repetition_length_slack_chars:
                reasons.append(
                    self.reason(
                        "too_long",
                        f"{len(r)} chars vs source {len(e)} (ratio {len(r) / max(1, len(e)):.2f} "
                        f"> {cfg.repetition_max_length_ratio}) in {p.where}",
                    )
                )
            # Gopher statistics, relative to the source
            if len(words(r)) >= cfg.repetition_min_words:
                rs, es = self.stats(r), self.stats(e)
                failing = [
                    (rs[k] - es[k], k)
                    for k in rs
                    if rs[k] > max(limits[k], es[k] + cfg.repetition_margin, es[k] * cfg.repetition_source_factor)
                ]
                if failing:
                    _, k = max(failing)
                    more = f"; {len(failing) - 1} more statistics fail" if len(failing) > 1 else ""
                    reasons.append(
                        self.reason(k, f"{rs[k]:.2f} > {limits[k]:.2f} (source {es[k]:.2f}) in {p.where}{more}")
                    )
            ri, ei = analyze(r), analyze(e)
            prose = prose_of_translation(ri, ei)
            if not prose.strip():
                continue
            e_prose = prose_of_source(ei, cfg.art_max_word_fraction)
            factor = cfg.repetition_source_factor
            # one word over and over
            run, word = max_stem_run(prose, cfg.repetition_stem_chars)
            if run >= cfg.repetition_max_token_run:
                e_run, _ = max_stem_run(e_prose, cfg.repetition_stem_chars)
                if run > e_run:
                    reasons.append(self.reason("token_run", f"{word!r} x{run} (source max run {e_run}) in {p.where}"))
            # one letter held down ("ооооооо")
            lrun, letter = max_letter_run(prose)
            if lrun >= cfg.repetition_letter_run_min:
                e_lrun, _ = max_letter_run(e_prose)
                if lrun > factor * e_lrun:
                    reasons.append(self.reason("letter_run", f"{letter * lrun!r} (source max run {e_lrun}) in {p.where}"))
            # a word glued to itself ("ЭтоЭтоЭто")
            glued = glued_loops(prose)
            if len(glued) > len(glued_loops(e_prose)):
                reasons.append(self.reason("glued_loop", f"{clip(glued[0], 40)!r} in {p.where}"))
            # substring loops, spaces or not
            span, unit = longest_loop(prose, cfg.repetition_loop_max_unit)
            if span >= cfg.repetition_loop_min_chars:
                e_span, _ = longest_loop(e_prose, cfg.repetition_loop_max_unit)
                if span > factor * e_span:
                    reasons.append(
                        self.reason("loop", f"{clip(unit, 30)!r} repeated over {span} chars (source {e_span}) in {p.where}")
                    )
            # runs of one punctuation character
            e_runs = symbol_runs(e_prose)
            for c, n in sorted(symbol_runs(prose).items()):
                if n < cfg.repetition_symbol_run_min or n <= e_runs.get(c, 0):
                    continue
                if c in ".…" and n <= 3:  # an ellipsis
                    continue
                reasons.append(self.reason("char_run", f"{c * n!r} (source max {e_runs.get(c, 0)}) in {p.where}"))
                break
        return Decision(tuple(reasons))
