"""Training stage: the experiment matrix of a run config, planned into jobs, each run as its own
process (ruinstruct.train.launch), and the in-process `train` the unit tests use.

- `plan_jobs(config)`: one `TrainJob` per matrix cell (model x method x data): the
  `TrainRequest` the training process reads, its cache key, and whether a cached result must be
  recomputed (`refresh`: its output folder holds no finished run of this key).
- `train_key(...)`: what a finished run depends on: the dataset's content, the model (a local
  folder by its content, a hub id with its revision), the method and every setting (the
  DeepSpeed JSON by its content), the process count, the training code's version, and the output
  folder (two run roots never share a cached result).
- `run_job(job, on_line)`: train one cell into ``<root>/models/<model>-<method>-<data>/``;
  `run_request(req, on_line)`: the same without the cache bookkeeping (the CLI's `train`).
  Both start `launch_command` as a subprocess and hand every output line to `on_line`.

The CLI command and the Prefect task (tasks/train.py) both call these; nothing here imports
Prefect.
"""

from __future__ import annotations

import functools
import hashlib
import os
import shutil
import subprocess
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict

from ..config import OWN_DATASET, RunConfig, TrainModelEntry, _model_identity
from ..errors import UserError, describe
from ..io import read_json, write_json
from ..models import ModelSpec, resolve_model
from ..paths import DATASET_CARD, DATASET_STATS, TRAIN_KEY, TRAIN_SUMMARY, RunPaths, model_folder
from ..schema import content_hash
from ..signals import stop_tree
from ..train import TrainSettings, train_model
from ..train.launch import TrainRequest, check_request, launch_command, write_request

PathLike = str | Path
LineSink = Callable[[str], None]

REPO = Path(__file__).resolve().parents[3]
#: full fine-tuning's DeepSpeed config when `training.deepspeed` is unset
DEFAULT_DEEPSPEED = REPO / "configs" / "deepspeed" / "zero3.json"
#: lines of a failed training process's output kept for its error message
TAIL_LINES = 20


# ---- in process ----------------------------------------------------------------------------------


def run_dir(models_dir: str | Path, spec: ModelSpec, method: str, data_name: str) -> Path:
    """``models/<model>-<method>-<data>/``."""
    return Path(models_dir) / model_folder(spec.name, method, data_name)


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
    dataset folder `data_dir` (train/validation splits, as the data flow writes it), in this
    process. Returns the run's summary (train_summary.json in the output folder)."""
    data = Path(data_dir)
    if not data.is_dir():
        raise FileNotFoundError(f"dataset folder not found: {data}")
    spec = model if isinstance(model, ModelSpec) else resolve_model(model, family)
    name = data_name or settings.dataset_name or data.name
    if settings.dataset_name is None:
        settings = settings.model_copy(update={"dataset_name": name})
    return train_model(spec, data, run_dir(models_dir, spec, settings.method, name), settings)


# ---- cache key -----------------------------------------------------------------------------------


