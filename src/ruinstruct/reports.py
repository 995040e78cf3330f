"""The results table of a run, shaped like Table 1 of the paper (PAPER.md): one row per
fine-tuned model with MT-Bench RU (turn 1, turn 2, average), MMLU and MMLU RU, and the paper's
published figure beside each measured one where the paper has that model x method x data.

- `result_rows(models)`: rows from each model's benchmark scores (stages.evaluate collects them).
- `table_markdown(rows)`, `rows_csv(rows)`: the exact text of table.md and results.csv.
- `write_results(folder_paths, rows, ...)`: results.json, results.csv, table.md, results.png,
  each written atomically.

No Prefect here: tasks/evaluate.py publishes the same rows as the `results-table` artifact.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from .config import OWN_DATASET
from .io import atomic_path, write_json, write_text
from .paths import RunPaths

#: (key, Table 1's column header, benchmark, score field). MMLU is the micro average over
#: questions; MMLU RU its authors' aggregate, the mean of the four category means (PAPER.md).
METRICS: tuple[tuple[str, str, str, str], ...] = (
    ("mt_bench_turn1", "MT-Bench RU turn 1", "mt_bench", "turn1"),
    ("mt_bench_turn2", "turn 2", "mt_bench", "turn2"),
    ("mt_bench_average", "average", "mt_bench", "average"),
    ("mmlu", "MMLU", "mmlu_en", "micro"),
    ("mmlu_ru", "MMLU RU", "mmlu_ru", "category_mean"),
)
PAPER_SUFFIX = "_paper"
#: the dataset names of Table 1: the paper's "ours" is this project's own dataset
SAIGA = "saiga"

# PAPER.md, Table 1: (registry model, method, data) -> turn 1, turn 2, average, MMLU, MMLU RU.
# The GigaChat and ChatGPT rows are services, not fine-tuned models: no run can match them.
_T1 = {
    ("llama-7b", "lora", SAIGA): (4.23, 3.06, 3.65, 35.62, 30.18),
    ("llama-7b", "lora", OWN_DATASET): (3.50, 2.91, 3.20, 32.51, 28.58),
    ("llama2-7b", "lora", SAIGA): (4.76, 3.62, 4.19, 43.24, 35.91),
    ("llama2-7b", "lora", OWN_DATASET): (4.06, 2.97, 3.51, 41.02, 29.68),
    ("llama2-13b", "lora", SAIGA): (5.96, 4.12, 5.04, 54.48, 42.60),
    ("llama2-13b", "lora", OWN_DATASET): (4.30, 2.98, 3.64, 52.31, 38.86),
    ("xglm-4.5b", "full", OWN_DATASET): (2.32, 1.97, 2.15, 23.73, 24.36),
    ("xglm-4.5b", "lora", SAIGA): (2.73, 1.96, 2.35, 25.40, 24.91),
    ("xglm-4.5b", "lora", OWN_DATASET): (2.28, 2.08, 2.18, 25.82, 25.55),
    ("rugpt3.5-13b", "lora", SAIGA): (3.71, 2.75, 3.23, 26.90, 26.79),
    ("rugpt3.5-13b", "lora", OWN_DATASET): (2.61, 1.75, 2.18, 24.69, 24.12),
}
PAPER_TABLE1: dict[tuple[str, str, str], dict[str, float]] = {
    cell: dict(zip((m[0] for m in METRICS), figures, strict=True)) for cell, figures in _T1.items()
}
_METHOD_NAMES = {"lora": "LoRA", "full": "full"}


def paper_figures(model: str, method: str, data: str) -> dict[str, float] | None:
    """The paper's Table 1 row of a registry model x method x data (saiga, or ruinstruct for
    the paper's "ours"), or None: the paper has no such row (a tiny model, LLaMA-13B, ...)."""
    return PAPER_TABLE1.get((model, method, data))


def _num(v: Any) -> float | None:
    return round(float(v), 2) if isinstance(v, int | float) and not isinstance(v, bool) else None


