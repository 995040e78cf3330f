"""The run output layout: every file a stage writes is named here, once.

    <root>/data/raw/<source>.parquet            valid dialogs of a source (load stage)
    <root>/data/rejects/<source>.rejects.jsonl  its invalid records, with reasons
    <root>/data/shards/<source>/<i>-<hash>.parquet            translation shard inputs
    <root>/data/translated/<source>/<i>-<key>.parquet         shard outputs (+ .stats.json sidecar)
    <root>/data/cache/                          paragraph cache (unless translation.cache_dir)
    <root>/data/filtered/kept.parquet           translations the filters kept
    <root>/data/rejects/filter.rejects.jsonl    the ones they dropped, with reasons
    <root>/data/filter_report.json              filter counts
    <root>/data/rejects/mix.rejects.jsonl       duplicates dropped by the mix
    <root>/data/final/                          the dataset folder (load_dataset(path)):
    <root>/data/final/data/<split>-00000-of-00001.parquet     its splits
    <root>/data/final/README.md                 its dataset card
    <root>/data/final/stats.json                its counts, licenses and upstreams (no machine path)
    <root>/data/report.json                     the data report
    <root>/data/faults/<source>-<index>         an injected shard fault fired (faults.fail_shards_once)
    <root>/models/<model>-<method>-<data>/      one fine-tuning run (train/sft.py writes it)
    <root>/models/<model>-<method>-<data>/train_key.json      its cache key, and whether it finished
    <root>/eval/<model>-<method>-<data>/mmlu_en.json, mmlu_ru.json     MMLU scores and per-question predictions
    <root>/eval/<model>-<method>-<data>/mt_bench/   MT-Bench (FastChat layout: model_answer/, model_judgment/)
    <root>/eval/<model>-<method>-<data>/<benchmark>.key.json   its cache key, and whether it finished
    <root>/results/results.json, results.csv, table.md, results.png   Table 1 of the run
    <root>/.prefect/                            persisted task results and cache records

Path rule: paths written in a profile are relative to the profile file (an explicit `root:`
too); the default run root, runs/<name>, is relative to the working directory.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

#: suffix of a rejects file: `<source>.rejects.jsonl`, `<output stem>.rejects.jsonl` (io.rejects_path)
REJECTS_SUFFIX = ".rejects.jsonl"
#: the dataset folder's card and summary (written by mix.py into whatever folder it is given)
DATASET_CARD = "README.md"
#: a model folder's card: the Hub reads a model's card from the same file name
MODEL_CARD = DATASET_CARD
DATASET_STATS = "stats.json"
#: what a training run writes last in its folder (train/sft.py)
TRAIN_SUMMARY = "train_summary.json"
#: the cache key of the run in a model folder, and whether it finished (stages/train.py)
TRAIN_KEY = "train_key.json"
#: beside an output that is built piece by piece (MMLU, one subject at a time): the pieces done so far
PROGRESS_SUFFIX = ".progress.jsonl"
#: MT-Bench output folder (FastChat's llm_judge layout): model_answer/<model_id>.jsonl,
#: model_judgment/<judge>_single.jsonl; beside them our scores and the API judge's verdict cache
MT_BENCH_ANSWERS, MT_BENCH_JUDGMENTS = "model_answer", "model_judgment"
MT_BENCH_SCORES, MT_BENCH_JUDGE_CACHE = "scores.json", "judge_cache"


#: a benchmark's output in eval/<cell>/: a file for MMLU, a FastChat folder for MT-Bench
EVAL_OUTPUTS = {"mmlu_en": "mmlu_en.json", "mmlu_ru": "mmlu_ru.json", "mt_bench": "mt_bench"}
#: beside it: `<benchmark>.key.json`, the cache key of the evaluation and whether it finished
EVAL_KEY_SUFFIX = ".key.json"
#: the files of results/
RESULTS_JSON, RESULTS_CSV, RESULTS_TABLE, RESULTS_PLOT = "results.json", "results.csv", "table.md", "results.png"


def model_folder(model: str, method: str, data: str) -> str:
    """The folder name of one fine-tuning run: ``<model>-<method>-<data>``."""
    return f"{safe_name(model)}-{method}-{safe_name(data)}"


def safe_name(name: str) -> str:
    """A source name as a file name: saiga/ru_turbo_saiga -> saiga__ru_turbo_saiga."""
    return name.replace("/", "__")


def stats_sidecar(output: str | Path) -> Path:
    """The stats file written after a shard's output: both present = the shard is finished."""
    return Path(f"{output}.stats.json")