def dataset_fingerprint(folder: PathLike) -> str:
    """Content hash of a dataset folder's data files (names and bytes). The card and the stats
    summary are left out: rewording the card does not change what a model trains on."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"dataset folder not found: {folder}")
    h = hashlib.sha256()
    for f in sorted(folder.rglob("*")):
        rel = f.relative_to(folder)
        if not f.is_file() or any(p.startswith(".") for p in rel.parts):
            continue
        if rel.as_posix() in (DATASET_CARD, DATASET_STATS):
            continue
        fh = hashlib.sha256()
        with open(f, "rb") as stream:
            for block in iter(lambda: stream.read(1 << 20), b""):
                fh.update(block)
        h.update(rel.as_posix().encode() + b"\0" + fh.digest())
    return h.hexdigest()


@functools.cache
def train_code_version() -> str:
    """Hash of the code a trained model depends on: ruinstruct/train/*.py, chat.py (the
    templates and masks) and models.py (targets, loading)."""
    import ruinstruct
    import ruinstruct.train as train_pkg

    from .data import code_version_of

    pkg = Path(ruinstruct.__file__).parent
    return code_version_of((Path(train_pkg.__file__).parent, "*.py"), (pkg, "chat.py"), (pkg, "models.py"))


def model_identity(spec: ModelSpec) -> dict[str, Any]:
    """The spec with its weights named by what they are: a local folder by its content (a
    rebuilt tiny model is a new model at the same path), a hub id by itself and its revision."""
    return {**spec.model_dump(mode="json", exclude={"name"}), "hf_id": _model_identity(spec.hf_id)}


def _file_identity(path: str | None) -> str | None:
    if path is None:
        return None
    p = Path(path)
    return hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else f"missing:{path}"


def train_key(req: TrainRequest, data_fingerprint: str, code: str | None = None) -> str:
    """The cache key of a training run (see the module docstring)."""
    settings = req.settings.model_dump(mode="json")
    settings["deepspeed"] = _file_identity(req.settings.deepspeed)  # its content, not where it lies
    return "train-" + content_hash({
        "data": data_fingerprint, "data_name": req.data_name, "model": model_identity(req.model),
        "method": req.settings.method, "settings": settings, "num_processes": req.num_processes,
        "code": code or train_code_version(), "out": req.out_dir,
    })


# ---- planning ------------------------------------------------------------------------------------


class TrainJob(BaseModel):
    """One matrix cell to train: what the training process reads, its cache key, and whether a
    cached result must be recomputed (its output folder holds no finished run of this key:
    never trained, deleted by hand, or overwritten by a run of other inputs)."""

    model_config = ConfigDict(frozen=True)

    name: str  # <model>-<method>-<data>
    request: TrainRequest
    key: str
    refresh: bool


def cell_name(model: str, method: str, data: str) -> str:
    return f"{model}-{method}-{data}"


def artifact_key(name: str) -> str:
    """The Prefect artifact key of a cell: lowercase, dashes only (rugpt3.5-13b -> rugpt3-5-13b)."""
    import re

    return "train-" + re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")


def resolve_entry(entry: TrainModelEntry, index: int) -> ModelSpec:
    """A `training.models` entry as a spec; a local folder that is not there names the field."""
    if entry.hf_id.startswith("/") and not Path(entry.hf_id).is_dir():
        raise FileNotFoundError(f"training.models[{index}].hf_id: no such model folder: {entry.hf_id}")
    return resolve_model(entry.hf_id, entry.family, name=entry.name, revision=entry.revision,
                         context_length=entry.context_length, lora_targets=entry.lora_targets)


def resolve_spec(config: RunConfig, name: str) -> ModelSpec:
    """A model of the matrix: a `training.models` entry, else the registry's."""
    assert config.training is not None
    for i, entry in enumerate(config.training.models):
        if entry.name == name:
            return resolve_entry(entry, i)
    return resolve_model(name)


def dataset_dir(config: RunConfig, name: str) -> Path:
    """The folder of a matrix dataset: this run's data/final for `ruinstruct`."""
    assert config.training is not None
    if name == OWN_DATASET:
        return RunPaths(config.root_path).final
    return Path(config.training.datasets[name])


def deepspeed_for(config: RunConfig | None, method: str) -> str | None:
    """Full fine-tuning's DeepSpeed JSON: the config's `training.deepspeed`, else (also without a
    config or a training section) the repository's ZeRO-3 file; none for LoRA (its int8 base is
    not partitioned) or with `deepspeed: false`."""
    ds = config.training.deepspeed if config is not None and config.training is not None else None
    if method != "full" or ds is False:
        return None
    return str(ds or DEFAULT_DEEPSPEED)


def finished_run(out_dir: PathLike, key: str) -> dict[str, Any] | None:
    """The summary of a run of `key` that finished in `out_dir`, or None."""
    record, summary = Path(out_dir) / TRAIN_KEY, Path(out_dir) / TRAIN_SUMMARY
    if not (record.is_file() and summary.is_file()):
        return None
    rec = read_json(record)
    return read_json(summary) if rec.get("key") == key and rec.get("finished") else None


def plan_cell(config: RunConfig, index: int, model: str, method: str, data: str) -> TrainJob:
    assert config.training is not None
    entry = config.training.runs[index]
    spec = resolve_spec(config, model)
    folder = dataset_dir(config, data)
    if not folder.is_dir():
        where = "the data flow's output" if data == OWN_DATASET else f"training.datasets.{data}"
        raise FileNotFoundError(f"{where}: dataset folder not found: {folder}")
    settings = config.training.settings_for(method, entry).model_copy(
        update={"deepspeed": deepspeed_for(config, method), "dataset_name": data})
    out = RunPaths(config.root_path).model_dir(spec.name, method, data)
    req = TrainRequest(model=spec, data_dir=str(folder.resolve()), out_dir=str(out.resolve()), data_name=data,
                       settings=settings, num_processes=entry.num_processes or config.training.num_processes)
    key = train_key(req, dataset_fingerprint(folder))
    return TrainJob(name=cell_name(model, method, data), request=req, key=key,
                    refresh=finished_run(out, key) is None)


def plan_jobs(config: RunConfig) -> tuple[list[TrainJob], list[dict[str, str]]]:
    """The jobs of the config's matrix, in the order written, and the cells that cannot start
    ({"cell", "error"}: a dataset folder or a local model that is not there, a hub model whose
    config.json cannot be read). A bug raises."""
    if config.training is None:
        return [], []
    jobs, failed = [], []
    for index, model, method, data in config.training.cells():
        try:
            jobs.append(plan_cell(config, index, model, method, data))
        except Exception as e:
            message = describe(e)
            if message is None:
                raise
            failed.append({"cell": cell_name(model, method, data), "error": message})
    return jobs, failed


# ---- running -------------------------------------------------------------------------------------


class TrainProcessError(UserError):
    """The training process exited non-zero. Exit 2 is an expected error, which the process
    printed as its last line; anything else comes with the last lines of its output."""

    def __init__(self, name: str, returncode: int, tail: list[str]) -> None:
        self.name, self.returncode, self.tail = name, returncode, tail
        if returncode == 2 and tail:
            message = f"train {name}: {tail[-1]}"
        else:
            message = (f"train {name}: the training process failed (exit code {returncode}); the last lines of its "
                       "output:\n" + "\n".join(tail))
        super().__init__(message)


def run_process(cmd: list[str], on_line: LineSink) -> tuple[int, list[str]]:
    """Run `cmd` with stdout and stderr merged, handing each line to `on_line` as it comes.
    Returns (exit code, its last TAIL_LINES lines). An exception here (Ctrl-C, SIGTERM, a failing
    `on_line`) stops the process and its children before it propagates: none is left behind."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    tail: deque[str] = deque(maxlen=TAIL_LINES)
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                            text=True, encoding="utf-8", errors="replace", bufsize=1, env=env)
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            line = line.rstrip("\n")
            tail.append(line)
            on_line(line)
        return proc.wait(), list(tail)
    finally:
        if proc.poll() is None:
            stop_tree(proc.pid)  # with torchrun's workers
            proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()


def run_request(req: TrainRequest, on_line: LineSink, name: str | None = None) -> dict[str, Any]:
    """Train `req` in its own process (launch_command), streaming its output to `on_line`.
    Returns train_summary.json; raises TrainProcessError when the process fails. An out folder
    holding a checkpoint resumes from it (train_model)."""
    check_request(req)  # a missing path fails here in one line, not once per torchrun worker
    out = Path(req.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    summary_file = out / TRAIN_SUMMARY
    summary_file.unlink(missing_ok=True)  # a summary left by an earlier run must not pass for this one's
    request_file = write_request(req)
    rc, tail = run_process(launch_command(req, request_file), on_line)
    name = name or out.name
    if rc != 0:
        raise TrainProcessError(name, rc, tail)
    if not summary_file.is_file():
        raise TrainProcessError(name, rc, [*tail, f"(no {TRAIN_SUMMARY} was written in {out})"])
    return read_json(summary_file)


def run_job(job: TrainJob, on_line: LineSink) -> dict[str, Any]:
    """Train one matrix cell (idempotent): a run of this key that already finished in its folder
    (its Prefect record lost) is returned as it is; a folder holding another key's run is
    emptied first, so nothing of it (checkpoints to resume from, a merged model) mixes into this
    one; a killed run of the same key resumes from its last checkpoint."""
    out = Path(job.request.out_dir)
    done = finished_run(out, job.key)
    if done is not None:
        on_line(f"{job.name}: already trained in {out} (same inputs)")
        return {**done, "reused": True}
    record = out / TRAIN_KEY
    if out.exists() and (not record.is_file() or read_json(record).get("key") != job.key):
        on_line(f"{job.name}: {out} holds a run of other inputs; starting afresh")
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)
    write_json(record, {"key": job.key, "cell": job.name, "finished": False})
    summary = run_request(job.request, on_line, job.name)
    write_json(record, {"key": job.key, "cell": job.name, "finished": True})
    return summary


def summary_rows(summary: dict[str, Any]) -> list[dict[str, Any]]:
    """A run's figures as table rows {metric, value} (the train-<cell> artifact)."""
    m = summary.get("metrics") or {}

    def num(v: Any, digits: int = 4) -> Any:
        return round(v, digits) if isinstance(v, float) else v

    kind = summary.get("peak_memory_kind")
    return [
        {"metric": "steps", "value": summary.get("steps")},
        {"metric": "final train loss", "value": num(m.get("final_train_loss"))},
        {"metric": "final validation loss", "value": num(m.get("final_eval_loss"))},
        {"metric": "tokens/s", "value": num(summary.get("tokens_per_s"), 1)},
        {"metric": "real-token fraction of batches", "value": num(summary.get("real_token_fraction"))},
        {"metric": f"peak memory (MiB{', ' + kind if kind else ''})", "value": num(summary.get("peak_memory_mb"), 1)},
        {"metric": "wall time (s)", "value": num(summary.get("wall_s"), 1)},
        {"metric": "output", "value": summary.get("output")},
    ]
