"""Prefect tasks of the data flow. Logic lives in ruinstruct.pipeline; here: retries, caching,
tags and artifacts. Tasks exchange paths and small dicts, never datasets."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from prefect import task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import CachePolicy
from prefect.filesystems import LocalFileSystem

from ruinstruct import __version__, pipeline
from ruinstruct.config import FilterConfig, RunConfig, SourceConfig, TranslationConfig
from ruinstruct.data_report import build_report, report_markdown
from ruinstruct.filters.report import filter_report_markdown
from ruinstruct.io import write_json
from ruinstruct.paths import RunPaths
from ruinstruct.schema import content_hash
from ruinstruct.translate.shards import plan_shards


def _transient(task, task_run, state) -> bool:
    """Retry downloads on network trouble, not on a missing local file or a bad config."""
    try:
        exc = state.result(raise_on_failure=False)
    except Exception:  # noqa: BLE001 - no readable exception: be conservative, retry
        return True
    return not isinstance(exc, (FileNotFoundError, IsADirectoryError, ValueError, KeyError, TypeError))


@task(
    name="load-source",
    retries=3,
    retry_delay_seconds=[10, 30, 90],
    retry_condition_fn=_transient,
    tags=["download"],
    task_run_name="load-{source.name}",
)
def load_source(source: SourceConfig, root: str, src_lang: str) -> dict[str, Any]:
    """Download one source (or read its local files), validate, write raw parquet and rejects."""
    return pipeline.load_to_raw(source, RunPaths(Path(root)), src_lang)


@task(name="plan-shards", task_run_name="plan-{source}")
def make_shards(source: str, raw_file: str, shard_size: int, shards_dir: str, lang: str) -> list[dict[str, Any]]:
    """Cut a source's dialogs in `lang` into content-addressed shards."""
    return plan_shards(source, raw_file, shard_size, shards_dir, lang)


def _code_version() -> str:
    """Hash of the translation code: a fix in segmentation, the engine or reassembly must not
    bring back shards translated by the old code as Cached."""
    import ruinstruct.translate as tr

    h = hashlib.sha256(__version__.encode())
    for f in sorted(Path(tr.__file__).parent.glob("*.py")):
        h.update(f.name.encode() + f.read_bytes())
    return h.hexdigest()[:16]


CODE_VERSION = _code_version()


def shard_cache_key(context, parameters: dict[str, Any]) -> str | None:
    """Shard content hash + translator id (model, revision, generation settings) + code version.

    The output path is part of the key so two run roots never share a cached result. (Prefect
    computes the key before the task runs, so it must not depend on the output existing; a
    shard whose output file has gone is submitted with refresh_cache instead, see flows/data.py.)"""
    return "translate-" + content_hash(
        {
            "shard": parameters["ref"]["hash"],
            "translator": parameters["translator_id"],
            "out": parameters["out_path"],
            "code": CODE_VERSION,
        }
    )


def shard_cache_policy(root: str) -> CachePolicy:
    return CachePolicy.from_cache_key_fn(shard_cache_key).configure(
        key_storage=str(RunPaths(Path(root)).prefect / "cache-keys")
    )


def shard_result_storage(root: str) -> LocalFileSystem:
    """Persisted shard results beside their cache records, under the run root: a worker with
    another PREFECT_HOME (or a cleaned one) still finds them. Prefect wants the block saved; its
    name is derived from the root, so the same root always maps to the same block."""
    path = RunPaths(Path(root)).prefect / "results"
    fs = LocalFileSystem(basepath=str(path))
    fs.save("ruinstruct-results-" + hashlib.sha256(str(path).encode()).hexdigest()[:16], overwrite=True)
    return fs


@task(
    name="translate-shard",
    retries=1,
    retry_delay_seconds=2,
    persist_result=True,
    result_serializer="json",
    tags=["translation"],
    task_run_name="translate-{ref[source]}-{ref[index]}",
)
def translate_shard(
    ref: dict[str, Any], translation: TranslationConfig, translator_id: str, out_path: str, cache_path: str
) -> dict[str, Any]:
    """Translate one shard (cached on its content + translator; see shard_cache_key)."""
    return pipeline.translate_shard_file(ref, out_path, translation, cache_path, translator_id)


@task(name="filter-translations")
def filter_translations(
    translated: list[str], originals: list[str], filters: FilterConfig, root: str
) -> dict[str, Any]:
    """Run the corruption filters; publish the filter-report artifact."""
    paths = RunPaths(Path(root))
    summary = pipeline.filter_files(
        translated,
        originals,
        filters,
        paths.filtered / "kept.parquet",
        paths.rejects / "filter.rejects.jsonl",
        paths.data / "filter_report.json",
    )
    create_markdown_artifact(
        key="filter-report", markdown=filter_report_markdown(summary), description="Corruption filters"
    )
    return summary


@task(name="mix-dataset")
def mix_dataset(config: RunConfig, kept_ru: str | None) -> dict[str, Any]:
    """Originals + kept translations -> deduplicated, shuffled, split dataset with its card."""
    return pipeline.mix_run(config, RunPaths(config.root_path), kept_ru)


@task(name="data-report")
def data_report(
    root: str,
    loads: list[dict[str, Any]],
    shards: list[dict[str, Any]],
    filtered: dict[str, Any] | None,
    mixed: dict[str, Any] | None,
    failed: list[dict[str, Any]],
    include_originals: bool = True,
) -> dict[str, Any]:
    """Counts at every stage per source; checked to add up; data-report artifact."""
    report = build_report(loads, shards, filtered, mixed, failed, include_originals=include_originals)
    write_json(RunPaths(Path(root)).report, report)
    create_markdown_artifact(key="data-report", markdown=report_markdown(report), description="Counts per stage and source")
    return report
