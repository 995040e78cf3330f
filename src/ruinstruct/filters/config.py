"""Thresholds of the corruption filters (the `filters:` section of a run config).

Each filter has its own section (`filters.repetition.max_token_run`, ...). Most thresholds are
about how much *worse* the translation may be than its source (a source that legitimately
repeats a chorus, or is mostly code, is not held against its translation). Defaults were tuned
on the labelled set in tests/fixtures/filter_set.jsonl (bench/filters.py prints the metrics);
configs/paper.yaml spells them out.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, field_validator

FILTER_NAMES = (
    "structure",
    "repetition",
    "code",
    "ascii_art",
    "language",
    "garbage",
    "numbers",
    "untranslated",
    "length",
    "confidence",
)


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class StructureConfig(_Section):
    """Empty or truncated output, broken role structure, lost line breaks."""

    require_same_line_count: bool = Field(
        default=True,
        description="each message must keep its number of lines (the translation is paragraph-wise)",
    )
    min_length_ratio: float = Field(
        default=0.45, ge=0, description="a message shorter than ratio * source chars - slack is truncated"
    )
    length_slack_chars: int = Field(
        default=10, ge=0, description="slack (chars) for the truncation test; helps very short messages"
    )


class RepetitionConfig(_Section):
    """Loops of the translation model that its source does not have."""

    max_length_ratio: float = Field(
        default=1.8, gt=0, description="a message longer than ratio * source chars + slack is a runaway"
    )
    length_slack_chars: int = Field(
        default=40, ge=0, description="slack (chars) for the runaway-length test; helps short messages"
    )
    min_words: int = Field(
        default=50,
        ge=1,
        description="word n-gram statistics need at least this many words in the translation (Gopher's document "
        "minimum; on shorter texts Russian's missing articles and spelled-out abbreviations make them noisy)",
    )
    margin: float = Field(
        default=0.10,
        ge=0,
        description="a Gopher statistic fails only when the translation exceeds its source's value by this much",
    )
    source_factor: float = Field(
        default=1.5,
        ge=1,
        description="a statistic (Gopher value, letter run, loop length) must also exceed the source's value times "
        "this factor: a source that is itself repetitive, e.g. a refrain, may come out somewhat more repetitive "
        "in Russian",
    )
    top_ngram_min_count: int = Field(
        default=3,
        ge=2,
        description="the top n-gram statistic counts only n-grams seen this many times (a phrase said twice "
        "is normal in short answers; a loop repeats)",
    )
    dup_line_max: float = Field(
        default=0.20, ge=0, le=1, description="max fraction of characters in duplicated lines (Gopher)"
    )
    top_ngram_max: dict[int, float] = Field(
        default_factory=lambda: {2: 0.20, 3: 0.18, 4: 0.16},
        description="n -> max char fraction of the most frequent word n-gram (Gopher)",
    )
    dup_ngram_max: dict[int, float] = Field(
        default_factory=lambda: {5: 0.15, 6: 0.14, 7: 0.13, 8: 0.12, 9: 0.11, 10: 0.10},
        description="n -> max char fraction covered by duplicated word n-grams (Gopher)",
    )
    max_token_run: int = Field(
        default=4,
        ge=2,
        description="a run of this many consecutive words with the same stem (e.g. 'Р Р Р Р') is a loop "
        "unless the source has as long a run",
    )
    stem_chars: int = Field(
        default=5, ge=1, description="words are compared by their first N letters (Russian inflects)"
    )
    loop_min_chars: int = Field(
        default=12,
        ge=4,
        description="a substring repeated 3+ times back to back covering this many chars is a loop "
        "(e.g. 'ФразаФразаФраза'), unless the source has a comparable one",
    )
    loop_max_unit: int = Field(
        default=80, ge=1, le=200, description="longest repeated unit (chars) the loop detector looks for"
    )
    letter_run_min: int = Field(
        default=4,
        ge=3,
        description="a run of one letter this long ('оооооо') fails unless the source has a comparable run",
    )
    symbol_run_min: int = Field(
        default=2,
        ge=2,
        description="runs of one punctuation char ('--', '::::') at least this long in prose must not be "
        "longer than the source's longest run of that char",
    )


class CodeConfig(_Section):
    """Source code whose tokens, spacing or indentation the translation altered."""

    max_missing_fraction: float = Field(
        default=0.0,
        ge=0,
        le=1,
        description="max fraction of the source's code tokens (keywords, identifiers, brackets, operators; "
        "comments and string contents ignored) missing from the translation",
    )
    min_missing_tokens: int = Field(
        default=1, ge=1, description="code fails only when at least this many code tokens are missing"
    )
    max_altered_lines: int = Field(
        default=0,
        ge=0,
        description="max code lines not found with their exact spacing/punctuation (comments and string "
        "contents aside)",
    )
    max_lost_indents: int = Field(
        default=0, ge=0, description="max number of indented code lines whose indentation is not found"
    )
    check_inline: bool = Field(
        default=True, description="inline `code` spans and URLs of the source must appear verbatim"
    )


class AsciiArtConfig(_Section):
    """Non-letter lines (ASCII art, boards, table syntax) and table cells altered."""

    min_chars: int = Field(
        default=3, ge=1, description="a non-letter line needs at least this many non-space chars to be checked"
    )
    max_word_fraction: float = Field(
        default=0.3,
        ge=0,
        le=1,
        description="a line (or table cell) is non-letter when words of 2+ letters make up less than this "
        "share of its non-space chars (ASCII art, boards like 'X | O | X', '|---|---|')",
    )
    max_missing_lines: int = Field(
        default=0, ge=0, description="max source non-letter lines not found verbatim in the translation"
    )
    max_missing_cells: int = Field(
        default=0, ge=0, description="max non-letter markdown table cells (numbers, marks) not found in the translation"
    )


class LanguageConfig(_Section):
    """Too little Cyrillic, copied English segments, non-Russian Cyrillic."""

    min_source_letters: int = Field(
        default=12,
        ge=1,
        description="the Cyrillic test runs only when the source has this many letters of translatable prose "
        "(lowercase English words outside code/art/URLs)",
    )
    min_cyrillic_ratio: float = Field(
        default=0.5,
        ge=0,
        le=1,
        description="Cyrillic share of the translation's letters must be >= ratio * the source's share of "
        "translatable prose letters (names, code, numbers may stay Latin)",
    )
    line_min_words: int = Field(
        default=3,
        ge=1,
        description="a translatable segment of the source with this many words (one of them a lowercase English "
        "word) that reappears verbatim in the translation is untranslated",
    )
    max_foreign_cyrillic: float = Field(
        default=0.01,
        ge=0,
        le=1,
        description="max share of Cyrillic letters that Russian does not use (і ї є ґ ў ј љ њ ...): "
        "Ukrainian/Serbian output",
    )


class GarbageConfig(_Section):
    """Mixed-script words, new Latin words, symbol junk."""

    min_latin_word: int = Field(
        default=5, ge=2, description="Latin words of at least this length must come from the source"
    )
    max_new_latin_words: int = Field(
        default=0, ge=0, description="max Latin words in translated prose that the source does not contain"
    )
    min_isolated_letters: int = Field(
        default=4,
        ge=2,
        description="a chunk like '[r][n][b][q]' with this many single letters and no word is junk "
        "(unless the source has it)",
    )
    min_symbol_line_chars: int = Field(
        default=4,
        ge=1,
        description="a new line without any word, of at least this many chars, that the source does not have is junk",
    )


class NumbersConfig(_Section):
    """Numbers of each paragraph must survive translation (changed, dropped or invented numbers)."""

    word_numbers: bool = Field(
        default=True,
        description="a number written in digits on one side may be a word on the other ('three' -> '3', "
        "'5' -> 'пяти'): cardinals and ordinals 0-20, the tens, 100 and 1000, in every Russian case form "
        "num2words generates, English 21-99 ('twenty-one'), tens + unit ('двадцать один') and Russian "
        "compounds of a measure ('столетний' for '100-year-old', 'трёхэтажный')",
    )
    max_mismatches: int = Field(
        default=0, ge=0, description="numbers per paragraph allowed to differ (changed, missing or new)"
    )


class UntranslatedConfig(_Section):
    """Sentences of the translation still in English (lingua language identification per sentence)."""

    min_latin_words: int = Field(
        default=3,
        ge=1,
        description="a sentence is looked at only when it has this many Latin words of 2+ letters outside "
        "code spans, URLs and other protected spans",
    )
    min_lowercase_words: int = Field(
        default=2,
        ge=0,
        description="... of which this many are lowercase: names, titles and terms kept in Latin script are "
        "capitalised or short",
    )
    max_cyrillic_share: float = Field(
        default=0.3,
        ge=0,
        le=1,
        description="a sentence with a larger share of Cyrillic letters is Russian with some Latin in it",
    )
    min_confidence: float = Field(
        default=0.9,
        ge=0,
        le=1,
        description="lingua's confidence that the sentence is English (English vs Russian) needed to reject",
    )


class LengthConfig(_Section):
    """Omissions and hallucinations: per paragraph pair, length ratio and sentences aligned by length.

    Calibrated on real EN->RU machine translations (see filters/length.py for the figures)."""

    ratio_mean: float = Field(
        default=1.04,
        gt=0,
        description="expected Russian/English character ratio of a paragraph (geometric mean on real MT)",
    )
    ratio_log_sd: float = Field(
        default=0.13, gt=0, description="standard deviation of the log character ratio on real MT"
    )
    max_sd: float = Field(
        default=3.5,
        gt=0,
        description="a paragraph whose log ratio is more than this many standard deviations from the mean "
        "(after the slack) is far too short or too long",
    )
    slack_chars: int = Field(
        default=20,
        ge=0,
        description="characters added to both lengths before the ratio test, so short paragraphs ('Yes.', "
        "a heading) do not fail on a few characters",
    )
    sentence_share: float = Field(
        default=0.5,
        ge=0,
        le=1,
        description="with fewer (more) sentences than the source, the paragraph fails when it lost (gained) "
        "at least this share of the length the missing (extra) sentences account for",
    )
    sentence_ratio: float = Field(
        default=1.06,
        gt=0,
        description="expected Russian/English character ratio of a sentence, for aligning the sentences of a "
        "paragraph pair by length (Gale & Church's c)",
    )
    sentence_var: float = Field(
        default=2.0,
        gt=0,
        description="variance of (Russian length - sentence_ratio * English length) per English character "
        "(Gale & Church's s2)",
    )
    gap_prior: float = Field(
        default=0.005,
        gt=0,
        lt=1,
        description="prior probability of a sentence with no counterpart on the other side; a source sentence "
        "left alone on the cheapest alignment is an omission, a translated one an addition",
    )


class ConfidenceConfig(_Section):
    """Translator confidence: the lowest length-normalised log-probability of a dialog's units."""

    min_logprob: float | None = Field(
        default=None,
        description="drop a dialog whose lowest unit score (meta['mt_logprob']) is below this; None keeps "
        "all (the report still shows the distribution) until it is calibrated on real WMT21 output",
    )
    missing_ok: bool = Field(
        default=True,
        description="dialogs without scores (no meta['mt_logprob'], or only None entries) are kept",
    )


class FilterConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    enabled: list[str] | None = Field(
        default=None,
        description=f"filter names to run, in this order; None = all ({', '.join(FILTER_NAMES)})",
    )
    structure: StructureConfig = Field(default_factory=StructureConfig, description=StructureConfig.__doc__)
    repetition: RepetitionConfig = Field(default_factory=RepetitionConfig, description=RepetitionConfig.__doc__)
    code: CodeConfig = Field(default_factory=CodeConfig, description=CodeConfig.__doc__)
    ascii_art: AsciiArtConfig = Field(default_factory=AsciiArtConfig, description=AsciiArtConfig.__doc__)
    language: LanguageConfig = Field(default_factory=LanguageConfig, description=LanguageConfig.__doc__)
    garbage: GarbageConfig = Field(default_factory=GarbageConfig, description=GarbageConfig.__doc__)
    numbers: NumbersConfig = Field(default_factory=NumbersConfig, description=NumbersConfig.__doc__)
    untranslated: UntranslatedConfig = Field(
        default_factory=UntranslatedConfig, description=UntranslatedConfig.__doc__
    )
    length: LengthConfig = Field(default_factory=LengthConfig, description=LengthConfig.__doc__)
    confidence: ConfidenceConfig = Field(default_factory=ConfidenceConfig, description=ConfidenceConfig.__doc__)

    @field_validator("enabled")
    @classmethod
    def _known_names(cls, v: list[str] | None) -> list[str] | None:
        if v is not None:
            unknown = [n for n in v if n not in FILTER_NAMES]
            if unknown:
                raise ValueError(f"unknown filter names {unknown}; known: {list(FILTER_NAMES)}")
        return v
