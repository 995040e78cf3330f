"""Run the filters over (translation, original) pairs; the one place drops are counted."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..schema import Dialog
from .ascii_art import AsciiArtFilter
from .base import Filter, Reason
from .code import CodeFilter
from .confidence import ConfidenceFilter
from .config import FILTER_NAMES, FilterConfig
from .garbage import GarbageFilter
from .language import LanguageFilter
from .length import LengthFilter
from .numbers import NumbersFilter
from .repetition import RepetitionFilter
from .structure import StructureFilter
from .untranslated import UntranslatedFilter

REGISTRY: dict[str, type[Filter]] = {
    f.name: f
    for f in (
        StructureFilter,
        RepetitionFilter,
        CodeFilter,
        AsciiArtFilter,
        LanguageFilter,
        GarbageFilter,
        NumbersFilter,
        UntranslatedFilter,
        LengthFilter,
        ConfidenceFilter,
    )
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
class SourceCounts:
    """Dialogs of one source: in == kept + rejected."""

    kept: int = 0
    rejected: int = 0
    per_filter: Counter[str] = field(default_factory=Counter)
    per_rule: Counter[str] = field(default_factory=Counter)

    @property
    def total(self) -> int:
        return self.kept + self.rejected

    def as_dict(self) -> dict[str, Any]:
        return {
            "in": self.total,
            "kept": self.kept,
            "rejected": self.rejected,
            "per_filter": dict(sorted(self.per_filter.items())),
            "per_rule": dict(sorted(self.per_rule.items())),
        }


@dataclass
class FilterResult:
    """kept + rejected == input. `reasons[i]` are the structured reasons of `rejected[i]`.

    Counts are of dialogs: `per_filter[f]` dialogs dropped by filter f, `per_rule["f/rule"]`
    dialogs with at least one reason of that rule (a dialog two filters drop counts under both,
    so these may sum past `rejected`); `per_source` splits everything by the dialog's source.
    """

    kept: list[Dialog] = field(default_factory=list)
    rejected: list[dict[str, Any]] = field(default_factory=list)
    reasons: list[tuple[Reason, ...]] = field(default_factory=list)
    per_filter: Counter[str] = field(default_factory=Counter)
    per_rule: Counter[str] = field(default_factory=Counter)
    per_source: dict[str, SourceCounts] = field(default_factory=dict)
    #: the filters that ran (and "pairing"): listed at 0 in `per_filter`, overall and per source,
    #: so a report shows a filter that dropped nothing instead of leaving it out
    filters: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        self.per_filter.update(dict.fromkeys(self.filters, 0))

    @property
    def total(self) -> int:
        return len(self.kept) + len(self.rejected)

    def add(self, ru: Dialog, reasons: Sequence[Reason]) -> None:
        name = str(ru.get("source") if isinstance(ru, dict) else None)
        src = self.per_source.get(name)
        if src is None:
            src = self.per_source[name] = SourceCounts(per_filter=Counter(dict.fromkeys(self.filters, 0)))
        if not reasons:
            self.kept.append(ru)
            src.kept += 1
            return
        filters = set(dict.fromkeys(r.filter for r in reasons))
        rules = set(dict.fromkeys(r.kind for r in reasons))
        self.per_filter.update(filters)
        self.per_rule.update(rules)
        src.rejected += 1
        src.per_filter.update(filters)
        src.per_rule.update(rules)
        row: dict[str, Any] = dict(ru) if isinstance(ru, dict) else {"record": ru}
        row.setdefault("origin_id", None)
        row["reasons"] = [str(r) for r in reasons]
        self.rejected.append(row)
        self.reasons.append(tuple(reasons))

    def rejected_with_reasons(self) -> Iterable[tuple[dict[str, Any], tuple[Reason, ...]]]:
        return zip(self.rejected, self.reasons, strict=True)


def check_pair(ru: Dialog, en: Dialog | None, filters: Sequence[Filter]) -> list[Reason]:
    """All reasons (from every filter) to reject `ru`; empty when it is kept."""
    if en is None:
        return [Reason(PAIRING, "missing_original", f"no English original with id {ru.get('origin_id')!r}")]
    reasons: list[Reason] = []
    origin = ru.get("origin_id")
    if origin is not None and en.get("id") is not None and origin != en.get("id"):
        reasons.append(Reason(PAIRING, "origin_mismatch", f"origin_id {origin!r} != original id {en.get('id')!r}"))
    for f in filters:
        reasons.extend(f.check(ru, en).reasons)
    return reasons


def apply_filters(
    pairs: Iterable[tuple[Dialog, Dialog | None]], cfg: FilterConfig | None = None
) -> FilterResult:
    """Filter translations against their originals.

    `pairs` are (translation, original) tuples; an original of None (not found) rejects the
    translation with a "pairing/missing_original" reason instead of raising. Rejected rows are
    the translation's fields plus "reasons" (every reason of every filter, as readable strings)
    and "origin_id".
    """
    filters = build_filters(cfg)
    result = FilterResult(filters=(PAIRING, *(f.name for f in filters)))
    for ru, en in pairs:
        result.add(ru, check_pair(ru, en, filters))
    return result


def pair_with_originals(
    translations: Iterable[Dialog], originals: Iterable[Dialog]
) -> list[tuple[Dialog, Dialog | None]]:
    """(translation, its original or None) by the translation's origin_id."""
    by_id = {d["id"]: d for d in originals}
    return [(d, by_id.get(d.get("origin_id") or "")) for d in translations]
