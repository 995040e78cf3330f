"""The run layout: RunPaths names every file a stage writes, and nothing else spells those names."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from ruinstruct.paths import RunPaths, safe_name, stats_sidecar

REPO = Path(__file__).resolve().parents[2]


def test_every_named_file_lies_under_the_root_and_is_distinct(tmp_path):
    p = RunPaths(tmp_path / "r")
    files = [p.report, p.kept, p.filter_rejects, p.filter_report, p.mix_rejects, p.raw_file("saiga/x"),
             p.raw_rejects("saiga/x"), p.final_split("train"), p.final_split("validation"),
             p.shard_output({"source": "saiga/x", "index": 0, "hash": "h"}, "t#1"),
             p.eval_output("m-lora-d", "mmlu_en"), p.eval_output("m-lora-d", "mmlu_ru"),
             p.eval_output("m-lora-d", "mt_bench"), p.eval_key("m-lora-d", "mmlu_en"), p.results_json,
             p.results_csv, p.results_table, p.results_plot]
    assert len(set(files)) == len(files)
    assert all(f.is_relative_to(p.root) for f in files)
    assert p.raw_file("saiga/x").name == "saiga__x.parquet" == safe_name("saiga/x") + ".parquet"
    assert stats_sidecar(p.kept) == p.filtered / "kept.parquet.stats.json"
    assert RunPaths(str(tmp_path)).root == tmp_path  # a str root works as well


# file names a stage writes; each may be spelled only in paths.py (src, tasks, flows)
NAMES = ['"kept.parquet"', '"filter.rejects.jsonl"', '"filter_report.json"', '"mix.rejects.jsonl"',
         '"report.json"', '".stats.json"', '"cache-keys"', '"results"', '".rejects.jsonl"', '"README.md"',
         '"stats.json"', '"mmlu_en.json"', '"mmlu_ru.json"', '".key.json"', '"results.json"', '"results.csv"',
         '"table.md"', '"results.png"']


def test_no_file_name_is_spelled_twice():
    offenders = []
    for folder in ("src/ruinstruct", "tasks", "flows"):
        for f in (REPO / folder).rglob("*.py"):
            if f.name == "paths.py" and f.parent.name == "ruinstruct":
                continue
            text = f.read_text()
            offenders += [f"{f.relative_to(REPO)}: {n}" for n in NAMES if n in text]
            offenders += [f"{f.relative_to(REPO)}: {m}" for m in re.findall(r"[\"']data/(?:raw|rejects|final|shards|translated)", text)]
    assert offenders == []


def test_the_paper_deployment_runs_on_a_gpu_pool():
    """A profile that translates on CUDA must not be deployed to the CPU pool, and the reverse."""
    from ruinstruct.config import load_config

    spec = yaml.safe_load((REPO / "prefect.yaml").read_text())
    pools = {}
    for d in spec["deployments"]:
        cfg = load_config(REPO / d["parameters"]["config"])
        pools[(d["entrypoint"], d["name"])] = (cfg.translation.device, d["work_pool"]["name"])
    assert pools[("flows/data.py:data_flow", "paper")] == ("cuda", "ruinstruct-gpu")
    for name, (device, pool) in pools.items():
        assert (device == "cuda") == (pool == "ruinstruct-gpu"), name
