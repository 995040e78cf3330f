"""The filter protocol (datatrove style): the base class owns the loops, a filter only checks.

A filter implements one or more hooks, each returning the reasons to drop (empty = keep):

    check_dialog(ru, en)      the whole dialog pair (role structure, translator scores)
    check_message(pair)       each message pair, aligned by position (`MessagePair`)
    check_paragraph(pair)     each paragraph pair of each message (`ParagraphPair`): the lines
                              the translator translated one by one

`Filter.check(ru, en)` runs the hooks over the pairs and appends where it happened
("in message 2 (assistant)", "in message 2 (assistant), paragraph 3") to each reason's detail.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, replace
from functools import lru_cache
from typing import ClassVar

from ..schema import Dialog
from ..translate.segment import segment
from .config import FilterConfig


@dataclass(frozen=True)
class Reason:
    """Why a filter drops a dialog: `filter` and `rule` are stable names (counted, grouped),
    `detail` is for people ("'32' missing in message 2 (assistant)")."""

    filter: str
    rule: str
    detail: str

    @property
    def kind(self) -> str:
        """"<filter>/<rule>", the key the report groups examples under."""
        return f"{self.filter}/{self.rule}"

    def at(self, where: str) -> Reason:
        return replace(self, detail=f"{self.detail} in {where}") if where else self

    def __str__(self) -> str:
        return f"{self.kind}: {self.detail}"


@dataclass(frozen=True)
class Decision:
    """Keep (no reasons) or drop with one or more reasons."""

    reasons: tuple[Reason, ...] = ()

    @property
    def keep(self) -> bool:
        return not self.reasons


@dataclass(frozen=True)
class MessagePair:
    where: str  # "message 2 (assistant)" or "dialog" when messages cannot be aligned
    ru: str
    en: str


@dataclass(frozen=True)
class ParagraphPair:
    """One line of a message and its translation. When the line counts differ (the structure
    filter reports that) the whole messages form a single pair and `aligned` is False."""

    where: str
    ru: str
    en: str
    aligned: bool = True


def message_pairs(ru: Dialog, en: Dialog) -> list[MessagePair]:
    """Messages aligned by position; the whole dialogs as one text when the counts differ."""
    rm, em = ru.get("messages") or [], en.get("messages") or []
    if len(rm) == len(em):
        return [
            MessagePair(f"message {i + 1} ({e.get('role')})", _content(r), _content(e))
            for i, (r, e) in enumerate(zip(rm, em, strict=True))
        ]
    return [MessagePair("dialog", "\n".join(_content(m) for m in rm), "\n".join(_content(m) for m in em))]


def _content(m: object) -> str:
    if isinstance(m, dict) and isinstance(m.get("content"), str):
        return m["content"]
    return ""


def paragraphs(text: str) -> list[str]:
    """The paragraphs the translator translates one at a time: `segment` cuts a message at
    every `str.splitlines` boundary and never sends a line break to the model."""
    return text.splitlines()


@lru_cache(maxsize=4096)
def translated_lines(text: str) -> tuple[bool, ...]:
    """For each paragraph of `text`: does the translator translate anything in it? (False for
    code, ASCII art, table delimiter rows, blank lines: `segment` keeps those verbatim.)"""
    starts = []
    pos = 0
    for piece in segment(text):
        if piece.translate:
            starts.append(pos)
        pos += len(piece.text)
    out = []
    start = k = 0
    for line in text.splitlines(keepends=True):
        end = start + len(line)
        has = False
        while k < len(starts) and starts[k] < end:
            has, k = True, k + 1
        out.append(has)
        start = end
    return tuple(out)


def paragraph_pairs(p: MessagePair, *, verbatim: bool = False) -> list[ParagraphPair]:
    """The paragraph pairs of a message pair that the translator translated, aligned by line
    number; verbatim lines (code, art) are the code and art filters' business. `verbatim=True`
    keeps every line (blank ones too), for a baseline such as OpusFilter that sees them all."""
    rl, el = paragraphs(p.ru), paragraphs(p.en)
    if len(rl) != len(el):
        if verbatim or any(translated_lines(p.en)):
            return [ParagraphPair(p.where, p.ru, p.en, aligned=False)]
        return []
    kept = (True,) * len(el) if verbatim else translated_lines(p.en)
    return [
        ParagraphPair(f"{p.where}, paragraph {k + 1}", r, e)
        for k, (r, e, t) in enumerate(zip(rl, el, kept, strict=True))
        if t
    ]


class Filter:
    """Decide whether a translation `ru` of the English dialog `en` is usable.

    Subclasses set `name` (the key of their section in `FilterConfig`) and override the hooks
    they need; `self.cfg` is their own section, `self.config` the whole `FilterConfig` (a few
    filters share the art filter's notion of a non-letter line).
    """

    name: ClassVar[str]

    def __init__(self, cfg: FilterConfig | None = None) -> None:
        self.config = cfg or FilterConfig()
        self.cfg = getattr(self.config, self.name)

    # ---- hooks -------------------------------------------------------------------------------

    def check_dialog(self, ru: Dialog, en: Dialog) -> Iterable[Reason]:
        return ()

    def check_message(self, p: MessagePair) -> Iterable[Reason]:
        return ()

    def check_paragraph(self, p: ParagraphPair) -> Iterable[Reason]:
        return ()

    # ---- the loop ----------------------------------------------------------------------------

    def _overrides(self, hook: str) -> bool:
        return getattr(type(self), hook) is not getattr(Filter, hook)

    def check(self, ru: Dialog, en: Dialog) -> Decision:
        return Decision(tuple(dict.fromkeys(self._reasons(ru, en))))

    def _reasons(self, ru: Dialog, en: Dialog) -> Iterator[Reason]:
        yield from self.check_dialog(ru, en)
        per_message, per_paragraph = self._overrides("check_message"), self._overrides("check_paragraph")
        if not (per_message or per_paragraph):
            return
        for m in message_pairs(ru, en):
            if per_message:
                yield from (r.at(m.where) for r in self.check_message(m))
            if per_paragraph:
                for p in paragraph_pairs(m):
                    yield from (r.at(p.where) for r in self.check_paragraph(p))

    def reason(self, rule: str, detail: str) -> Reason:
        return Reason(self.name, rule, detail)

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


def clip(s: str, n: int = 60) -> str:
    s = s.replace("\n", "⏎")
    return s if len(s) <= n else s[: n - 1] + "…"
