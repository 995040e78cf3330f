"""The filter stage summary: `filter_report` (JSON-able) and its markdown rendering.

Both read the counts `FilterResult` keeps; nothing here re-counts reasons or parses them.
"""

from __future__ import annotations

import math
from collections import defaultdict
from typing import Any

from .apply import FilterResult
from .confidence import dialog_min_logprob

#: quantiles of the per-dialog minimum translator score shown in the report
SCORE_QUANTILES = (0.01, 0.05, 0.25, 0.5)


def _clip(text: str, n: int) -> str:
    return text if len(text) <= n else text[: n - 1] + "…"


def _text(d: dict[str, Any]) -> str:
    msgs = d.get("messages") or []
    return "\n".join(f"[{m.get('role')}] {m.get('content')}" for m in msgs if isinstance(m, dict))


def _quantile(xs: list[float], q: float) -> float:
    """Nearest-rank quantile of sorted `xs` (a value that occurs, no interpolation)."""
    return xs[min(len(xs) - 1, max(0, math.ceil(q * len(xs)) - 1))]


def score_distribution(dialogs: list[dict[str, Any]], bins: int = 8) -> dict[str, Any]:
    """Distribution of the per-dialog minimum translator score (meta["mt_logprob"]):
    how many dialogs carry one, min, quantiles and a histogram of equal-width bins."""
    scores = sorted(s for d in dialogs if (s := dialog_min_logprob(d)) is not None)
    out: dict[str, Any] = {"dialogs": len(dialogs), "scored": len(scores)}
    if not scores:
        return out
    out["min"] = round(scores[0], 4)
    out["quantiles"] = {f"{round(q * 100)}%": round(_quantile(scores, q), 4) for q in SCORE_QUANTILES}
    lo, hi = scores[0], scores[-1]
    width = (hi - lo) / bins if hi > lo else 1.0
    counts = [0] * bins
    for s in scores:
        counts[min(bins - 1, int((s - lo) / width))] += 1
    out["histogram"] = [
        {"from": round(lo + k * width, 4), "to": round(lo + (k + 1) * width, 4), "dialogs": n}
        for k, n in enumerate(counts)
    ]
    return out


def filter_report(result: FilterResult, *, examples_per_kind: int = 3, max_chars: int = 300) -> dict[str, Any]:
    """A JSON-able summary: totals, dialogs dropped per filter, per rule ("repetition/token_run")
    and per source, the translator score distribution, and up to `examples_per_kind` truncated
    examples per rule."""
    examples: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for row, reasons in result.rejected_with_reasons():
        for r in reasons:
            if len(examples[r.kind]) >= examples_per_kind:
                continue
            examples[r.kind].append({
                "id": row.get("id"),
                "origin_id": row.get("origin_id"),
                "source": row.get("source"),
                "reason": _clip(str(r), max_chars),
                "translation": _clip(_text(row), max_chars),
            })
    return {
        "in": result.total,
        "kept": len(result.kept),
        "rejected": len(result.rejected),
        "per_filter": dict(sorted(result.per_filter.items())),
        "per_rule": dict(sorted(result.per_rule.items())),
        "per_source": {k: v.as_dict() for k, v in sorted(result.per_source.items())},
        "translator_scores": score_distribution([*result.kept, *result.rejected]),
        "examples": dict(sorted(examples.items())),
    }


def filter_report_markdown(summary: dict[str, Any]) -> str:
    rep = summary["report"]
    lines = [
        "# Filter report",
        "",
        f"Translated {summary['translated']}, kept {summary['kept']}, rejected {summary['rejected']}.",
        "",
        "| filter | rejected |",
        "|---|---|",
    ]
    lines += [f"| {k} | {v} |" for k, v in sorted(rep.get("per_filter", {}).items())]
    per_rule = rep.get("per_rule", {})
    if per_rule:
        lines += ["", "| rule | rejected |", "|---|---|"]
        lines += [f"| {k} | {v} |" for k, v in sorted(per_rule.items())]
    lines += ["", "| source | translated | kept | rejected |", "|---|---|---|---|"]
    for src, c in summary["per_source"].items():
        lines.append(f"| {src} | {c.get('translated', 0)} | {c.get('kept', 0)} | {c.get('rejected', 0)} |")
    scores = rep.get("translator_scores") or {}
    if scores.get("scored"):
        q = ", ".join(f"{k}: {v}" for k, v in scores["quantiles"].items())
        lines += [
            "",
            "## Translator confidence",
            "",
            f"Lowest unit log-probability per dialog, {scores['scored']} of {scores['dialogs']} dialogs scored: "
            f"min {scores['min']}, quantiles {q}.",
            "",
            "| from | to | dialogs |",
            "|---|---|---|",
        ]
        lines += [f"| {b['from']} | {b['to']} | {b['dialogs']} |" for b in scores["histogram"]]
    examples = rep.get("examples", {})
    if examples:
        lines += ["", "## Examples", ""]
        for reason, exs in sorted(examples.items()):
            lines.append(f"### {reason}")
            for ex in exs:
                lines.append(f"- `{ex.get('id')}`: {ex.get('reason', '')}")
                text = str(ex.get("translation", ex.get("text", "")))[:300].replace("\n", " ⏎ ")
                if text:
                    lines.append(f"  > {text}")
    lines.append(f"\nRejects file: `{summary['rejects_file']}`")
    return "\n".join(lines) + "\n"
