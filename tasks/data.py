"""Prefect tasks of the data flow. Logic lives in ruinstruct.stages.data; here: retries, caching,
tags, logging and artifacts. Tasks exchange paths and small dicts, never datasets."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from prefect import get_run_logger, task
from prefect.artifacts import create_markdown_artifact, create_progress_artifact, update_progress_artifact
from prefect.cache_policies import CachePolicy
from prefect.filesystems import LocalFileSystem
from prefect.futures import as_completed
from prefect.task_runners import TaskRunner

from ruinstruct.config import RunConfig, RunnerConfig, SourceConfig, TranslationConfig
from ruinstruct.data_report import build_report, report_markdown
from ruinstruct.errors import UserError
from ruinstruct.filters.report import filter_report_markdown
from ruinstruct.io import write_json
from ruinstruct.paths import RunPaths
from ruinstruct.stages import data as stages
from ruinstruct.translate.shards import plan_shards


def _transient(task, task_run, state) -> bool:
    """Retry downloads on network trouble only (ruinstruct.errors.is_retryable): offline mode, a
    repository that is not there, authentication, a missing file or a bad value fail at once."""
    from ruinstruct.errors import is_retryable

    try:
        exc = state.result(raise_on_failure=False)
    except Exception:  # noqa: BLE001 - no readable exception: nothing says a retry would help
        return False
    return isinstance(exc, BaseException) and is_retryable(exc)


def _not_a_user_error(task, task_run, state) -> bool:
    """A shard retries once on anything that may pass the second time (a device error, memory),
    but not on an error that names bad input or a missing file: that would fail again."""
    from ruinstruct.errors import describe

    try:
        exc = state.result(raise_on_failure=False)
    except Exception:  # noqa: BLE001
        return True
    return not (isinstance(exc, Exception) and describe(exc) is not None)


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
    result = stages.load_source(source, RunPaths(Path(root)), src_lang)
    for w in result.get("warnings", []):
        get_run_logger().warning(w)
    return result


@task(name="plan-shards", task_run_name="plan-{source}")
def make_shards(source: str, raw_file: str, shard_size: int, shards_dir: str, lang: str) -> list[dict[str, Any]]:
    """Cut a source's dialogs in `lang` into content-addressed shards."""
    return plan_shards(source, raw_file, shard_size, shards_dir, lang)


def shard_cache_key(context, parameters: dict[str, Any]) -> str | None:
    """stages.data.shard_key of the task's parameters. (Prefect computes the key before the task
    runs, so it must not depend on the output existing; a shard whose output file has gone is
    submitted with refresh_cache instead, see stages.data.shard_jobs.)"""
    return stages.shard_key(parameters["ref"]["hash"], parameters["translator_id"], parameters["out_path"])


def cache_policy(key_fn, root: str) -> CachePolicy:
    """A cache policy from `key_fn`, its records under the run root (beside the results)."""
    return CachePolicy.from_cache_key_fn(key_fn).configure(key_storage=str(RunPaths(Path(root)).prefect_cache_keys))


def shard_cache_policy(root: str) -> CachePolicy:
    return cache_policy(shard_cache_key, root)


def job_cache_key(context, parameters: dict[str, Any]) -> str:
    """The key a stage computed for its job (`parameters["job"].key`: a training cell, an
    evaluation). Prefect computes it before the task runs; a job whose output is gone is
    submitted with refresh_cache (the job's `refresh`)."""
    return parameters["job"].key


def job_cache_policy(root: str) -> CachePolicy:
    return cache_policy(job_cache_key, root)


def shard_result_storage(root: str) -> LocalFileSystem:
    """Persisted shard results beside their cache records, under the run root: a worker with
    another PREFECT_HOME (or a cleaned one) still finds them. Prefect wants the block saved; its
    name is derived from the root, so the same root always maps to the same block."""
    path = RunPaths(Path(root)).prefect_results
    fs = LocalFileSystem(basepath=str(path))
    fs.save("ruinstruct-results-" + hashlib.sha256(str(path).encode()).hexdigest()[:16], overwrite=True)
    return fs


@task(
    name="translate-shard",
    retries=1,
    retry_delay_seconds=2,
    retry_condition_fn=_not_a_user_error,
    persist_result=True,
    result_serializer="json",
    tags=["translation"],
    task_run_name="translate-{ref[source]}-{ref[index]}",
)
def translate_shard(
    ref: dict[str, Any], translation: TranslationConfig, translator_id: str, out_path: str, cache_path: str,
    fault: str | None = None,
) -> dict[str, Any]:
    """Translate one shard (cached on its content + translator; see shard_cache_key)."""
    return stages.translate_shard(ref, out_path, translation, cache_path, translator_id, fault)


def _ephemeral_api_url() -> str | None:
    """The URL of the temporary server this process started (no PREFECT_API_URL: `ruinstruct
    data` without a server), which Prefect keeps out of the settings."""
    from prefect.server.api.server import SubprocessASGIServer

    server = SubprocessASGIServer()  # the process-wide instance get_client() started
    return server.api_url if getattr(server, "running", False) else None


def _local_cluster_class() -> str:
    """One GPU per Dask worker: on a machine with several GPUs, dask-cuda's LocalCUDACluster
    gives each worker process its own CUDA_VISIBLE_DEVICES (the translator then runs on its
    cuda:0); without it every worker would load the translator onto the first GPU."""
    import importlib.util
    import sys

    gpus = 0
    if "torch" in sys.modules or importlib.util.find_spec("torch") is not None:
        import torch

        gpus = torch.cuda.device_count()
    if gpus > 1:
        if importlib.util.find_spec("dask_cuda") is not None:
            return "dask_cuda.LocalCUDACluster"
        get_run_logger().warning(
            "%d GPUs but dask-cuda is not installed: every Dask worker uses the first GPU "
            "(pip install dask-cuda, or start one `dask worker` per GPU and set runner.address)", gpus
        )
    return "distributed.LocalCluster"


