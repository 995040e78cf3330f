"""Prefect tasks of the evaluation flow: one benchmark on one fine-tuned model
(ruinstruct.stages.evaluate.run_eval), and the results table (ruinstruct.reports). Here: the cache
policy, persisted results, the judge's key from a Prefect Secret, retries for the API judge's
network errors only, the log stream, and the `results-table` artifacts."""

from __future__ import annotations

from typing import Any

from prefect import get_run_logger, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact

from ruinstruct import reports
from ruinstruct.stages import evaluate as stages
from tasks.data import _transient, job_cache_policy, shard_result_storage

RESULTS_ARTIFACT = "results-table"
RESULTS_MARKDOWN_ARTIFACT = "results-markdown"
#: the API judge's retries on network trouble (its 429/5xx backoff per request is the judge's own)
API_RETRIES, API_RETRY_DELAYS = 2, [30, 120]


def uses_api(job: stages.EvalJob) -> bool:
    return job.benchmark == "mt_bench" and str(job.settings.get("judge", "")).startswith("api:")


def judge_api_key(job: stages.EvalJob) -> str | None:
    """The API judge's key: the Prefect Secret block the config names, else its environment
    variable. Returned to the judge only: never a parameter, a log line or a result."""
    if not uses_api(job):
        return None
    block = job.settings.get("api_key_secret")
    if block:
        from prefect.blocks.system import Secret

        return Secret.load(block).get()
    return stages.api_key_from_env(job.settings)


@task(
    name="evaluate",
    persist_result=True,
    result_serializer="json",
    tags=["evaluation"],
    task_run_name="eval-{job.cell}-{job.benchmark}",
)
def evaluate_model(job: stages.EvalJob) -> dict[str, Any]:
    """One benchmark on one fine-tuned model; progress streams into this task's log."""
    return stages.run_eval(job, judge_api_key(job), get_run_logger().info)


def evaluate_task_for(root: str, job: stages.EvalJob):
    """The task for `job`: its cache policy and result storage under the run root, and retries
    on network errors for the API judge only (a model that fails to load would fail again)."""
    options: dict[str, Any] = {"cache_policy": job_cache_policy(root), "result_storage": shard_result_storage(root),
                               "refresh_cache": job.refresh}
    if uses_api(job):
        options |= {"retries": API_RETRIES, "retry_delay_seconds": API_RETRY_DELAYS, "retry_condition_fn": _transient}
    return evaluate_model.with_options(**options)


@task(name="results-table")
def publish_results(
    root: str,
    jobs: list[stages.EvalJob],
    results: list[dict[str, Any]],
    failed: list[dict[str, str]],
    not_trained: list[dict[str, str]],
) -> dict[str, Any]:
    """results/ (json, csv, table.md, png) and the `results-table` artifacts: Table 1's columns,
    the paper's figures beside the measured ones."""
    rows = reports.result_rows(stages.collect(jobs, results, failed))
    files = reports.write_results(root, rows, {"failed": failed, "not_trained": not_trained})
    markdown = reports.table_markdown(rows)
    create_table_artifact(key=RESULTS_ARTIFACT, table=reports.artifact_rows(rows),
                          description="Table 1 of this run: MT-Bench RU, MMLU, MMLU RU per fine-tuned model, "
                          "the paper's figures beside")
    create_markdown_artifact(key=RESULTS_MARKDOWN_ARTIFACT, markdown=markdown, description="Table 1 of this run")
    return {"files": files, "rows": rows, "table": markdown}