@dataclass(frozen=True)
class RunPaths:
    root: Path

    def __post_init__(self) -> None:
        object.__setattr__(self, "root", Path(self.root))

    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def raw(self) -> Path:
        return self.data / "raw"

    @property
    def shards(self) -> Path:
        return self.data / "shards"

    @property
    def translated(self) -> Path:
        return self.data / "translated"

    @property
    def filtered(self) -> Path:
        return self.data / "filtered"

    @property
    def rejects(self) -> Path:
        return self.data / "rejects"

    def fault_marker(self, source: str, index: int) -> Path:
        """Written when an injected fault of shard `index` of `source` fires (config `faults`)."""
        return self.data / "faults" / f"{source}-{index}"

    @property
    def final(self) -> Path:
        return self.data / "final"

    @property
    def final_card(self) -> Path:
        """The dataset card (README.md) of the final dataset folder."""
        return self.final / DATASET_CARD

    @property
    def final_stats(self) -> Path:
        """The path-free summary of the final dataset (stats.json)."""
        return self.final / DATASET_STATS

    @property
    def report(self) -> Path:
        return self.data / "report.json"

    @property
    def paragraph_cache(self) -> Path:
        """Folder of the persistent paragraph cache (translate.cache.ParagraphCache)."""
        return self.data / "cache"

    @property
    def kept(self) -> Path:
        """Translations the filters kept."""
        return self.filtered / "kept.parquet"

    @property
    def filter_rejects(self) -> Path:
        return self.rejects / f"filter{REJECTS_SUFFIX}"

    @property
    def filter_report(self) -> Path:
        return self.data / "filter_report.json"

    @property
    def mix_rejects(self) -> Path:
        return self.rejects / f"mix{REJECTS_SUFFIX}"

    @property
    def models(self) -> Path:
        """Fine-tuned models, one folder per matrix cell."""
        return self.root / "models"

    def model_dir(self, model: str, method: str, data: str) -> Path:
        """``models/<model>-<method>-<data>/`` (DESIGN.md run layout)."""
        return self.models / model_folder(model, method, data)

    @property
    def eval(self) -> Path:
        """Evaluation outputs, one folder per fine-tuned model."""
        return self.root / "eval"

    def eval_dir(self, cell: str) -> Path:
        """``eval/<model>-<method>-<data>/`` (DESIGN.md run layout)."""
        return self.eval / cell

    def eval_output(self, cell: str, benchmark: str) -> Path:
        """``eval/<cell>/mmlu_en.json``, ``mmlu_ru.json`` or ``mt_bench/``."""
        return self.eval_dir(cell) / EVAL_OUTPUTS[benchmark]

    def eval_key(self, cell: str, benchmark: str) -> Path:
        return self.eval_dir(cell) / f"{benchmark}{EVAL_KEY_SUFFIX}"

    @property
    def results(self) -> Path:
        """The run's results table (results.json, results.csv, table.md, results.png)."""
        return self.root / "results"

    @property
    def results_json(self) -> Path:
        return self.results / RESULTS_JSON

    @property
    def results_csv(self) -> Path:
        return self.results / RESULTS_CSV

    @property
    def results_table(self) -> Path:
        return self.results / RESULTS_TABLE

    @property
    def results_plot(self) -> Path:
        return self.results / RESULTS_PLOT

    @property
    def prefect(self) -> Path:
        """Persisted task results and cache records (so two roots never share a cache)."""
        return self.root / ".prefect"

    @property
    def prefect_results(self) -> Path:
        return self.prefect / "results"

    @property
    def prefect_cache_keys(self) -> Path:
        return self.prefect / "cache-keys"

    def raw_file(self, source: str) -> Path:
        return self.raw / f"{safe_name(source)}.parquet"

    def raw_rejects(self, source: str) -> Path:
        return self.rejects / f"{safe_name(source)}{REJECTS_SUFFIX}"

    def shard_output(self, ref: dict[str, Any], translator_id: str) -> Path:
        """Where shard `ref` translated by `translator_id` is written (named by both)."""
        from .translate.shards import shard_output

        return shard_output(self.translated, ref, translator_id)

    def final_split(self, split: str) -> Path:
        """The parquet file of one split of the final dataset."""
        from .mix import split_file

        return split_file(self.final, split)
