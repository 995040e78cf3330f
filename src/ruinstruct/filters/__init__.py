"""Automatic removal of corrupted translations (the paper removed them by hand).

Each filter is a small class with one method, `check(ru, en) -> Decision`, comparing a
translated dialog with its English original:

    structure   empty/truncated output, role sequence, message and line counts
    repetition  loops the source does not have (Gopher n-gram statistics, word runs,
                substring loops, punctuation runs, runaway length)
    code        code tokens, indentation, fences, inline code and URLs of the source altered
    ascii_art   non-letter lines (ASCII art, boards, table delimiters) and table cells altered
    language    too little Cyrillic for the source's prose, copied English, non-Russian Cyrillic
    garbage     mixed-script words, Latin words not in the source, symbol junk

`apply_filters(pairs, cfg)` runs them all and keeps every reason; `filter_report(result)`
summarises a run. Thresholds live in `FilterConfig`.
"""

from .apply import (
    PAIRING,
    REGISTRY,
    FilterResult,
    apply_filters,
    build_filters,
    check_pair,
    filter_report,
    pair_with_originals,
)
from .ascii_art import AsciiArtFilter
from .base import Decision, Filter, reason_kind
from .code import CodeFilter
from .config import FILTER_NAMES, FilterConfig
from .garbage import GarbageFilter
from .language import LanguageFilter
from .repetition import RepetitionFilter
from .structure import StructureFilter

__all__ = [
    "FILTER_NAMES",
    "PAIRING",
    "REGISTRY",
    "AsciiArtFilter",
    "CodeFilter",
    "Decision",
    "Filter",
    "FilterConfig",
    "FilterResult",
    "GarbageFilter",
    "LanguageFilter",
    "RepetitionFilter",
    "StructureFilter",
    "apply_filters",
    "build_filters",
    "check_pair",
    "filter_report",
    "pair_with_originals",
    "reason_kind",
]
