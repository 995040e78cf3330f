"""Training stage: one fine-tuning run of a model on a dataset folder, into
``<models_dir>/<model>-<method>-<data>/`` (DESIGN.md). The CLI command and the Prefect task call
this; it resolves the model and delegates to :func:`ruinstruct.train.train_model`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..models import ModelSpec, resolve_model
from ..paths import safe_name
from ..train import TrainSettings, train_model


def run_dir(models_dir: str | Path, spec: ModelSpec, method: str, data_name: str) -> Path:
    """``models/<model>-<method>-<data>/``."""
    return Path(models_dir) / f"{safe_name(spec.name)}-{method}-{safe_name(data_name)}"


def train(
    model: str | ModelSpec,
    data_dir: str | Path,
    models_dir: str | Path,
    settings: TrainSettings,
    *,
    family: str | None = None,
    data_name: str | None = None,
) -> dict[str, Any]:
    """Fine-tune `model` (a registry name, a spec, or an HF id / folder with `family`) on the
    dataset folder `data_dir` (train/validation splits, as the data flow writes it). Returns the
    run's summary (train_summary.json in the output folder)."""
    data = Path(data_dir)
    if not data.is_dir():
        raise FileNotFoundError(f"dataset folder not found: {data}")
    spec = model if isinstance(model, ModelSpec) else resolve_model(model, family)
    name = data_name or settings.dataset_name or data.name
    if settings.dataset_name is None:
        settings = settings.model_copy(update={"dataset_name": name})
    return train_model(spec, data, run_dir(models_dir, spec, settings.method, name), settings)
