"""Rendering of the filter stage summary (the `filter-report` artifact and the CLI)."""

from __future__ import annotations

from typing import Any


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
    lines += ["", "| source | translated | kept | rejected |", "|---|---|---|---|"]
    for src, c in summary["per_source"].items():
        lines.append(f"| {src} | {c.get('translated', 0)} | {c.get('kept', 0)} | {c.get('rejected', 0)} |")
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
