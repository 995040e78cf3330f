"""Prefect task of the training flow: one matrix cell, trained in its own process
(ruinstruct.stages.train.run_job). Here: the cache policy, persisted results, the log stream into
the run logger, and the artifacts. The task passes paths and small models, never a model."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prefect import get_run_logger, task
from prefect.artifacts import create_link_artifact, create_table_artifact

from ruinstruct.stages import train as stages
from tasks.data import job_cache_policy, shard_result_storage


@task(
    name="train",
    persist_result=True,
    result_serializer="json",
    tags=["training"],
    task_run_name="train-{job.name}",
)
def train_cell(job: stages.TrainJob) -> dict[str, Any]:
    """Fine-tune one model x method x data cell; its output streams into this task's log."""
    logger = get_run_logger()
    summary = stages.run_job(job, logger.info)
    create_table_artifact(
        key=stages.artifact_key(job.name),
        table=stages.summary_rows(summary),
        description=f"Fine-tuning {job.name}: {summary.get('output')}",
    )
    out = Path(summary.get("output") or job.request.out_dir)
    create_link_artifact(link=out.as_uri(), link_text=f"{job.name}: {out}", description=f"Output folder of {job.name}")
    return summary


def train_task_for(root: str):
    """The task with its cache policy and result storage under the run root (so a worker with
    another PREFECT_HOME still finds the records)."""
    return train_cell.with_options(cache_policy=job_cache_policy(root), result_storage=shard_result_storage(root))
