"""The evaluation flow: every benchmark of the config's `evaluation:` section on every model the
training flow produced (models/<model>-<method>-<data>/), into eval/<cell>/, then the results
table (results/ and the `results-table` artifact, PAPER.md Table 1 with the paper's figures).

    ruinstruct run --config configs/tiny.yaml     # data, training, then this flow

Only wiring: the stage is ruinstruct.stages.evaluate, the tasks tasks/evaluate.py.
"""

from __future__ import annotations

from typing import Any

from prefect import flow, get_run_logger
from prefect.states import Failed

from ruinstruct.config import RunConfig, resolve_config
from ruinstruct.stages import evaluate as stages
from tasks.evaluate import evaluate_task_for, publish_results


@flow(name="ruinstruct-evaluate", log_prints=True, persist_result=False)
def evaluate_flow(
    config: RunConfig | str | None = None,
    output: str | None = None,
    models: list[str] | None = None,
) -> dict[str, Any]:
    """Evaluate the trained models of the matrix (`models`: these <model>-<method>-<data> cells
    only); an evaluation that fails fails alone, and the flow names it after the table is out."""
    config = resolve_config(config, output)
    logger = get_run_logger()
    if config.evaluation is None:
        logger.info("no `evaluation:` section: nothing to evaluate")
        return {}
    stages.preflight(config)
    root = str(config.root_path)
    jobs, not_trained = stages.plan_eval(config, models)
    for m in not_trained:
        logger.warning("%s is not evaluated: %s", m["cell"], m["error"])
    results: list[dict[str, Any]] = []
    failed: list[dict[str, str]] = []
    evaluations: dict[str, dict[str, Any]] = {}
    # Windows of max_parallel: each evaluation loads its model, so on one GPU they take turns.
    width = config.evaluation.max_parallel
    for start in range(0, len(jobs), width):
        window = jobs[start:start + width]
        futures = [evaluate_task_for(root, job).submit(job) for job in window]
        for job, fut in zip(window, futures, strict=True):
            fut.wait()
            state = fut.state
            if state.is_completed():
                results.append(fut.result())
                evaluations[job.name] = {"output": job.output, "cached": state.name == "Cached"}
            else:
                failed.append({"cell": job.cell, "benchmark": job.benchmark, "error": state.message or state.name})
                logger.error("%s failed: %s", job.name, state.message)
    table = publish_results(root, jobs, results, failed, not_trained)
    logger.info("results: %s\n%s", table["files"]["table"], table["table"])
    if failed:
        names = ", ".join(f"{f['cell']} {f['benchmark']}" for f in failed)
        return Failed(message=f"{len(failed)} of {len(jobs)} evaluations failed: {names}")
    return {"evaluations": evaluations, "files": table["files"], "table": table["table"],
            "not_trained": [m["cell"] for m in not_trained]}


if __name__ == "__main__":
    import sys

    evaluate_flow(config=sys.argv[1] if len(sys.argv) > 1 else "configs/tiny.yaml")
