"""Thresholds of the corruption filters (the `filters:` section of a run config).

Every filter compares a translation with its English original, so most thresholds are about
how much *worse* the translation may be than its source (a source that legitimately repeats a
chorus, or is mostly code, is not held against its translation). Defaults were tuned on the
labelled set in tests/fixtures/filter_set.jsonl (bench/filters.py prints the metrics).
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, field_validator

FILTER_NAMES = ("structure", "repetition", "code", "ascii_art", "language", "garbage")


class FilterConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    enabled: list[str] | None = Field(
        default=None,
        description=f"filter names to run, in this order; None = all ({', '.join(FILTER_NAMES)})",
    )

    # ---- structure -----------------------------------------------------------------------
    structure_require_same_line_count: bool = Field(
        default=True,
        description="each message must keep its number of lines (the translation is paragraph-wise)",
    )
    structure_min_length_ratio: float = Field(
        default=0.45, ge=0, description="a message shorter than ratio * source chars - slack is truncated"
    )
    structure_length_slack_chars: int = Field(
        default=10, ge=0, description="slack (chars) for the truncation test; helps very short messages"
    )

    # ---- repetition ----------------------------------------------------------------------
    repetition_max_length_ratio: float = Field(
        default=1.8, gt=0, description="a message longer than ratio * source chars + slack is a runaway"
    )
    repetition_length_slack_chars: int = Field(
        default=40, ge=0, description="slack (chars) for the runaway-length test; helps short messages"
    )
    repetition_min_words: int = Field(
        default=50,
        ge=1,
        description="word n-gram statistics need at least this many words in the translation (Gopher's document "
        "minimum; on shorter texts Russian's missing articles and spelled-out abbreviations make them noisy)",
    )
    repetition_margin: float = Field(
        default=0.10,
        ge=0,
        description="a Gopher statistic fails only when the translation exceeds its source's value by this much",
    )
    repetition_source_factor: float = Field(
        default=1.5,
        ge=1,
        description="a statistic (Gopher value, letter run, loop length) must also exceed the source's value times "
        "this factor: a source that is itself repetitive, e.g. a refrain, may come out somewhat more repetitive "
        "in Russian",
    )
    repetition_top_ngram_min_count: int = Field(
        default=3,
        ge=2,
        description="the top n-gram statistic counts only n-grams seen this many times (a phrase said twice "
        "is normal in short answers; a loop repeats)",
    )
    repetition_dup_line_max: float = Field(
        default=0.20, ge=0, le=1, description="max fraction of characters in duplicated lines (Gopher)"
    )
    repetition_top_ngram_max: dict[int, float] = Field(
        default_factory=lambda: {2: 0.20, 3: 0.18, 4: 0.16},
        description="n -> max char fraction of the most frequent word n-gram (Gopher)",
    )
    repetition_dup_ngram_max: dict[int, float] = Field(
        default_factory=lambda: {5: 0.15, 6: 0.14, 7: 0.13, 8: 0.12, 9: 0.11, 10: 0.10},
        description="n -> max char fraction covered by duplicated word n-grams (Gopher)",
    )
    repetition_max_token_run: int = Field(
        default=4,
        ge=2,
        description="a run of this many consecutive words with the same stem (e.g. 'Р Р Р Р') is a loop "
        "unless the source has as long a run",
    )
    repetition_stem_chars: int = Field(
        default=5, ge=1, description="words are compared by their first N letters (Russian inflects)"
    )
    repetition_loop_min_chars: int = Field(
        default=12,
        ge=4,
        description="a substring repeated 3+ times back to back covering this many chars is a loop "
        "(e.g. 'ФразаФразаФраза'), unless the source has a comparable one",
    )
    repetition_loop_max_unit: int = Field(
        default=80, ge=1, le=200, description="longest repeated unit (chars) the loop detector looks for"
    )
    repetition_letter_run_min: int = Field(
        default=4,
        ge=3,
        description="a run of one letter this long ('оооооо') fails unless the source has a comparable run",
    )
    repetition_symbol_run_min: int = Field(
        default=2,
        ge=2,
        description="runs of one punctuation char ('--', '::::') at least this long in prose must not be "
        "longer than the source's longest run of that char",
    )

    # ---- code ----------------------------------------------------------------------------
    code_max_missing_fraction: float = Field(
        default=0.0,
        ge=0,
        le=1,
        description="max fraction of the source's code tokens (keywords, identifiers, brackets, operators; "
        "comments and string contents ignored) missing from the translation",
    )
    code_min_missing_tokens: int = Field(
        default=1, ge=1, description="code fails only when at least this many code tokens are missing"
    )
    code_max_altered_lines: int = Field(
        default=0,
        ge=0,
        description="max code lines not found with their exact spacing/punctuation (comments and string "
        "contents aside)",
    )
    code_max_lost_indents: int = Field(
        default=0, ge=0, description="max number of indented code lines whose indentation is not found"
    )
    code_check_inline: bool = Field(
        default=True, description="inline `code` spans and URLs of the source must appear verbatim"
    )

    # ---- ascii_art -----------------------------------------------------------------------
    art_min_chars: int = Field(
        default=3, ge=1, description="a non-letter line needs at least this many non-space chars to be checked"
    )
    art_max_word_fraction: float = Field(
        default=0.3,
        ge=0,
        le=1,
        description="a line (or table cell) is non-letter when words of 2+ letters make up less than this "
        "share of its non-space chars (ASCII art, boards like 'X | O | X', '|---|---|')",
    )
    art_max_missing_lines: int = Field(
        default=0, ge=0, description="max source non-letter lines not found verbatim in the translation"
    )
    art_max_missing_cells: int = Field(
        default=0, ge=0, description="max non-letter markdown table cells (numbers, marks) not found in the translation"
    )

    # ---- language ------------------------------------------------------------------------
    language_min_source_letters: int = Field(
        default=12,
        ge=1,
        description="the Cyrillic test runs only when the source has this many letters of translatable prose "
        "(lowercase English words outside code/art/URLs)",
    )
    language_min_cyrillic_ratio: float = Field(
        default=0.5,
        ge=0,
        le=1,
        description="Cyrillic share of the translation's letters must be >= ratio * the source's share of "
        "translatable prose letters (names, code, numbers may stay Latin)",
    )
    language_line_min_words: int = Field(
        default=3,
        ge=1,
        description="a translatable segment of the source with this many words (one of them a lowercase English "
        "word) that reappears verbatim in the translation is untranslated",
    )
    language_max_foreign_cyrillic: float = Field(
        default=0.01,
        ge=0,
        le=1,
        description="max share of Cyrillic letters that Russian does not use (і ї є ґ ў ј љ њ ...): "
        "Ukrainian/Serbian output",
    )

    # ---- garbage -------------------------------------------------------------------------
    garbage_min_latin_word: int = Field(
        default=5, ge=2, description="Latin words of at least this length must come from the source"
    )
    garbage_max_new_latin_words: int = Field(
        default=0, ge=0, description="max Latin words in translated prose that the source does not contain"
    )
    garbage_min_isolated_letters: int = Field(
        default=4,
        ge=2,
        description="a chunk like '[r][n][b][q]' with this many single letters and no word is junk "
        "(unless the source has it)",
    )
    garbage_min_symbol_line_chars: int = Field(
        default=4,
        ge=1,
        description="a new line without any word, of at least this many chars, that the source does not have is junk",
    )

    @field_validator("enabled")
    @classmethod
    def _known_names(cls, v: list[str] | None) -> list[str] | None:
        if v is not None:
            unknown = [n for n in v if n not in FILTER_NAMES]
            if unknown:
                raise ValueError(f"unknown filter names {unknown}; known: {list(FILTER_NAMES)}")
        return v
