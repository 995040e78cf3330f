"""The whole DAG of one run config: data -> fine-tune matrix -> evaluation -> results. The data
flow first; the training flow on its output (when the config has `training:`); the evaluation
flow on the models it produced and the results table (when the config has `evaluation:`).

    ruinstruct run --config configs/tiny.yaml [--output DIR]
"""

from __future__ import annotations

from typing import Any

from prefect import flow
from prefect.states import Failed

from flows.data import data_flow
from flows.evaluate import evaluate_flow
from flows.train import train_flow
from ruinstruct.config import RunConfig, resolve_config
from ruinstruct.stages.evaluate import preflight as evaluation_preflight


@flow(name="ruinstruct-pipeline", log_prints=True, persist_result=False)
def pipeline_flow(
    config: RunConfig | str | None = None, output: str | None = None
) -> dict[str, Any]:
    """Run every stage of the config: data, fine-tuning, evaluation and the results table. A
    model whose training failed is left out of the evaluation; the others are still evaluated,
    and the run ends Failed naming what failed."""
    config = resolve_config(config, output)
    evaluation_preflight(config)  # a missing benchmark file fails now, not after the fine-tuning
    outputs: dict[str, Any] = {"data": data_flow(config=config)}
    if config.training is None:
        return outputs
    # the training matrix's `ruinstruct` dataset is the data flow's data/final, just written
    train = train_flow(config=config, return_state=True)
    errors = [] if train.is_completed() else [train.message or train.name]
    if not errors:
        outputs["train"] = train.result()
    if config.evaluation is not None:
        # the models the training flow produced: evaluate_flow plans from the finished folders
        evaluation = evaluate_flow(config=config, return_state=True)
        if evaluation.is_completed():
            outputs["evaluate"] = evaluation.result()
        else:
            errors.append(evaluation.message or evaluation.name)
    if errors:
        return Failed(message="; ".join(errors))
    return outputs
