"""Paragraph-wise segmentation with protected spans.

The paper splits every message on newlines, translates each paragraph alone and joins the
results back with the same newlines. This module does that, and additionally keeps verbatim
(never sends to the translator) everything a translation model corrupts: code, ASCII art, text
boards, table syntax, URLs.

`segment(text)` cuts a text into `Piece`s. Joining the pieces' texts gives back the input
exactly, for any string. A piece with `translate=True` is a *unit*: the text sent to the
translator. Units never contain a line break, never start or end with whitespace and always
contain a word (a run of at least two letters); everything else is verbatim.

Heuristics, in the order they are applied (line = text between line breaks; every line break
that `str.splitlines` knows, "\\r\\n" included, is kept verbatim):

1. Fenced code. A line whose first non-blank characters are 3+ backticks (with no backtick in
   the info string) or 3+ tildes opens a fence; the fence ends at a line holding only the same
   character, at least as many times. Everything from the opening to the closing line is
   verbatim; an unclosed fence protects to the end of the text. Fences may be indented (they
   often are inside list items).
2. Blank lines (whitespace only) are verbatim.
3. Markdown tables (GitHub style): a line with a "|" directly followed by a delimiter row
   ("|---|:---:|", at least one "|") starts a table that runs while lines are non-blank and
   contain "|". The delimiter row is verbatim; in the other rows the "|" separators and the
   padding around cells are verbatim and each cell is handled like a line fragment (below),
   so a cell with text is its own unit and a cell with numbers stays verbatim.
4. Indented code. A block of lines indented by `INDENT_CODE_WIDTH` (4) columns or more (a tab
   counts up to the next multiple of 4; blank lines inside the block belong to it) is verbatim
   when it starts after a blank line or at the start of the text and we are not inside a list.
   "Inside a list" starts at a list-item line and lasts through blank and indented lines until
   a non-indented line that is not a list item: there, indented lines are list continuations.
   Chat data also indents plain prose, so a block where no line looks like code (rule 5) and
   at least half of the lines read as text (rule 8) is handled line by line instead.
5. Code-looking lines, even outside fences (`looks_like_code`, tried on the stripped line).
   Strong patterns: preprocessor lines (`#include`, `#define`), shebangs, imports
   (`import x as y`, `from x import y`, `import x from "y"`, `require(`), definitions
   (`def f(`, `class C:`, `function f(`, `fn f(`, `int main(`), C-style control lines
   (`for (...) {`), lines ending in "{" or starting with "}", statements ending in ";" that
   contain one of `=(){}[]`, comment openers (`//`, `/*`, `<!--`), shell prompts (`$ cmd`,
   `>>> expr`), well-known CLI commands (`pip install x`, `git ...`, `npm ...`, `scp ...`),
   SQL statements (`SELECT ... FROM`, `CREATE TABLE`, ...), JSON members (`"key": value`).
   Weak patterns count only when the line does not read like a sentence (ends in .!? and has
   4+ words): assignments (`x = y + 1`, `a, b = b, a`, `let x = 1`), bare calls (`print(x)`,
   `pygame.init()`), Python block headers with a code-like condition (`for i in range(10):`,
   `if x > 0:`, `while True:`, `else:`, `except E as e:`), Lua/shell blocks (`for ... do`,
   `if ... then`, `end`, `local x`), and `return x` / `break` / `continue` / `pass`. After a
   list marker only the strong patterns apply (so "- for those in need:" is text).
6. Line prefixes are verbatim: indentation, blockquote markers ("> "), an ATX heading marker
   ("# "), one list marker ("- ", "* ", "+ ", "• ", "1. ", "1) ", "a) ", "A. ", "(1) ", "(a) ")
   and a task checkbox ("[ ] ", "[x] ").
7. Inline protected spans inside a line: code spans (a run of N backticks closed by the next
   run of exactly N; an unmatched run is ordinary text), TeX math (`$x$` with no space inside
   the dollars and no digit after the closing one, so "$5 and $10" stays text; `$$...$$`,
   `\\(...\\)`, `\\[...\\]`), the "[" and "](target)" parts of markdown links and images (the
   link text is translated), URLs (http://, https://, ftp://, www.; trailing punctuation and
   unbalanced closing brackets are left out of the URL), e-mail addresses and HTML tags. The
   text between protected spans becomes separate units (context across a span is lost, like
   context across lines).
8. Mostly-symbol lines (ASCII art, boards like " X | O | X ", "---+---+---", box drawing):
   the text outside protected spans must have at least `MIN_LETTER_RATIO` (0.5) of its
   non-space characters in words of 2+ letters, else the whole line is verbatim. Single
   letters do not count as words, so a tic-tac-toe row is verbatim. Table cells get the same
   test on their own.
9. What remains between protected spans is split into a core and its surrounding whitespace
   and symbols (Unicode categories Sm, So, Sk: "|", box drawing, arrows, "^", "`"), which are
   verbatim; the core is a unit when it holds a word of 2+ letters, else it is verbatim.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

__all__ = [
    "INDENT_CODE_WIDTH",
    "MIN_LETTER_RATIO",
    "PIPE_RE",
    "URL_RE",
    "WORD_RE",
    "Piece",
    "code_spans",
    "fence_closes",
    "fence_open",
    "inline_spans",
    "is_table_delim",
    "join",
    "looks_like_code",
    "segment",
    "translatable_units",
    "trim_url",
]

#: Minimum share of non-space characters that must be letters of 2+-letter words for a line
#: (or table cell) to be treated as text. Below it the line is kept verbatim (ASCII art,
#: boards, numeric rows).
MIN_LETTER_RATIO = 0.5
#: Indentation (columns) that makes a line after a blank line an indented code block.
INDENT_CODE_WIDTH = 4
TAB_WIDTH = 4


@dataclass(frozen=True)
class Piece:
    """A slice of the input: `translate=True` pieces are sent to the translator."""

    text: str
    translate: bool


# ---- small helpers -----------------------------------------------------------------------------

_WORD = re.compile(r"[^\W\d_]{2,}")
#: A word: a run of 2+ letters (what the letter ratio of rule 8 counts).
WORD_RE = _WORD


def _word_letters(s: str) -> int:
    return sum(len(m) for m in _WORD.findall(s))


def _has_word(s: str) -> bool:
    return _WORD.search(s) is not None and any(c.isalpha() for c in s)


def _is_texty(s: str) -> bool:
    """True when `s` reads as text: words of 2+ letters make up enough of its characters."""
    nonspace = sum(1 for c in s if not c.isspace())
    if nonspace == 0 or not _has_word(s):
        return False
    return _word_letters(s) >= MIN_LETTER_RATIO * nonspace


def _is_edge(c: str) -> bool:
    """Characters trimmed off the ends of a unit: whitespace and symbols (Sm, So, Sk)."""
    return c.isspace() or unicodedata.category(c) in ("Sm", "So", "Sk")


def _indent_width(s: str) -> int:
    w = 0
    for c in s:
        if c == " ":
            w += 1
        elif c == "\t":
            w += TAB_WIDTH - w % TAB_WIDTH
        else:
            break
    return w


class _Builder:
    """Collects pieces; merges neighbouring verbatim pieces, drops empty ones."""

    def __init__(self) -> None:
        self.pieces: list[Piece] = []

    def verbatim(self, s: str) -> None:
        if not s:
            return
        if self.pieces and not self.pieces[-1].translate:
            self.pieces[-1] = Piece(self.pieces[-1].text + s, False)
        else:
            self.pieces.append(Piece(s, False))

    def unit(self, s: str) -> None:
        """Add `s` as a unit when it qualifies; surrounding whitespace and symbols (box drawing,
        "|", arrows, math signs) stay verbatim."""
        start, end = 0, len(s)
        while start < end and _is_edge(s[start]):
            start += 1
        while end > start and _is_edge(s[end - 1]):
            end -= 1
        core = s[start:end]
        if not core or not _has_word(core):
            self.verbatim(s)
            return
        self.verbatim(s[:start])
        self.pieces.append(Piece(core, True))
        self.verbatim(s[end:])


# ---- block level -------------------------------------------------------------------------------

_FENCE_OPEN = re.compile(r"[ \t]*(?P<fence>`{3,}|~{3,})(?P<info>.*)")
_FENCE_CLOSE = re.compile(r"[ \t]*(?P<fence>`{3,}|~{3,})[ \t]*")
# "|---|:---:|": optional outer pipes, cells of dashes with optional colons. Written so that no
# two adjacent parts can match the same characters ("[ \t]*(?:\|[ \t]*)?" rather than
# "[ \t]*\|?[ \t]*", the same language): a failing fullmatch stays linear in the line length.
_TABLE_DELIM = re.compile(r"[ \t]*(?:\|[ \t]*)?:?-+:?[ \t]*(?:\|[ \t]*:?-+:?[ \t]*)*(?:\|[ \t]*)?")
_PIPE = re.compile(r"(?<!\\)\|")
#: A "|" that separates table cells (an escaped "\|" does not).
PIPE_RE = _PIPE


def fence_open(line: str) -> tuple[str, int, str] | None:
    """(fence character, fence length, stripped info string) when `line` opens a fence (rule 1)."""
    m = _FENCE_OPEN.match(line)
    if not m:
        return None
    fence = m["fence"]
    if fence[0] == "`" and "`" in m["info"]:
        return None  # CommonMark: a backtick fence's info string has no backtick (inline code)
    return fence[0], len(fence), m["info"].strip()


def _fence_open(line: str) -> tuple[str, int] | None:
    f = fence_open(line)
    return None if f is None else (f[0], f[1])


def fence_closes(line: str, char: str, length: int) -> bool:
    """True when `line` closes a fence opened with `length` times `char`."""
    m = _FENCE_CLOSE.fullmatch(line)
    return bool(m) and m["fence"][0] == char and len(m["fence"]) >= length


def is_table_delim(line: str) -> bool:
    """True for a markdown table delimiter row ("|---|:---:|", at least one "|")."""
    return "|" in line and _TABLE_DELIM.fullmatch(line) is not None


def _split_lines(text: str) -> list[tuple[str, str]]:
    """(content, line terminator) pairs; every `str.splitlines` boundary is a terminator."""
    out = []
    for line in text.splitlines(keepends=True):
        content = line.splitlines()[0] if line else ""
        out.append((content, line[len(content) :]))
    return out


def segment(text: str) -> list[Piece]:
    """Cut `text` into verbatim and translatable pieces (see the module docstring)."""
    b = _Builder()
    lines = _split_lines(text)
    n = len(lines)
    i = 0
    prev_blank = True  # the start of the text counts as "after a blank line"
    in_list = False
    prose_until = 0  # lines before this index belong to an indented block judged to be prose
    while i < n:
        content, term = lines[i]

        fence = _fence_open(content)
        if fence is not None:
            j = i + 1
            while j < n and not fence_closes(lines[j][0], *fence):
                j += 1
            end = min(j, n - 1)
            b.verbatim("".join(c + t for c, t in lines[i : end + 1]))
            i = end + 1
            prev_blank = False
            continue

        if not content.strip():
            b.verbatim(content + term)
            prev_blank = True
            i += 1
            continue

        if "|" in content and i + 1 < n and is_table_delim(lines[i + 1][0]):
            _table_row(b, content)
            b.verbatim(term + lines[i + 1][0] + lines[i + 1][1])
            j = i + 2
            while j < n and lines[j][0].strip() and "|" in lines[j][0] and _fence_open(lines[j][0]) is None:
                _table_row(b, lines[j][0])
                b.verbatim(lines[j][1])
                j += 1
            i = j
            prev_blank, in_list = False, False
            continue

        indent = _indent_width(content)
        if indent >= INDENT_CODE_WIDTH and prev_blank and not in_list and i >= prose_until:
            j = _indented_block_end(lines, i)
            if _block_is_code([c for c, _ in lines[i:j]]):
                b.verbatim("".join(c + t for c, t in lines[i:j]))
                i = j
                prev_blank = False
                continue
            prose_until = j

        is_item = _line(b, content)
        b.verbatim(term)
        if is_item:
            in_list = True
        elif indent == 0:
            in_list = False
        prev_blank = False
        i += 1
    return b.pieces


def _indented_block_end(lines: list[tuple[str, str]], i: int) -> int:
    """End (exclusive) of the indented block starting at line i; inner blank lines belong to it."""
    end = j = i
    while j < len(lines):
        content = lines[j][0]
        if not content.strip():
            j += 1
        elif _indent_width(content) >= INDENT_CODE_WIDTH and _fence_open(content) is None:
            j += 1
            end = j
        else:
            break
    return end


def _block_is_code(contents: list[str]) -> bool:
    """An indented block is code unless no line looks like code and most lines read as text."""
    nonblank = [c.strip() for c in contents if c.strip()]
    if any(looks_like_code(c) for c in nonblank):
        return True
    texty = sum(_is_texty(c) for c in nonblank)
    return 2 * texty < len(nonblank)


def _table_row(b: _Builder, row: str) -> None:
    parts = _PIPE.split(row)
    for k, cell in enumerate(parts):
        if k:
            b.verbatim("|")
        _fragment(b, cell, check_strong_code=True)


# ---- line level --------------------------------------------------------------------------------

_LIST_MARKER = r"(?:[-*+•‣◦▪–]|\d{1,9}[.)]|[A-Za-z][.)]|\(\d{1,9}\)|\([A-Za-z]\))"
_PREFIX = re.compile(
    r"(?P<quote>(?:>[ \t]*)*)"
    r"(?:(?P<heading>\#{1,6})(?=[ \t]|$)"
    r"|(?P<item>" + _LIST_MARKER + r"(?=[ \t]|$)(?:[ \t]+\[[ xX]\](?=[ \t]|$))?))?"
    r"[ \t]*"
)


def _line(b: _Builder, content: str) -> bool:
    """Segment one ordinary line; returns True when it is a list item."""
    body = content.lstrip()
    lead = content[: len(content) - len(body)]
    if looks_like_code(body.rstrip()):
        b.verbatim(content)
        return False
    m = _PREFIX.match(body)
    assert m is not None  # every part of the pattern is optional
    b.verbatim(lead + m.group(0))
    rest = body[m.end() :]
    # the whole line was checked above; after a marker only the strong code patterns apply
    # ("- for those in need:" is text, "- import numpy as np" is code)
    _fragment(b, rest, check_strong_code=bool(m.group(0)))
    return m["item"] is not None


def _fragment(b: _Builder, s: str, *, check_strong_code: bool) -> None:
    """A line without its prefix, or a table cell: code check, inline spans, letter ratio."""
    core = s.strip()
    if not core:
        b.verbatim(s)
        return
    if check_strong_code and looks_like_code(core, strong_only=True):
        b.verbatim(s)
        return
    spans = inline_spans(core)
    if not _is_texty("".join(t for t, protected in spans if not protected)):
        b.verbatim(s)
        return
    start = s.index(core)
    b.verbatim(s[:start])
    for t, protected in spans:
        if protected:
            b.verbatim(t)
        else:
            b.unit(t)
    b.verbatim(s[start + len(core) :])


# ---- inline protected spans --------------------------------------------------------------------

_BACKTICKS = re.compile(r"`+")
_LINK = re.compile(
    r"!?\[(?=[^\[\]]*\]\()"  # opening bracket of a link or image followed by "]("
    r"|\]\((?:[^()\s]|\([^()\s]*\))*(?:\s+\"[^\"]*\")?\)"  # "](target)" or '](target "title")'
)
_URL = re.compile(r"(?:https?://|ftp://|www\.)[^\s<>\"'`]+", re.IGNORECASE)
#: A URL as rule 7 finds it, before `trim_url` takes trailing punctuation off.
URL_RE = _URL
_EMAIL = re.compile(r"(?<![\w.+-])[\w.+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}\b")
_HTML_TAG = re.compile(r"</?[A-Za-z][A-Za-z0-9-]*(?:\s[^<>]*)?/?>")
_MATH = re.compile(
    r"\$\$[^\n]{1,500}?\$\$"  # display math on one line
    r"|(?<![\\$\w])\$(?=[^\s$])[^$]{0,500}?(?<=[^\s\\$])\$(?![\d$])"  # $x$ (not "$5 and $10")
    r"|\\\([^\n]{1,500}?\\\)|\\\[[^\n]{1,500}?\\\]"  # LaTeX \\( x \\) and \\[ x \\]
)
_URL_TRAIL = ".,;:!?*_~'\""
_CLOSERS = {")": "(", "]": "[", "}": "{"}


def trim_url(url: str) -> str:
    """`url` without trailing punctuation and unbalanced closing brackets (linear time)."""
    count = {c: url.count(c) for c in "()[]{}"}
    end = len(url)
    while end:
        last = url[end - 1]
        if last in _URL_TRAIL:
            end -= 1
        elif last in _CLOSERS and count[last] > count[_CLOSERS[last]]:
            count[last] -= 1
            end -= 1
        else:
            break
    return url[:end]


def code_spans(s: str) -> list[tuple[str, bool]]:
    """`s` cut into (text, is a code span) parts: a run of N backticks up to the next run of
    exactly N; an unmatched run is ordinary text."""
    runs = [(m.start(), m.end()) for m in _BACKTICKS.finditer(s)]
    following: list[int | None] = [None] * len(runs)  # the next run of the same length
    last: dict[int, int] = {}
    for k in range(len(runs) - 1, -1, -1):
        length = runs[k][1] - runs[k][0]
        following[k] = last.get(length)
        last[length] = k
    out: list[tuple[str, bool]] = []
    pos = 0
    k = 0
    while k < len(runs):
        start = runs[k][0]
        close = following[k]
        if close is None:
            k += 1
            continue
        if start > pos:
            out.append((s[pos:start], False))
        out.append((s[start : runs[close][1]], True))
        pos = runs[close][1]
        k = close + 1
    if pos < len(s):
        out.append((s[pos:], False))
    return out


def _split_by(parts: list[tuple[str, bool]], pattern: re.Pattern[str], trim=None) -> list[tuple[str, bool]]:
    out: list[tuple[str, bool]] = []
    for text, protected in parts:
        if protected:
            out.append((text, True))
            continue
        pos = 0
        for m in pattern.finditer(text):
            if m.start() < pos:
                continue
            span = m.group(0)
            if trim is not None:
                span = trim(span)
            if not span:
                continue
            if m.start() > pos:
                out.append((text[pos : m.start()], False))
            out.append((span, True))
            pos = m.start() + len(span)
        if pos < len(text):
            out.append((text[pos:], False))
    return out


def inline_spans(s: str) -> list[tuple[str, bool]]:
    """`s` cut into (text, protected) parts: the inline protected spans of rule 7 and the text
    between them."""
    parts = code_spans(s)
    parts = _split_by(parts, _MATH)
    parts = _split_by(parts, _LINK)
    parts = _split_by(parts, _URL, trim_url)
    parts = _split_by(parts, _EMAIL)
    parts = _split_by(parts, _HTML_TAG)
    return parts


# ---- code-looking lines ------------------------------------------------------------------------

_CLI = (
    r"sudo|pip3?|pipx|npm|npx|yarn|pnpm|apt|apt-get|brew|conda|docker|docker-compose|git|kubectl"
    r"|curl|wget|chmod|chown|mkdir|rmdir|cargo|rustc|gcc|g\+\+|javac|ssh|scp|tar|grep"
)
# Every pattern is anchored at the start of the stripped line (re.match) and written so that a
# failing match costs at most O(n^2) on long lines (no nested unbounded repeats).
_STRONG_CODE = [
    re.compile(p)
    for p in (
        r"#!",
        r"#(?:include|define|undef|ifdef|ifndef|endif|pragma|error)\b",
        r"from\s+[\w.]+\s+import\s+[\w*.,() ]+$",
        r"import\s+[\w.]+(?:\s+as\s+\w+)?(?:\s*,\s*[\w.]+(?:\s+as\s+\w+)?)*\s*;?$",
        r"import\s+.+\s+from\s+['\"]",
        r"(?:const|let|var)\s+.*=\s*require\(",
        r"(?:async\s+)?def\s+\w+\s*\(",
        r"class\s+\w+\s*(?:\([^)]*\))?\s*:$",
        r"(?:function|func|fn)\s+[\w$.]+\s*\(",
        r"(?:public|private|protected)\s+.*[({;]$",
        r"(?:int|void|char|float|double|bool|long|unsigned|size_t)\s+\*?\w+\s*(?:\(|=|;|\[)",
        r"(?:for|while|if|switch|catch)\s*\(.*\)\s*\{?$",
        r".*\{$",
        r"\}",
        r"(?://|/\*|\*/|<!--)",
        r"(?:\$|>>>)\s+[a-z]",
        r"(?:" + _CLI + r")\s+\S.*[^.!?:]$",
        r"python3?\s+(?:-\w|\S+\.py\b)",
        r"(?:SELECT\s+.+\s+FROM\s|INSERT\s+INTO\s|UPDATE\s+\w+\s+SET\s|DELETE\s+FROM\s"
        r"|(?:CREATE|DROP|ALTER)\s+(?:TABLE|INDEX|VIEW|DATABASE)\s)",
        r"\"[^\"]+\"\s*:\s*(?:[\"\[{\d-]|true\b|false\b|null\b)",
    )
]
_TARGET = r"[A-Za-z_$][\w$]*(?:\.[A-Za-z_$][\w$]*|\[[^\]]*\])*"  # x, self.x, a[i]
_WEAK_CODE = [
    re.compile(p)
    for p in (
        r"(?:(?:local|let|const|var|val|my)\s+)?" + _TARGET + r"(?:\s*,\s*" + _TARGET + r")*\s*"
        r"(?:[-+*/%&|^]|\*\*|//|<<|>>)?=(?!=)\s*\S",  # x = 1, a, b = b, a, self.n += 1
        r"[A-Za-z_$][\w$.]*\(.*\)[;,]?$",  # print(x), pygame.init()
        r"return(?:\s+\S+)?;?$",
        r"(?:break|continue|pass);?$",
        r"(?:for|while)\s+.+\s+do$",  # Lua, shell
        r"(?:if|elseif|elsif)\s+.+\s+then$",
        r"end[;,)]*$",
        r"local\s+[A-Za-z_]\w*\s*(?:,|=|$)",
    )
]
# Python block headers; only tried on lines that end with ":".
_PY_FOR = re.compile(r"for\s+([\w, ()]+?)\s+in\s+(.+):$")
_PY_COND = re.compile(r"(?:if|elif|while)\s+(.+):$")
_PY_OTHER = re.compile(
    r"(?:else|try|finally)\s*:$|except(?:\s+[\w.]+(?:\s+as\s+\w+)?|\s*\(.*\))?\s*:$|with\s+.*\("
)
_CODE_CHARS = re.compile(r"==|!=|<|>|\(|\[|\.|_")
_SENTENCE_END = re.compile(r"[.!?][\"')\]]*$")
_PLAIN_WORD = re.compile(r"\b[A-Za-z]{2,}\b")


def _reads_like_sentence(line: str) -> bool:
    return _SENTENCE_END.search(line) is not None and len(_PLAIN_WORD.findall(line)) >= 4


def _python_header(line: str) -> bool:
    if not line.endswith(":"):
        return False
    m = _PY_FOR.match(line)
    if m:  # "for i in range(10):", "for k, v in d.items():", "for x in xs:" (short names)
        names = [v.strip("() ") for v in m[1].split(",")]
        return _CODE_CHARS.search(m[2]) is not None or all(len(v) <= 2 for v in names)
    m = _PY_COND.match(line)
    if m:  # "if x > 0:", "while not done:", "while True:"
        cond = m[1]
        return _CODE_CHARS.search(cond) is not None or cond in ("True", "False") or bool(
            re.fullmatch(r"not\s+\w+", cond)
        )
    return _PY_OTHER.match(line) is not None


def looks_like_code(line: str, *, strong_only: bool = False) -> bool:
    """True when a stripped line looks like source code or a shell command (see module doc)."""
    line = line.strip()
    if not line:
        return False
    if any(p.match(line) for p in _STRONG_CODE):
        return True
    if line.endswith(";") and any(c in line for c in "=(){}[]"):
        return True  # a statement: x = y + 1;  foo(bar);
    if strong_only or _reads_like_sentence(line):
        return False
    return _python_header(line) or any(p.match(line) for p in _WEAK_CODE)


# ---- public helpers ----------------------------------------------------------------------------


def translatable_units(text: str) -> list[str]:
    """The texts `segment(text)` would send to the translator, in order (with repeats)."""
    return [p.text for p in segment(text) if p.translate]


def join(pieces: Iterable[Piece], translations: Mapping[str, str]) -> str:
    """Reassemble `pieces`, replacing each unit by `translations[unit]`.

    A unit missing from `translations` raises KeyError: the English is never substituted.
    """
    return "".join(translations[p.text] if p.translate else p.text for p in pieces)
