"""ASCII art, text-game boards and table syntax: non-letter lines must survive byte-identical.

A non-letter line is one where words of 2+ letters make up less than `art_max_word_fraction`
of its non-space characters: ASCII art, boards (" X | O | X ", "---+---+---",
"[r][n][b][q][k][b][n][r]"), box drawing, markdown table delimiter rows, numeric rows. Our
translator keeps such lines verbatim, so each one of the original (counted with multiplicity,
trailing whitespace ignored) must appear as a line of the translation; a Cyrillic "Х"/"О" for
"X"/"O", a changed character or a reflowed line is a failure.

Markdown tables: rows keep their shape (number of cells) and their non-letter cells (numbers,
marks) verbatim; cells with words are translated and not checked here. Code blocks are left to
the code filter.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator

from .base import Filter, MessagePair, Reason, clip
from .text import TextInfo, analyze, is_art_line, is_non_letter, table_cells


def art_lines(info: TextInfo, max_word_fraction: float, min_chars: int) -> list[str]:
    out = []
    for k, ln in enumerate(info.lines):
        if info.code_block[k] or info.fence_marker[k] or info.table_row[k]:
            continue
        if is_art_line(ln, max_word_fraction, min_chars):
            out.append(ln.rstrip())
    return out


def table_shape_and_cells(info: TextInfo, max_word_fraction: float) -> tuple[Counter[int], Counter[str]]:
    widths: Counter[int] = Counter()
    cells: Counter[str] = Counter()
    for k, ln in enumerate(info.lines):
        if not info.table_row[k]:
            continue
        cs = table_cells(ln)
        widths[len(cs)] += 1
        cells.update(c for c in cs if c and is_non_letter(c, max_word_fraction))
    return widths, cells


class AsciiArtFilter(Filter):
    name = "ascii_art"

    def check_message(self, p: MessagePair) -> Iterator[Reason]:
        cfg = self.cfg
        ei, ri = analyze(p.en), analyze(p.ru)
        want = Counter(art_lines(ei, cfg.max_word_fraction, cfg.min_chars))
        if want:
            have = Counter(ln.rstrip() for ln in ri.lines)
            missing = want - have
            n = sum(missing.values())
            if n > cfg.max_missing_lines:
                first = next(iter(missing))
                yield self.reason(
                    "lines",
                    f"{n} of {sum(want.values())} non-letter lines not kept verbatim, "
                    f"e.g. {clip(first, 50)!r}",
                )
        e_widths, e_cells = table_shape_and_cells(ei, cfg.max_word_fraction)
        if e_widths:
            r_widths, r_cells = table_shape_and_cells(ri, cfg.max_word_fraction)
            if r_widths != e_widths:
                yield self.reason(
                    "table_shape",
                    f"table rows by cell count {dict(sorted(r_widths.items()))} != source "
                    f"{dict(sorted(e_widths.items()))}",
                )
            lost = e_cells - r_cells
            n = sum(lost.values())
            if n > cfg.max_missing_cells:
                yield self.reason("table_cells", f"{n} non-letter table cells altered, e.g. {clip(next(iter(lost)), 30)!r}")
