"""The whole DAG of one run config: the data flow, then the training flow on its output (when
the config has a `training:` section); evaluation joins here as it lands (flows/evaluate.py).

    ruinstruct run --config configs/tiny.yaml [--output DIR]
"""

from __future__ import annotations

from typing import Any

from prefect import flow
from prefect.states import Failed

from flows.data import data_flow
from flows.train import train_flow
from ruinstruct.config import RunConfig, resolve_config


@flow(name="ruinstruct-pipeline", log_prints=True, persist_result=False)
def pipeline_flow(
    config: RunConfig | None = None, config_file: str | None = None, output: str | None = None
) -> dict[str, Any]:
    """Run every stage of the config: data, then fine-tuning (later: evaluate, results)."""
    config = resolve_config(config, config_file, output)
    outputs: dict[str, Any] = {"data": data_flow(config=config)}
    if config.training is None:
        return outputs
    # the training matrix's `ruinstruct` dataset is the data flow's data/final, just written
    state = train_flow(config=config, return_state=True)
    if not state.is_completed():
        return Failed(message=state.message)
    outputs["train"] = state.result()
    return outputs
