"""The data report: counts at every stage per source, checked to add up, rendered as markdown.

Stages per source:
  downloaded = valid + invalid + excluded    (records read: lines, or messages for oasst1;
                                              excluded = by design, e.g. other languages)
  dialogs                                    (valid records assembled into dialogs)
  translated = dialogs                       (for sources that are translated)
  translated = ru_kept + filtered_out
  final      = en_in + ru_in - duplicates - capped   (mix)
"""

from __future__ import annotations

from collections import Counter
from typing import Any


class CountMismatch(AssertionError):
    """A stage's numbers do not add up: a bug, never to be papered over."""


def build_report(
    loads: list[dict[str, Any]],
    shards: list[dict[str, Any]],
    filtered: dict[str, Any] | None,
    mixed: dict[str, Any] | None,
    failed_shards: list[dict[str, Any]] | None = None,
    *,
    include_originals: bool = True,
) -> dict[str, Any]:
    rows: dict[str, dict[str, Any]] = {}
    for ld in loads:
        c = ld["counts"]
        rows[ld["source"]] = {
            "downloaded": c["read"],
            "invalid": c["rejected"],
            "excluded": c.get("excluded", 0),
            "valid": c["kept"],
            "dialogs": c.get("dialogs", c["kept"]),
            "to_translate": c.get("to_translate", 0),
            "translated": 0,
            "filtered_out": 0,
            "ru_kept": 0,
            "duplicates": 0,
            "capped": 0,
            "final_en": 0,
            "final_ru": 0,
            "final": 0,
        }
    tstats: Counter = Counter(shards=0, shards_cached=0, shards_reused=0)
    for s in shards:
        rows[s["source"]]["translated"] += s["dialogs"]
        tstats["shards"] += 1
        if s.get("cached") or s.get("reused"):
            # its stats are an earlier run's: not counted again
            tstats["shards_cached" if s.get("cached") else "shards_reused"] += 1
            continue
        for k, v in s.items():
            if isinstance(v, int) and not isinstance(v, bool) and k not in ("index", "dialogs"):
                tstats[k] += v
    filter_reasons: dict[str, Any] = {}
    by_reason: dict[str, dict[str, int]] = {}
    if filtered:
        for src, c in filtered["per_source"].items():
            rows[src]["filtered_out"] = c.get("rejected", 0)
            rows[src]["ru_kept"] = c.get("kept", 0)
        filter_reasons = filtered.get("report", {})
        # a dialog rejected by two filters counts under both, so these may sum past filtered_out
        by_reason = {
            src: dict(sorted(v.get("per_filter", {}).items()))
            for src, v in sorted(filter_reasons.get("per_source", {}).items())
        }
    if mixed:
        for src, c in mixed["per_source"].items():
            r = rows[src]
            r["duplicates"] = c.get("duplicate_en", 0) + c.get("duplicate_ru", 0)
            r["capped"] = c.get("capped_en", 0) + c.get("capped_ru", 0)
            r["final_en"] = c.get("train_en", 0) + c.get("validation_en", 0)
            r["final_ru"] = c.get("train_ru", 0) + c.get("validation_ru", 0)
            r["final"] = r["final_en"] + r["final_ru"]
            r["mix_in"] = sum(v for k, v in c.items() if k.startswith("in_"))
    checks = check_counts(rows, complete=filtered is not None and mixed is not None,
                          include_originals=include_originals)
    totals = Counter()
    for r in rows.values():
        totals.update({k: v for k, v in r.items() if isinstance(v, int)})
    return {
        "per_source": rows,
        "warnings": report_warnings(rows, mixed, {ld["source"]: ld.get("warnings") or [] for ld in loads}),
        "totals": dict(totals),
        "translation": dict(tstats),
        "filtered_out_by_filter": by_reason,
        "filters": filter_reasons,
        "splits": (mixed or {}).get("splits"),
        "failed_shards": failed_shards or [],
        "checks": checks,
    }


