"""The filter protocol: one small class per filter, one method (datatrove style)."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import ClassVar

from ..schema import Dialog
from .config import FilterConfig


@dataclass(frozen=True)
class Decision:
    """Keep (no reasons) or drop with one or more reasons.

    A reason reads "<filter>/<rule>: <details>", e.g.
    "repetition/dup_5gram: 0.41 > 0.15 (source 0.02) in message 2 (assistant)". The part before
    the first ":" is the reason *kind* used to group examples in the filter report.
    """

    reasons: tuple[str, ...] = ()

    @property
    def keep(self) -> bool:
        return not self.reasons

    @classmethod
    def ok(cls) -> Decision:
        return cls()

    @classmethod
    def drop(cls, *reasons: str) -> Decision:
        if not reasons:
            raise ValueError("a drop needs a reason")
        return cls(tuple(reasons))


KEEP = Decision()


def reason_kind(reason: str) -> str:
    return reason.split(":", 1)[0].strip()


class Filter(ABC):
    """Decide whether a translation `ru` of the English dialog `en` is usable."""

    name: ClassVar[str]

    def __init__(self, cfg: FilterConfig | None = None) -> None:
        self.cfg = cfg or FilterConfig()

    @abstractmethod
    def check(self, ru: Dialog, en: Dialog) -> Decision: ...

    def reason(self, rule: str, detail: str) -> str:
        return f"{self.name}/{rule}: {detail}"

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


@dataclass(frozen=True)
class MessagePair:
    where: str  # "message 2 (assistant)" or "dialog" when messages cannot be aligned
    ru: str
    en: str


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


def clip(s: str, n: int = 60) -> str:
    s = s.replace("\n", "⏎")
    return s if len(s) <= n else s[: n - 1] + "…"