@contextmanager
def shard_runner(runner: RunnerConfig, shards: int) -> Iterator[TaskRunner | None]:
    """The task runner the translation shards go to: None (the flow's own threads) or a started
    DaskTaskRunner on the cluster at `runner.address`, or on a LocalCluster of `n_workers`
    processes that lives as long as the block. No cluster is started for no shard."""
    if runner.kind != "dask" or shards == 0:
        yield None
        return
    from prefect.settings import PREFECT_API_URL
    from prefect_dask import DaskTaskRunner

    # Dask workers report their task runs to this flow run's API; a worker without
    # PREFECT_API_URL would start a temporary server of its own. LocalCluster's worker processes
    # inherit this environment; a remote cluster's workers must have it set (README).
    api = PREFECT_API_URL.value() or _ephemeral_api_url()
    saved = os.environ.get("PREFECT_API_URL")
    if api and runner.address is None:
        os.environ["PREFECT_API_URL"] = api
    if runner.address is not None:
        dask = DaskTaskRunner(address=runner.address)
    else:
        dask = DaskTaskRunner(cluster_class=_local_cluster_class(), cluster_kwargs={
            "n_workers": runner.n_workers, "threads_per_worker": runner.threads_per_worker, "dashboard_address": None,
        })
    where = runner.address or f"LocalCluster({runner.n_workers} workers)"
    try:
        dask.__enter__()
        try:
            try:
                dask.client  # noqa: B018 - connects (or starts the LocalCluster) now, not at the first shard
            except (OSError, TimeoutError) as e:  # no scheduler at the address, or it did not answer
                raise UserError(f"runner.address: no Dask cluster reached at {where}: {e}") from None
            get_run_logger().info("translation shards on Dask: %s", where)
            yield dask
        finally:
            dask.__exit__(None, None, None)
    finally:
        if saved is None:
            os.environ.pop("PREFECT_API_URL", None)
        else:
            os.environ["PREFECT_API_URL"] = saved


def translate_shards(
    run: stages.DataRun, jobs: list[stages.ShardJob], runner: TaskRunner | None = None
) -> tuple[list[dict], list[dict]]:
    """Submit every shard job (to `runner`, else the flow's task runner), follow them to their
    final states with a progress artifact and bar; returns (finished shard stats with "cached",
    failed shards). Not a task: it submits."""
    from tqdm import tqdm

    progress_id = create_progress_artifact(
        progress=0.0, key="translation-progress", description=f"{len(jobs)} shards, {run.translator_id}"
    )
    shard_task = translate_shard.with_options(
        cache_policy=shard_cache_policy(run.root), result_storage=shard_result_storage(run.root)
    )

    def submit(job: stages.ShardJob):
        task = shard_task.with_options(refresh_cache=job.refresh)
        params = {"ref": job.ref, "translation": run.translation, "translator_id": run.translator_id,
                  "out_path": job.out, "cache_path": run.cache_dir, "fault": job.fault}
        return runner.submit(task, parameters=params) if runner is not None else task.submit(**params)

    futures = [submit(job) for job in jobs]
    by_future = {id(f): job.ref for f, job in zip(futures, jobs, strict=True)}
    done: list[dict[str, Any]] = []
    failed: list[dict[str, Any]] = []
    bar = tqdm(total=len(futures), desc="translate", unit="shard", disable=None)  # the CLI's progress bar
    for i, fut in enumerate(as_completed(futures), 1):
        fut.wait()  # sets the future's final state; .state alone may still read a stale one
        state = fut.state
        ref = by_future[id(fut)]
        if state.is_completed():
            done.append({**fut.result(), "cached": state.name == "Cached"})
        else:
            failed.append({"source": ref["source"], "index": ref["index"], "shard": ref["hash"], "error": state.message})
        update_progress_artifact(progress_id, progress=100.0 * i / max(len(futures), 1))
        bar.update(1)
    bar.close()
    if not futures:
        update_progress_artifact(progress_id, progress=100.0)
    done.sort(key=lambda s: (s["source"], s["index"]))
    return done, failed


@task(name="filter-translations")
def filter_translations(config: RunConfig, translated: list[str], originals: list[str]) -> dict[str, Any]:
    """Run the corruption filters; publish the filter-report artifact."""
    summary = stages.filter_run(config, translated, originals)
    create_markdown_artifact(
        key="filter-report", markdown=filter_report_markdown(summary), description="Corruption filters"
    )
    return summary


@task(name="mix-dataset")
def mix_dataset(config: RunConfig, kept_ru: str | None, translator_id: str | None = None) -> dict[str, Any]:
    """Originals + kept translations -> deduplicated, shuffled, split dataset with its card."""
    return stages.mix_run(config, RunPaths(config.root_path), kept_ru, translator_id)


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
    """Counts at every stage per source; checked to add up; data-report artifact; warnings logged."""
    report = build_report(loads, shards, filtered, mixed, failed, include_originals=include_originals)
    write_json(RunPaths(Path(root)).report, report)
    create_markdown_artifact(key="data-report", markdown=report_markdown(report), description="Counts per stage and source")
    for w in report.get("warnings") or []:
        get_run_logger().warning(w)
    return report