def result_rows(models: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per fine-tuned model, in the order given. Each input is
    ``{"model", "method", "data", "scores": {benchmark: scores dict}, "failed": {benchmark: message}}``
    (a benchmark not run is absent from both). A row holds each metric rounded to 2 decimals (None:
    not run, or failed), its paper figure under ``<metric>_paper`` (None: no paper row), and
    ``failed``: the benchmarks that failed, in Table 1's order."""
    rows = []
    for m in models:
        scores, failed = m.get("scores") or {}, m.get("failed") or {}
        paper = paper_figures(m["model"], m["method"], m["data"]) or {}
        row: dict[str, Any] = {"model": m["model"], "method": m["method"], "data": m["data"]}
        for key, _, bench, field in METRICS:
            row[key] = _num((scores.get(bench) or {}).get(field))
            row[key + PAPER_SUFFIX] = paper.get(key)
        row["failed"] = [b for b in dict.fromkeys(b for _, _, b, _ in METRICS) if b in failed]
        rows.append(row)
    return rows


def csv_columns() -> list[str]:
    return ["model", "method", "data", *(c for k, *_ in METRICS for c in (k, k + PAPER_SUFFIX)), "failed"]


def _fmt(v: float | None) -> str:
    return "-" if v is None else f"{v:.2f}"


def _cell(row: dict[str, Any], key: str, bench: str) -> str:
    measured = "failed" if bench in row["failed"] else _fmt(row[key])
    return f"{measured} ({_fmt(row[key + PAPER_SUFFIX])})"


def table_markdown(rows: Sequence[dict[str, Any]]) -> str:
    """table.md: Table 1's columns, each cell `measured (paper)`; `-` where there is no figure."""
    head = ["model", "method", "data", *(title for _, title, _, _ in METRICS)]
    lines = [
        "Measured on this run, the paper's Table 1 figure in parentheses (- : not run, or no such row in the "
        "paper). MT-Bench RU: ratings 1-10; MMLU, MMLU RU: accuracy, % (the paper: 5-shot).",
        "",
        "| " + " | ".join(head) + " |",
        "|" + "---|" * 3 + "---:|" * len(METRICS),
    ]
    for r in rows:
        cells = [r["model"], _METHOD_NAMES.get(r["method"], r["method"]), r["data"],
                 *(_cell(r, key, bench) for key, _, bench, _ in METRICS)]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def rows_csv(rows: Sequence[dict[str, Any]]) -> str:
    """results.csv: one column per metric and one per paper figure; empty where there is none."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    cols = csv_columns()
    writer.writerow(cols)
    for r in rows:
        writer.writerow([";".join(r[c]) if c == "failed" else "" if r[c] is None
                         else f"{r[c]:.2f}" if isinstance(r[c], float) else r[c] for c in cols])
    return buf.getvalue()


def artifact_rows(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """The `results-table` artifact: Table 1's headers, each followed by the paper's figure."""
    out = []
    for r in rows:
        a: dict[str, Any] = {"model": r["model"], "method": _METHOD_NAMES.get(r["method"], r["method"]),
                             "data": r["data"]}
        for key, title, bench, _ in METRICS:
            a[title] = "failed" if bench in r["failed"] else _fmt(r[key])
            a[f"{title} (paper)"] = _fmt(r[key + PAPER_SUFFIX])
        out.append(a)
    return out


def plot_results(rows: Sequence[dict[str, Any]], path: str | Path) -> Path:
    """results.png: MT-Bench RU (1-10) and MMLU / MMLU RU (%) as grouped bars per model, the
    paper's figure as a hatched bar beside each measured one."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [("MT-Bench RU (1-10)", METRICS[:3]), ("MMLU 5-shot (%)", METRICS[3:])]
    labels = [f"{r['model']}\n{_METHOD_NAMES.get(r['method'], r['method'])} {r['data']}" for r in rows]
    fig, axes = plt.subplots(1, 2, figsize=(max(8.0, 2.2 * len(rows) + 4), 4.5))
    for ax, (title, metrics) in zip(axes, panels, strict=True):
        width = 0.8 / (2 * len(metrics))
        for i, (key, name, _, _) in enumerate(metrics):
            for j, (suffix, hatch, alpha) in enumerate((("", None, 1.0), (PAPER_SUFFIX, "//", 0.45))):
                values = [r[key + suffix] or 0.0 for r in rows]
                offset = (2 * i + j - len(metrics) + 0.5) * width
                ax.bar([x + offset for x in range(len(rows))], values, width, hatch=hatch, alpha=alpha,
                       color=f"C{i}", label=name + (" (paper)" if suffix else ""))
        ax.set_xticks(range(len(rows)), labels, fontsize=8)
        ax.set_title(title)
        ax.legend(fontsize=7)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)
    return Path(path)


def write_results(root: str | Path, rows: Sequence[dict[str, Any]], extra: dict[str, Any] | None = None) -> dict[str, str]:
    """results/results.json (rows, columns, `extra`), results.csv, table.md and results.png.
    Returns the four paths."""
    paths = RunPaths(Path(root))
    write_json(paths.results_json, {"columns": csv_columns(), "rows": list(rows), **(extra or {})})
    write_text(paths.results_csv, rows_csv(rows))
    write_text(paths.results_table, table_markdown(rows))
    plot_results(rows, paths.results_plot)
    return {"json": str(paths.results_json), "csv": str(paths.results_csv), "table": str(paths.results_table),
            "plot": str(paths.results_plot)}
