"""The whole DAG of one run config. Today: the data flow; training and evaluation flows join
here as they land (flows/train.py, flows/evaluate.py), each a subflow fed by the previous one's
output paths.

    ruinstruct run --config configs/tiny.yaml [--output DIR]
"""

from __future__ import annotations

from typing import Any

from prefect import flow

from flows.data import data_flow
from ruinstruct.config import RunConfig, resolve_config


@flow(name="ruinstruct-pipeline", log_prints=True, persist_result=False)
def pipeline_flow(
    config: RunConfig | None = None, config_file: str | None = None, output: str | None = None
) -> dict[str, Any]:
    """Run every stage of the config: data (later: train, evaluate, results)."""
    config = resolve_config(config, config_file, output)
    return {"data": data_flow(config=config)}