def report_warnings(
    rows: dict[str, dict[str, Any]], mixed: dict[str, Any] | None, load_warnings: dict[str, list[str]] | None = None
) -> list[str]:
    """Things that are not errors but that a user must see: a source that gave nothing (a wrong
    path, filter or language), an empty dataset. A load stage's own warnings for a source (its
    summary's "warnings") are taken as they are, instead of this module's for that source."""
    out = []
    for src, r in rows.items():
        own = (load_warnings or {}).get(src)
        if own:
            out += own
        elif r["dialogs"] == 0:
            why = "no records" if r["downloaded"] == 0 else (
                f"{r['downloaded']} records read, {r['invalid']} invalid, {r['excluded']} excluded"
            )
            out.append(f"source {src} yielded no dialogs ({why})")
    if mixed and sum((mixed.get("splits") or {}).values()) == 0:
        out.append("the final dataset is empty")
    return out


def check_counts(rows: dict[str, dict[str, Any]], *, complete: bool, include_originals: bool = True) -> dict[str, bool]:
    checks = {}
    for src, r in rows.items():
        ok = r["downloaded"] == r["valid"] + r["invalid"] + r["excluded"]
        checks[f"{src}: downloaded = valid + invalid + excluded"] = ok
        if not complete:
            continue
        checks[f"{src}: translated = to_translate"] = r["translated"] == r["to_translate"]
        checks[f"{src}: translated = ru_kept + filtered_out"] = r["translated"] == r["ru_kept"] + r["filtered_out"]
        if "mix_in" in r:
            # every dialog (less the translated originals when they are left out) and every kept
            # translation reaches the mix
            originals = r["dialogs"] - (0 if include_originals else r["to_translate"])
            checks[f"{src}: mix_in = dialogs + ru_kept"] = r["mix_in"] == originals + r["ru_kept"]
            checks[f"{src}: final = mix_in - duplicates - capped"] = r["final"] == r["mix_in"] - r["duplicates"] - r["capped"]
    bad = [k for k, v in checks.items() if not v]
    if bad:
        raise CountMismatch("data report counts do not add up: " + "; ".join(bad))
    return checks


COLUMNS = [
    "downloaded", "invalid", "excluded", "valid", "dialogs", "to_translate", "translated", "filtered_out", "ru_kept",
    "duplicates", "capped", "final_en", "final_ru", "final",
]


def report_table(report: dict[str, Any]) -> list[dict[str, Any]]:
    """Rows for a Prefect table artifact (one per source plus a total)."""
    rows = [{"source": s, **{c: r.get(c, 0) for c in COLUMNS}} for s, r in report["per_source"].items()]
    rows.append({"source": "TOTAL", **{c: report["totals"].get(c, 0) for c in COLUMNS}})
    return rows


def report_markdown(report: dict[str, Any]) -> str:
    head = "| source | " + " | ".join(COLUMNS) + " |"
    sep = "|---" * (len(COLUMNS) + 1) + "|"
    lines = ["# Data report", "", head, sep]
    for row in report_table(report):
        lines.append("| " + " | ".join(str(row[k]) for k in ["source", *COLUMNS]) + " |")
    by_filter = report.get("filtered_out_by_filter") or {}
    names = sorted({f for v in by_filter.values() for f in v})
    if names:
        lines += ["", "## Filtered out, by filter (a dialog two filters reject counts under both)", "",
                  "| source | " + " | ".join(names) + " |", "|---" * (len(names) + 1) + "|"]
        for src, v in by_filter.items():
            lines.append(f"| {src} | " + " | ".join(str(v.get(n, 0)) for n in names) + " |")
    t = report.get("translation") or {}
    if t:
        lines += ["", "Translation: " + ", ".join(f"{k} {v}" for k, v in sorted(t.items()))]
    if report.get("splits"):
        lines += ["", "Final splits: " + ", ".join(f"{k} {v}" for k, v in report["splits"].items())]
    if report.get("warnings"):
        lines += ["", "## Warnings", ""] + [f"- {w}" for w in report["warnings"]]
    if report.get("failed_shards"):
        lines += ["", "## Failed shards", ""]
        lines += [f"- {f['source']} shard {f['index']}: {f.get('error', '')}" for f in report["failed_shards"]]
    lines += ["", "All counts add up: " + ("yes" if all(report["checks"].values()) else "NO")]
    return "\n".join(lines) + "\n"
