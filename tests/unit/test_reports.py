"""The results table: rows from the benchmarks' scores, the paper's Table 1 figures beside the
measured ones (matched by registry model + method + data), and the exact table.md / results.csv."""

from __future__ import annotations

import json

from ruinstruct import reports
from ruinstruct.paths import RunPaths

MODELS = [
    {"model": "llama2-7b", "method": "lora", "data": "ruinstruct",
     "scores": {"mt_bench": {"turn1": 4.004, "turn2": 2.996, "average": 3.5, "judged": 160, "excluded": 0},
                "mmlu_en": {"micro": 41.2345, "category_mean": 40.0},
                "mmlu_ru": {"micro": 31.0, "category_mean": 29.995}}},
    {"model": "xglm-4.5b", "method": "full", "data": "ruinstruct",
     "scores": {"mmlu_en": {"micro": 23.0}, "mmlu_ru": {"micro": 24.0, "category_mean": 25.5}},
     "failed": {"mt_bench": "the judge's endpoint answered 500"}},
    {"model": "tiny-llama", "method": "lora", "data": "ruinstruct",
     "scores": {"mt_bench": {"turn1": 5.5, "turn2": 1.25, "average": 3.375}, "mmlu_en": {"micro": 25}}},
]

TABLE = """\
Measured on this run, the paper's Table 1 figure in parentheses (- : not run, or no such row in the paper). \
MT-Bench RU: ratings 1-10; MMLU, MMLU RU: accuracy, % (the paper: 5-shot).

| model | method | data | MT-Bench RU turn 1 | turn 2 | average | MMLU | MMLU RU |
|---|---|---|---:|---:|---:|---:|---:|
| llama2-7b | LoRA | ruinstruct | 4.00 (4.06) | 3.00 (2.97) | 3.50 (3.51) | 41.23 (41.02) | 30.00 (29.68) |
| xglm-4.5b | full | ruinstruct | failed (2.32) | failed (1.97) | failed (2.15) | 23.00 (23.73) | 25.50 (24.36) |
| tiny-llama | LoRA | ruinstruct | 5.50 (-) | 1.25 (-) | 3.38 (-) | 25.00 (-) | - (-) |
"""

CSV = """\
model,method,data,mt_bench_turn1,mt_bench_turn1_paper,mt_bench_turn2,mt_bench_turn2_paper,mt_bench_average,\
mt_bench_average_paper,mmlu,mmlu_paper,mmlu_ru,mmlu_ru_paper,failed
llama2-7b,lora,ruinstruct,4.00,4.06,3.00,2.97,3.50,3.51,41.23,41.02,30.00,29.68,
xglm-4.5b,full,ruinstruct,,2.32,,1.97,,2.15,23.00,23.73,25.50,24.36,mt_bench
tiny-llama,lora,ruinstruct,5.50,,1.25,,3.38,,25.00,,,,
"""


def test_rows_take_mmlu_micro_and_mmlu_ru_category_mean_with_paper_figures():
    rows = reports.result_rows(MODELS)
    assert rows[0] == {
        "model": "llama2-7b", "method": "lora", "data": "ruinstruct",
        "mt_bench_turn1": 4.0, "mt_bench_turn1_paper": 4.06, "mt_bench_turn2": 3.0, "mt_bench_turn2_paper": 2.97,
        "mt_bench_average": 3.5, "mt_bench_average_paper": 3.51, "mmlu": 41.23, "mmlu_paper": 41.02,
        "mmlu_ru": 30.0, "mmlu_ru_paper": 29.68, "failed": [],
    }
    assert rows[1]["failed"] == ["mt_bench"] and rows[1]["mt_bench_turn1"] is None
    assert rows[1]["mmlu_ru"] == 25.5  # the category mean, not the micro average (24.0)
    assert all(rows[2][k + reports.PAPER_SUFFIX] is None for k, *_ in reports.METRICS)  # no paper row
    assert rows[2]["mmlu_ru"] is None  # not run


def test_paper_table_matches_by_registry_name_method_and_data():
    assert reports.paper_figures("llama-7b", "lora", "saiga")["mmlu_ru"] == 30.18
    assert reports.paper_figures("rugpt3.5-13b", "lora", "ruinstruct")["mt_bench_turn2"] == 1.75
    assert reports.paper_figures("xglm-4.5b", "full", "saiga") is None  # the paper tuned full on "ours" only
    assert reports.paper_figures("llama-13b", "lora", "ruinstruct") is None
    assert len(reports.PAPER_TABLE1) == 11  # Table 1's fine-tuned rows (GigaChat, ChatGPT are services)


def test_exact_table_and_csv():
    rows = reports.result_rows(MODELS)
    assert reports.table_markdown(rows) == TABLE
    assert reports.rows_csv(rows) == CSV


def test_artifact_rows_have_table1_columns_with_paper_beside():
    art = reports.artifact_rows(reports.result_rows(MODELS))
    assert list(art[0]) == ["model", "method", "data", "MT-Bench RU turn 1", "MT-Bench RU turn 1 (paper)", "turn 2",
                            "turn 2 (paper)", "average", "average (paper)", "MMLU", "MMLU (paper)", "MMLU RU",
                            "MMLU RU (paper)"]
    assert art[1]["MT-Bench RU turn 1"] == "failed" and art[1]["MT-Bench RU turn 1 (paper)"] == "2.32"
    assert art[2]["MMLU"] == "25.00" and art[2]["MMLU (paper)"] == "-"


def test_write_results_writes_the_four_files(tmp_path):
    rows = reports.result_rows(MODELS)
    files = reports.write_results(tmp_path, rows, {"failed": [{"cell": "x", "benchmark": "mt_bench", "error": "e"}]})
    paths = RunPaths(tmp_path)
    assert files == {"json": str(paths.results_json), "csv": str(paths.results_csv),
                     "table": str(paths.results_table), "plot": str(paths.results_plot)}
    assert paths.results_table.read_text() == TABLE and paths.results_csv.read_text() == CSV
    data = json.loads(paths.results_json.read_text())
    assert data["rows"] == rows and data["columns"] == reports.csv_columns() and data["failed"][0]["cell"] == "x"
    assert paths.results_plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert sorted(p.name for p in paths.results.iterdir()) == ["results.csv", "results.json", "results.png",
                                                               "table.md"]  # no temporary file left
