"""The training flow: one fine-tuning task per cell of the config's matrix (model x method x data,
PAPER.md Table 1), each in its own process, into <root>/models/<model>-<method>-<data>/.

    ruinstruct run --config configs/tiny.yaml     # data, then this flow on its output

Only wiring: the stage is ruinstruct.stages.train, the task tasks/train.py.
"""

from __future__ import annotations

from typing import Any

from prefect import flow, get_run_logger
from prefect.states import Failed

from ruinstruct.config import RunConfig, resolve_config
from ruinstruct.stages import train as stages
from tasks.train import train_task_for


@flow(name="ruinstruct-train", log_prints=True, persist_result=False)
def train_flow(
    config: RunConfig | str | None = None, output: str | None = None
) -> dict[str, Any]:
    """Fine-tune every cell of the config's training matrix; a failed cell fails alone."""
    config = resolve_config(config, output)
    logger = get_run_logger()
    jobs, failed = stages.plan_jobs(config)
    for f in failed:
        logger.error("%s cannot start: %s", f["cell"], f["error"])
    total = len(jobs) + len(failed)
    task = train_task_for(str(config.root_path))
    models: dict[str, dict[str, Any]] = {}
    # One cell after another, called (not submitted): a run takes the whole GPU (or every
    # process of num_processes), so two must never train at once. return_state keeps a failed
    # cell from failing the loop; the cells after it still train.
    for job in jobs:
        state = task.with_options(refresh_cache=job.refresh)(job, return_state=True)
        if state.is_completed():
            summary = state.result()
            models[job.name] = {"output": summary.get("output") or job.request.out_dir,
                                "cached": state.name == "Cached", "steps": summary.get("steps")}
            logger.info("%s: %s%s", job.name, models[job.name]["output"], " (cached)" if models[job.name]["cached"] else "")
        else:
            failed.append({"cell": job.name, "error": state.message or state.name})
    if failed:
        names = ", ".join(f["cell"] for f in failed)
        logger.error("%d of %d training runs failed: %s", len(failed), total, names)
        return Failed(message=f"{len(failed)} of {total} training runs failed: {names}")
    return {"models": models}


if __name__ == "__main__":
    import sys

    train_flow(config=sys.argv[1] if len(sys.argv) > 1 else "configs/tiny.yaml")
