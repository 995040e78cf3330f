"""Automatic removal of corrupted translations (the paper removed them by hand).

Each filter is a small class comparing a translated dialog with its English original through
one or more hooks (`check_dialog`, `check_message`, `check_paragraph`; the base class `Filter`
owns the loops):

    structure     empty/truncated output, role sequence, message and line counts
    repetition    loops the source does not have (Gopher n-gram statistics, word runs,
                  substring loops, punctuation runs, runaway length)
    code          code tokens, indentation, fences, inline code and URLs of the source altered
    ascii_art     non-letter lines (ASCII art, boards, table delimiters) and table cells altered
    language      too little Cyrillic for the source's prose, copied English, non-Russian Cyrillic
    garbage       mixed-script words, Latin words not in the source, symbol junk
    numbers       numbers changed, dropped or invented (EN/RU separators and small number words aside)
    untranslated  a sentence of the translation still in English (lingua, per sentence)
    length        omitted or hallucinated sentences, paragraphs far too short or too long
    confidence    the translator's lowest unit log-probability below a threshold (off by default)

`apply_filters(pairs, cfg)` runs them all, keeps every reason (a structured `Reason`) and counts
drops per filter, rule and source; `filter_report(result)` summarises a run. Thresholds live
in `FilterConfig`, one section per filter.
"""

from .apply import (
    PAIRING,
    REGISTRY,
    FilterResult,
    SourceCounts,
    apply_filters,
    build_filters,
    check_pair,
    pair_with_originals,
)
from .ascii_art import AsciiArtFilter
from .base import Decision, Filter, MessagePair, ParagraphPair, Reason
from .code import CodeFilter
from .confidence import ConfidenceFilter
from .config import FILTER_NAMES, FilterConfig
from .garbage import GarbageFilter
from .language import LanguageFilter
from .length import LengthFilter
from .numbers import NumbersFilter
from .repetition import RepetitionFilter
from .report import filter_report, filter_report_markdown
from .structure import StructureFilter
from .untranslated import UntranslatedFilter

__all__ = [
    "FILTER_NAMES",
    "PAIRING",
    "REGISTRY",
    "AsciiArtFilter",
    "CodeFilter",
    "ConfidenceFilter",
    "Decision",
    "Filter",
    "FilterConfig",
    "FilterResult",
    "GarbageFilter",
    "LanguageFilter",
    "LengthFilter",
    "MessagePair",
    "NumbersFilter",
    "ParagraphPair",
    "Reason",
    "RepetitionFilter",
    "SourceCounts",
    "StructureFilter",
    "UntranslatedFilter",
    "apply_filters",
    "build_filters",
    "check_pair",
    "filter_report",
    "filter_report_markdown",
    "pair_with_originals",
]
