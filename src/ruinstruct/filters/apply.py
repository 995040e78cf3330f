"""Run the filters over (translation, original) pairs; counts and the filter report."""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..schema import Dialog
from .ascii_art import AsciiArtFilter
from .base import Filter, reason_kind
from .code import CodeFilter
from .config import FILTER_NAMES, FilterConfig
from .garbage import GarbageFilter
from .language import LanguageFilter
from .repetition import RepetitionFilter
from .structure import StructureFilter

REGISTRY: dict[str, type[Filter]] = {
    f.name: f for f in (StructureFilter, RepetitionFilter, CodeFilter, AsciiArtFilter, LanguageFilter, GarbageFilter)
}
assert tuple(REGISTRY) == FILTER_NAMES
#: pseudo-filter name under which translations without a usable original are counted
PAIRING = "pairing"


def build_filters(cfg: FilterConfig | None = None) -> list[Filter]:
    """The filters `cfg.enabled` names (all when None), in that order."""
    cfg = cfg or FilterConfig()
    names = cfg.enabled if cfg.enabled is not None else list(FILTER_NAMES)
    return [REGISTRY[n](cfg) for n in names]


@dataclass
class FilterResult:
    """kept + rejected == input; `counts` is per filter (a dialog two filters drop counts in both)."""

    kept: list[Dialog] = field(default_factory=list)
    rejected: list[dict[str, Any]] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)

    @property
    def total(self) -> int:
        return len(self.kept) + len(self.rejected)


def check_pair(ru: Dialog, en: Dialog | None, filters: Sequence[Filter]) -> list[str]:
    """All reasons (from every filter) to reject `ru`; empty when it is kept."""
    if en is None:
        return [f"{PAIRING}/missing_original: no English original with id {ru.get('origin_id')!r}"]
    reasons: list[str] = []
    origin = ru.get("origin_id")
    if origin is not None and en.get("id") is not None and origin != en.get("id"):
        reasons.append(f"{PAIRING}/origin_mismatch: origin_id {origin!r} != original id {en.get('id')!r}")
    for f in filters:
        reasons.extend(f.check(ru, en).reasons)
    return reasons


def apply_filters(
    pairs: Iterable[tuple[Dialog, Dialog | None]], cfg: FilterConfig | None = None
) -> FilterResult:
    """Filter translations against their originals.

    `pairs` are (translation, original) tuples; an original of None (not found) rejects the
    translation with a "pairing/missing_original" reason instead of raising. Rejected rows are
    the translation's fields plus "reasons" (every reason of every filter) and "origin_id".
    """
    filters = build_filters(cfg)
    result = FilterResult(counts={PAIRING: 0, **{f.name: 0 for f in filters}})
    for ru, en in pairs:
        reasons = check_pair(ru, en, filters)
        if not reasons:
            result.kept.append(ru)
            continue
        for name in dict.fromkeys(reason_kind(r).split("/")[0] for r in reasons):
            result.counts[name] = result.counts.get(name, 0) + 1
        row: dict[str, Any] = dict(ru) if isinstance(ru, dict) else {"record": ru}
        row.setdefault("origin_id", None)
        row["reasons"] = reasons
        result.rejected.append(row)
    return result


def pair_with_originals(
    translations: Iterable[Dialog], originals: Iterable[Dialog]
) -> list[tuple[Dialog, Dialog | None]]:
    """(translation, its original or None) by the translation's origin_id."""
    by_id = {d["id"]: d for d in originals}
    return [(d, by_id.get(d.get("origin_id") or "")) for d in translations]


def _clip(text: str, n: int) -> str:
    return text if len(text) <= n else text[: n - 1] + "…"


def _text(d: dict[str, Any]) -> str:
    msgs = d.get("messages") or []
    return "\n".join(f"[{m.get('role')}] {m.get('content')}" for m in msgs if isinstance(m, dict))


def filter_report(
    result: FilterResult,
    *,
    examples_per_kind: int = 3,
    max_chars: int = 300,
    originals: dict[str, Dialog] | None = None,
) -> dict[str, Any]:
    """A JSON-able summary: totals, rejections per filter and per source, and up to
    `examples_per_kind` truncated examples per reason kind ("repetition/token_run", ...)."""
    per_source: dict[str, dict[str, Any]] = defaultdict(lambda: {"in": 0, "kept": 0, "rejected": 0, "per_filter": Counter()})
    for d in result.kept:
        s = per_source[str(d.get("source"))]
        s["in"] += 1
        s["kept"] += 1
    kinds: Counter[str] = Counter()
    examples: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for row in result.rejected:
        s = per_source[str(row.get("source"))]
        s["in"] += 1
        s["rejected"] += 1
        reasons = row.get("reasons") or []
        for name in dict.fromkeys(reason_kind(r).split("/")[0] for r in reasons):
            s["per_filter"][name] += 1
        for r in reasons:
            kind = reason_kind(r)
            kinds[kind] += 1
            if len(examples[kind]) < examples_per_kind:
                ex = {
                    "id": row.get("id"),
                    "origin_id": row.get("origin_id"),
                    "source": row.get("source"),
                    "reason": _clip(r, max_chars),
                    "translation": _clip(_text(row), max_chars),
                }
                if originals and row.get("origin_id") in originals:
                    ex["original"] = _clip(_text(originals[row["origin_id"]]), max_chars)  # type: ignore[arg-type]
                examples[kind].append(ex)
    return {
        "in": result.total,
        "kept": len(result.kept),
        "rejected": len(result.rejected),
        "per_filter": dict(sorted(result.counts.items())),
        "per_reason_kind": dict(sorted(kinds.items())),
        "per_source": {
            k: {**v, "per_filter": dict(sorted(v["per_filter"].items()))} for k, v in sorted(per_source.items())
        },
        "examples": dict(sorted(examples.items())),
    }
