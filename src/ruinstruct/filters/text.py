"""Text analysis shared by the filters: line roles, code tokens, repetition statistics.

Pure functions of strings. What counts as code or as a protected span follows the
translator's own segmentation (`ruinstruct.translate.segment`, whose patterns and helpers are
reused here), so a filter never demands that something survive verbatim which our translator
legitimately translates.

Every pattern runs in time linear in its input, also on adversarial strings (model output can
hold anything): repeats are bounded or cannot overlap, and where a failed match would be retried
from many starting positions the scan is organised so that it is not (see `_code_matches`).
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from functools import lru_cache

from ..translate.segment import (
    PIPE_RE,
    URL_RE,
    WORD_RE,
    code_spans,
    fence_closes,
    fence_open,
    inline_spans,
    is_table_delim,
    looks_like_code,
    segment,
    trim_url,
)

# ---- characters and words ----------------------------------------------------------------------

LETTER_RUN_RE = re.compile(r"[^\W\d_]+")
TOKEN_RE = re.compile(r"\w+")
LOWER_EN_WORD_RE = re.compile(r"(?<![\w'])[a-z][a-z']*[a-z](?![\w])")

NON_RUSSIAN_CYRILLIC = set("іїєґўјљњћџђѓќѕІЇЄҐЎЈЉЊЋЏЂЃЌЅ")


def is_cyrillic(c: str) -> bool:
    return "\u0400" <= c <= "\u04ff"


def is_latin(c: str) -> bool:
    return ("a" <= c <= "z") or ("A" <= c <= "Z")


def word_letters(s: str) -> int:
    return sum(len(m) for m in WORD_RE.findall(s))


def nonspace(s: str) -> int:
    return sum(1 for c in s if not c.isspace())


def is_non_letter(s: str, max_word_fraction: float, min_chars: int = 1) -> bool:
    """True for strings made mostly of symbols: ASCII art, boards, separators, numbers."""
    n = nonspace(s)
    return n >= min_chars and word_letters(s) < max_word_fraction * n


def is_art_line(line: str, max_word_fraction: float, min_chars: int) -> bool:
    """A non-letter line (ASCII art, board row, separator) once inline code/URLs/math are set aside."""
    return is_non_letter(strip_protected(line), max_word_fraction, min_chars)


#: Longest piece (chars) `glued_loops` looks for; bounds the work per position of a long token.
GLUED_MAX_UNIT = 100
_GLUED_LOOP_RE = re.compile(r"(\w{2," + str(GLUED_MAX_UNIT) + r"}?)\1{2,}")


def glued_loops(text: str) -> list[str]:
    """Words that contain one piece (2 to `GLUED_MAX_UNIT` chars) 3+ times back to back
    ("ЭтоЭтоЭто", "ТропТропТроп")."""
    out = []
    for w in TOKEN_RE.findall(text.lower()):
        if len(w) >= 6 and not w.isdigit() and _GLUED_LOOP_RE.search(w):
            out.append(w)
    return out


def urls(text: str) -> list[str]:
    """The URLs the translator keeps verbatim: those of the protected spans of `text` other than
    code spans (a URL on its own or the target of a markdown link), trimmed like the
    translator trims them."""
    out = []
    for part, protected in inline_spans(text):
        if not protected or part.startswith("`"):
            continue
        for m in URL_RE.finditer(part):
            u = trim_url(m.group(0))
            if u:
                out.append(u)
    return out


def inline_code_spans(line: str) -> list[str]:
    """The inline code spans of `line`, backticks included (the translator's rule)."""
    return [part for part, code in code_spans(line) if code]


# ---- line roles ----------------------------------------------------------------------------------

_NOT_CODE_INFO = {"", "ascii", "text", "txt", "plain", "plaintext", "art", "markdown", "md", "output"}


def table_cells(row: str) -> list[str]:
    parts = PIPE_RE.split(row.strip())
    if parts and not parts[0].strip():
        parts = parts[1:]
    if parts and not parts[-1].strip():
        parts = parts[:-1]
    return [p.strip() for p in parts]


@dataclass(frozen=True)
class TextInfo:
    """Line-level view of one message."""

    text: str
    lines: tuple[str, ...]
    fence_marker: tuple[bool, ...]  # an opening/closing ``` line
    fenced: tuple[bool, ...]  # content of a fenced block
    code_block: tuple[bool, ...]  # content of a fenced block that holds code (not art/plain text)
    code_like: tuple[bool, ...]  # a line outside fences that looks like code (translator's rule)
    table_row: tuple[bool, ...]  # a markdown table row (not the delimiter row)
    table_delim: tuple[bool, ...]

    @property
    def code_lines(self) -> list[str]:
        """Non-blank lines of fenced code blocks and code-looking lines outside fences."""
        return [ln for ln, a, b in zip(self.lines, self.code_block, self.code_like, strict=True) if (a or b) and ln.strip()]

    @property
    def any_code_lines(self) -> list[str]:
        """Like code_lines, plus the contents of fenced blocks that do not look like code."""
        return [ln for ln, a, b in zip(self.lines, self.fenced, self.code_like, strict=True) if (a or b) and ln.strip()]


def _split(text: str) -> list[str]:
    return text.split("\n")


@lru_cache(maxsize=8192)
def analyze(text: str) -> TextInfo:
    lines = [ln.rstrip("\r") for ln in _split(text)]
    n = len(lines)
    marker = [False] * n
    fenced = [False] * n
    code_block = [False] * n
    code_like = [False] * n
    table_row = [False] * n
    table_delim = [False] * n
    i = 0
    while i < n:
        f = fence_open(lines[i])
        if f is not None:
            char, length, info = f
            j = i + 1
            while j < n and not fence_closes(lines[j], char, length):
                j += 1
            marker[i] = True
            if j < n:
                marker[j] = True
            body = range(i + 1, min(j, n))
            lang = info.split()[0].lower() if info.split() else ""
            is_code = (lang not in _NOT_CODE_INFO) or any(looks_like_code(lines[k]) for k in body)
            for k in body:
                fenced[k] = True
                code_block[k] = is_code
            i = j + 1
            continue
        if "|" in lines[i] and i + 1 < n and is_table_delim(lines[i + 1]):
            table_row[i] = True
            table_delim[i + 1] = True
            j = i + 2
            while j < n and lines[j].strip() and "|" in lines[j] and fence_open(lines[j]) is None:
                table_row[j] = True
                j += 1
            i = j
            continue
        if lines[i].strip() and looks_like_code(lines[i].strip()):
            code_like[i] = True
        i += 1
    return TextInfo(
        text=text,
        lines=tuple(lines),
        fence_marker=tuple(marker),
        fenced=tuple(fenced),
        code_block=tuple(code_block),
        code_like=tuple(code_like),
        table_row=tuple(table_row),
        table_delim=tuple(table_delim),
    )


def prose_lines(info: TextInfo, max_word_fraction: float) -> list[str]:
    """Lines the translator translates: not fenced, not code, not non-letter lines."""
    out = []
    for k, ln in enumerate(info.lines):
        if info.fence_marker[k] or info.fenced[k] or info.code_like[k] or info.table_delim[k]:
            continue
        if not ln.strip() or is_non_letter(strip_protected(ln), max_word_fraction):
            continue
        out.append(ln)
    return out


def prose_of_source(en: TextInfo, max_word_fraction: float) -> str:
    """The source's translatable prose: prose lines without inline code and URLs."""
    return "\n".join(strip_protected(ln) for ln in prose_lines(en, max_word_fraction))


def prose_of_translation(ru: TextInfo, en: TextInfo) -> str:
    """The translation minus what was (or should have been) copied: fenced blocks, code lines,
    table delimiter rows and any line found verbatim in the source; inline code and URLs removed.

    Unlike the source side, a non-letter line stays: a translated line that turned into
    "Кто дал ООН землю=========" is exactly what the repetition rules look for.
    """
    copied = {ln.strip() for ln in en.lines}
    out = []
    for k, ln in enumerate(ru.lines):
        if ru.fence_marker[k] or ru.fenced[k] or ru.code_like[k] or ru.table_delim[k]:
            continue
        if not ln.strip() or ln.strip() in copied:
            continue
        out.append(strip_protected(ln))
    return "\n".join(out)


def strip_protected(line: str) -> str:
    """A line with every inline span the translator keeps verbatim (code, TeX math, link syntax,
    URLs, e-mail addresses, HTML tags; `segment`'s rule 7) replaced by a space."""
    return "".join(" " if protected else part for part, protected in inline_spans(line))


@lru_cache(maxsize=4096)
def translatable_text(text: str) -> tuple[str, str]:
    """(what the translator translates, what it keeps verbatim), each joined with newlines."""
    pieces = segment(text)
    units = "\n".join(p.text for p in pieces if p.translate)
    verbatim = "".join(p.text for p in pieces if not p.translate)
    return units, verbatim


# ---- code tokens ---------------------------------------------------------------------------------

_DQ_STRING = r"""(?:"(?:[^"\\\n]|\\.)*")"""
_SQ_STRING = r"""(?:'(?:[^'\\\n]|\\.)*')"""
_BLOCK_COMMENT = r"""(?:/\*.*?\*/)"""
_NEVER = "(?!)"


@lru_cache(maxsize=8)
def _code_token_re(dq: bool = True, sq: bool = True, block: bool = True) -> re.Pattern[str]:
    """The code token pattern; `dq`/`sq`/`block` False leave out "..." / '...' literals or
    /* ... */ comments (see `_code_matches`)."""
    return re.compile(
        r"(?P<str>" + (_DQ_STRING if dq else _NEVER) + "|" + (_SQ_STRING if sq else _NEVER) + ")"
        r"|(?P<comment>(?:(?<=\s)|^)(?:\#(?!include|define|undef|ifn?def|endif|pragma|!)|//|--\s).*$"
        r"|" + (_BLOCK_COMMENT if block else _NEVER) + ")"
        r"|(?P<word>[^\W\d]\w*)"
        r"|(?P<num>\d[\w.]*)"
        r"|(?P<op>[^\w\s])",
        re.MULTILINE,
    )


def _code_matches(text: str) -> Iterator[re.Match[str]]:
    """The matches of `_code_token_re()` in `text`, the same as its `finditer`, in linear time.

    A literal or block comment that never closes is looked for up to the end of its line, and a
    plain `finditer` repeats that from every later quote or "/*" of the line: quadratic on
    '"\\"\\"\\"...' or "/* /* /* ...". Once a literal opened by a quote fails, every later one
    opened by the same quote on that line fails too (that quote was escaped in the failed scan,
    so both scans end alike), and once a "/*" finds no "*/" no later one does; so up to the end
    of the line the pattern without that alternative gives the same tokens.
    """
    pos, n = 0, len(text)
    dq = sq = block = True
    eol = -1  # the end of the line of the last match
    while (m := _code_token_re(dq, sq, block).search(text, pos)) is not None:
        if m.start() > eol:  # a new line: everything may open again
            eol = text.find("\n", m.start())
            eol = n if eol < 0 else eol
            if not (dq and sq and block):
                dq = sq = block = True
                pos = m.start()  # only blanks were skipped, for any of the patterns
                continue
        yield m
        pos = m.end()
        if m.lastgroup == "op":
            c = m.group(0)
            if c == '"':
                dq = False
            elif c == "'":
                sq = False
            elif c == "/" and text.startswith("*", pos):
                block = False


# The width cannot start with "0" ("0" is a flag): the same strings as "%[-#0 +]*\d*...", but
# without two adjacent repeats that both match "0" (quadratic on "%000...").
_PLACEHOLDER_RE = re.compile(r"\$?\{[^{}\n]*\}|%[-#0 +]*(?:[1-9]\d*)?(?:\.\d+)?[sdifrxXeEgGc]|\\[nt]")


def code_tokens(line: str) -> list[str]:
    """Keywords, identifiers, numbers, brackets and operators of a code line.

    Comments are skipped and string literals reduce to their quotes and format placeholders
    ("{x}", "%d", "${name}", "\\n"): a translator may legally translate comments and messages
    (ours keeps them, others do not), the program still runs as long as those survive.
    """
    out: list[str] = []
    for m in _code_matches(line):
        kind = m.lastgroup
        if kind == "comment":
            continue
        if kind == "str":
            q = m.group(0)[0]
            out += [q, *_PLACEHOLDER_RE.findall(m.group(0)), q]
        else:
            out.append(m.group(0))
    return out


def code_skeleton(line: str) -> str:
    """The line with comments removed and string literals reduced to quotes + placeholders,
    whitespace kept: what must survive of a code line, byte for byte."""
    out: list[str] = []
    pos = 0
    for m in _code_matches(line):
        out.append(line[pos : m.start()])
        kind = m.lastgroup
        if kind == "str":
            q = m.group(0)[0]
            out.append(q + "".join(_PLACEHOLDER_RE.findall(m.group(0))) + q)
        elif kind != "comment":
            out.append(m.group(0))
        pos = m.end()
    out.append(line[pos:])
    return "".join(out).rstrip()


def indent_of(line: str) -> str:
    return line[: len(line) - len(line.lstrip(" \t"))]


# ---- repetition statistics (Gopher, Rae et al. 2021; datatrove's implementation) ---------------

def words(text: str) -> list[str]:
    return TOKEN_RE.findall(text.lower())


def dup_line_char_fraction(text: str) -> float:
    """Share of characters in lines that already appeared earlier (blank lines ignored)."""
    seen: set[str] = set()
    total = dup = 0
    for ln in text.split("\n"):
        s = ln.strip()
        if not s:
            continue
        total += len(s)
        if s in seen:
            dup += len(s)
        seen.add(s)
    return dup / total if total else 0.0


def top_ngram_char_fraction(ws: list[str], n: int, min_count: int = 2) -> float:
    """Characters covered by the most frequent word n-gram over all word characters
    (0 unless that n-gram occurs at least `min_count` times)."""
    total = sum(len(w) for w in ws)
    if len(ws) < n or not total:
        return 0.0
    grams = Counter(tuple(ws[i : i + n]) for i in range(len(ws) - n + 1))
    gram, count = grams.most_common(1)[0]
    if count < max(2, min_count):
        return 0.0
    return min(1.0, sum(len(w) for w in gram) * count / total)


def dup_ngram_char_fraction(ws: list[str], n: int) -> float:
    """Characters of words covered by n-grams that occurred before, over all word characters."""
    total = sum(len(w) for w in ws)
    if len(ws) < n or not total:
        return 0.0
    seen: set[tuple[str, ...]] = set()
    covered = [False] * len(ws)
    for i in range(len(ws) - n + 1):
        g = tuple(ws[i : i + n])
        if g in seen:
            for k in range(i, i + n):
                covered[k] = True
        seen.add(g)
    return sum(len(w) for w, c in zip(ws, covered, strict=True) if c) / total


def max_stem_run(text: str, stem_chars: int) -> tuple[int, str]:
    """Longest run of consecutive words sharing their first `stem_chars` letters."""
    best, best_word = 0, ""
    run, prev = 0, None
    for w in words(text):
        key = w[:stem_chars]
        run = run + 1 if key == prev else 1
        prev = key
        if run > best:
            best, best_word = run, w
    return best, best_word


@lru_cache(maxsize=64)
def _loop_re(max_unit: int) -> re.Pattern[str]:
    return re.compile(r"(.{1," + str(max_unit) + r"}?)\1{2,}")


def longest_loop(text: str, max_unit: int) -> tuple[int, str]:
    """Longest span made of one substring repeated 3+ times back to back (within a line)."""
    best, best_unit = 0, ""
    for m in _loop_re(max_unit).finditer(text):
        unit = m.group(1)
        if unit.isspace():
            continue
        span = m.end() - m.start()
        if span > best:
            best, best_unit = span, unit
    return best, best_unit


def max_letter_run(text: str) -> tuple[int, str]:
    """Longest run of one letter, case-insensitive ("Аааааа" -> 6)."""
    best, best_c = 0, ""
    run, prev = 0, ""
    for c in text.lower():
        if c.isalpha() and c == prev:
            run += 1
        else:
            run = 1 if c.isalpha() else 0
        prev = c
        if run > best:
            best, best_c = run, c
    return best, best_c


_SYMBOL_RUN_RE = re.compile(r"([^\w\s]|_)\1+")


def symbol_runs(text: str) -> dict[str, int]:
    """Longest run per punctuation/symbol character ('-' -> 4 for '----')."""
    out: dict[str, int] = {}
    for m in _SYMBOL_RUN_RE.finditer(text):
        c = m.group(1)
        out[c] = max(out.get(c, 0), m.end() - m.start())
    return out


# ---- sentences -----------------------------------------------------------------------------------

# Tokens that end in "." without ending a sentence (lowercased, inner dots kept: "e.g", "т.е").
# Units ("km", "кг") are left out on purpose: "... 10 km. Then" ends a sentence.
_ABBREVIATIONS = frozenset(
    "mr mrs ms dr prof st jr sr vs etc e.g i.e eg ie inc ltd co corp no nos fig figs approx est dept univ "
    "gen col lt sgt capt gov sen rep jan feb mar apr jun jul aug sep sept oct nov dec mt vol pp ch ed eds "
    "al cf ca u.s u.k a.m p.m ph.d "
    "т.е т.д т.п т.к т.н т.ч т.о г гг др пр см ул млн млрд тыс руб коп стр рис прим напр проф акад доц "
    "англ лат греч род ок".split()
)
# Wikipedia's reference marks ("[12]", "[citation needed]") sit between sentences in the
# source and are dropped by the translator: they must not glue two sentences together.
_REFERENCE_RE = re.compile(r"\[(?:\d{1,3}|citation needed|clarification needed|when\?|who\?)\]")
# A run of terminators, closing quotes/brackets, then the whitespace (maybe none) before the next one.
_SENT_END_RE = re.compile(r"([.!?…]+)([\"'»”’)\]]*)(\s*)")
_TOKEN_BEFORE_RE = re.compile(r"([\w.]*\w)$")


def sentences(text: str) -> list[str]:
    """The sentences of one paragraph, for comparing a translation with its source.

    Not the translator's splitter (`translate.engine.split_sentences`, which only needs safe cut
    points): this one must count the same sentences on both sides of real MT output, so it also
    splits "завещание.Что" (a space lost) and "дыхание. аквалангисты" (a capital lost), and does
    not split after abbreviations ("e.g.", "т.е."), initials ("J. K.") or numbers followed by a
    number ("1. 2.", "3.5").
    """
    text = _REFERENCE_RE.sub(" ", text)
    out: list[str] = []
    start = 0
    for m in _SENT_END_RE.finditer(text):
        end = m.end()
        if end >= len(text):
            break
        nxt = text[end]
        if nxt in "\"'«“„([—–-" and end + 1 < len(text):
            nxt = text[end + 1] if not text[end + 1].isspace() else text[min(len(text) - 1, end + 2)]
        if not nxt.isalnum():
            continue
        term, space = m.group(1), m.group(3)
        tok = _TOKEN_BEFORE_RE.search(text, start, m.start())
        word = tok.group(1).lower() if tok else ""
        if "." in term or "…" in term:
            if word in _ABBREVIATIONS and (word not in ("no", "nos") or nxt.isdigit()):
                continue
            if len(word) == 1 and tok is not None and tok.group(1).isupper():  # an initial
                continue
            if word.isdigit() and (nxt.isdigit() or not space):  # "1. 2.", "3.5"
                continue
            if (term in ("...", "…") or len(term) > 1) and nxt.islower():  # an ellipsis inside a sentence
                continue
        if not space and not (nxt.isupper() and word[-1:].isalpha() and word[-1:].islower()):
            continue  # "Node.js", "U.S.A", "x.y": no lost space there
        if space and nxt.islower() and (term != "." or len(word) < 3 or "." in word):
            continue
        piece = text[start : m.end(2)].strip()
        if piece:
            out.append(piece)
        start = end
    piece = text[start:].strip()
    if piece:
        out.append(piece)
    return out
