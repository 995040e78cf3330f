"""Text analysis shared by the filters: line roles, code tokens, repetition statistics.

Pure functions of strings. What counts as code or as a protected span follows the
translator's own segmentation (`ruinstruct.translate.segment`), so a filter never demands that
something survive verbatim which our translator legitimately translates.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass
from functools import lru_cache

from ..translate.segment import looks_like_code, segment

# ---- characters and words ----------------------------------------------------------------------

WORD_RE = re.compile(r"[^\W\d_]{2,}")  # a run of 2+ letters
LETTER_RUN_RE = re.compile(r"[^\W\d_]+")
TOKEN_RE = re.compile(r"\w+")
LOWER_EN_WORD_RE = re.compile(r"(?<![\w'])[a-z][a-z']*[a-z](?![\w])")
URL_RE = re.compile(r"(?:https?://|ftp://|www\.)[^\s<>\"'`)\]]+", re.IGNORECASE)
INLINE_CODE_RE = re.compile(r"(?<!`)(`+)(?!`)(.+?)(?<!`)\1(?!`)")
_URL_TRAIL = ".,;:!?*_~'\""

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


_GLUED_LOOP_RE = re.compile(r"(\w{2,}?)\1{2,}")


def glued_loops(text: str) -> list[str]:
    """Words that contain one piece 3+ times back to back ("ЭтоЭтоЭто", "ТропТропТроп")."""
    out = []
    for w in TOKEN_RE.findall(text.lower()):
        if len(w) >= 6 and not w.isdigit() and _GLUED_LOOP_RE.search(w):
            out.append(w)
    return out


def urls(text: str) -> list[str]:
    out = []
    for m in URL_RE.finditer(text):
        u = m.group(0)
        while u and u[-1] in _URL_TRAIL:
            u = u[:-1]
        if u:
            out.append(u)
    return out


def inline_code_spans(line: str) -> list[str]:
    return [m.group(0) for m in INLINE_CODE_RE.finditer(line)]


# ---- line roles ----------------------------------------------------------------------------------

_FENCE_OPEN = re.compile(r"[ \t]*(?P<fence>`{3,}|~{3,})(?P<info>.*)")
_FENCE_CLOSE = re.compile(r"[ \t]*(?P<fence>`{3,}|~{3,})[ \t]*")
_TABLE_DELIM = re.compile(r"[ \t]*\|?[ \t]*:?-+:?[ \t]*(?:\|[ \t]*:?-+:?[ \t]*)*\|?[ \t]*")
_PIPE = re.compile(r"(?<!\\)\|")
_NOT_CODE_INFO = {"", "ascii", "text", "txt", "plain", "plaintext", "art", "markdown", "md", "output"}


def _fence_open(line: str) -> tuple[str, int, str] | None:
    m = _FENCE_OPEN.fullmatch(line)
    if not m:
        return None
    fence, info = m["fence"], m["info"]
    if fence[0] == "`" and "`" in info:
        return None  # CommonMark: ```code``` on one line is inline code, not a fence
    return fence[0], len(fence), info.strip()


def _fence_closes(line: str, char: str, length: int) -> bool:
    m = _FENCE_CLOSE.fullmatch(line)
    return bool(m) and m["fence"][0] == char and len(m["fence"]) >= length


def table_cells(row: str) -> list[str]:
    parts = _PIPE.split(row.strip())
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
        f = _fence_open(lines[i])
        if f is not None:
            char, length, info = f
            j = i + 1
            while j < n and not _fence_closes(lines[j], char, length):
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
        if "|" in lines[i] and i + 1 < n and "|" in lines[i + 1] and _TABLE_DELIM.fullmatch(lines[i + 1]):
            table_row[i] = True
            table_delim[i + 1] = True
            j = i + 2
            while j < n and lines[j].strip() and "|" in lines[j] and _fence_open(lines[j]) is None:
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


_MATH_RE = re.compile(r"\$\$.+?\$\$|(?<![\\$\w])\$(?=[^\s$])[^$]*?(?<=[^\s\\$])\$(?![\d$])|\\\(.+?\\\)|\\\[.+?\\\]")
_HTML_TAG_RE = re.compile(r"</?[A-Za-z][A-Za-z0-9-]*(?:\s[^<>]*)?/?>")
_EMAIL_RE = re.compile(r"(?<![\w.+-])[\w.+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}\b")


def strip_protected(line: str) -> str:
    """A line without the inline spans the translator keeps verbatim (code, URLs, math, tags)."""
    line = INLINE_CODE_RE.sub(" ", line)
    line = URL_RE.sub(" ", line)
    line = _MATH_RE.sub(" ", line)
    line = _EMAIL_RE.sub(" ", line)
    return _HTML_TAG_RE.sub(" ", line)


@lru_cache(maxsize=4096)
def translatable_text(text: str) -> tuple[str, str]:
    """(what the translator translates, what it keeps verbatim), each joined with newlines."""
    pieces = segment(text)
    units = "\n".join(p.text for p in pieces if p.translate)
    verbatim = "".join(p.text for p in pieces if not p.translate)
    return units, verbatim


# ---- code tokens ---------------------------------------------------------------------------------

_CODE_TOKEN_RE = re.compile(
    r"""(?P<str>"(?:[^"\\\n]|\\.)*"|'(?:[^'\\\n]|\\.)*')"""
    r"""|(?P<comment>(?:(?<=\s)|^)(?:\#(?!include|define|undef|ifn?def|endif|pragma|!)|//|--\s).*$|/\*.*?\*/)"""
    r"""|(?P<word>[^\W\d]\w*)"""
    r"""|(?P<num>\d[\w.]*)"""
    r"""|(?P<op>[^\w\s])""",
    re.MULTILINE,
)


_PLACEHOLDER_RE = re.compile(r"\$?\{[^{}\n]*\}|%[-#0 +]*\d*(?:\.\d+)?[sdifrxXeEgGc]|\\[nt]")


def code_tokens(line: str) -> list[str]:
    """Keywords, identifiers, numbers, brackets and operators of a code line.

    Comments are skipped and string literals reduce to their quotes and format placeholders
    ("{x}", "%d", "${name}", "\\n"): a translator may legally translate comments and messages
    (ours keeps them, others do not), the program still runs as long as those survive.
    """
    out: list[str] = []
    for m in _CODE_TOKEN_RE.finditer(line):
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
    for m in _CODE_TOKEN_RE.finditer(line):
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
