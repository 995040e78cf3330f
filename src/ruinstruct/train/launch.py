"""One training run as its own process (or N of them, under torchrun), described by a JSON file.

The caller (stages/train.py) writes a :class:`TrainRequest` into the run folder
(:func:`write_request`) and starts :func:`launch_command`; this module's ``main`` is that
process. It prints one progress line per logged step to stdout (rank 0 only)::

    step 5/40 loss 2.3456 lr 3.000e-04
    step 5/40 eval_loss 2.4012
    trained llama-lora-tinyset: 40 steps, loss 5.1 -> 0.4, 812 tokens/s, peak 1234 MiB (cpu_max_rss); outputs in /abs/models/llama-lora-tinyset

writes ``out_dir/train_summary.json`` (train_model) and exits 0. An expected error (a missing
data folder, a bad request, a UserError: :func:`ruinstruct.errors.describe` knows it) prints one
line to stderr and exits 2, without a traceback; anything else is a bug and keeps its traceback.

Full fine-tuning with DeepSpeed ZeRO-3 (``settings.deepspeed``, e.g. configs/deepspeed/zero3.json)
always starts under ``torch.distributed.run`` (torchrun), even with one process: DeepSpeed's
``zero.Init`` in a plain process falls back to MPI (STACK_NOTES). ``main`` also sets the rendezvous
variables itself when started without torchrun, so ``python -m ruinstruct.train.launch FILE`` works
for one process. Before the model is built it calls ``deepspeed.init_distributed`` with gloo on
CPU (nccl on CUDA): without it, two CPU processes fail the batch-size check (STACK_NOTES).

Why zero3.json has no "optimizer" section: the Trainer then builds the client optimizer, torch's
AdamW with the run's betas (0.9, 0.95) and weight decay 0, which ZeRO-3 without optimizer offload
accepts. DeepSpeed's own AdamW (FusedAdam / DeepSpeedCPUAdam) is a C++/CUDA op compiled on first
use (about 45 s on CPU, more with nvcc) and brings no gain at this scale. A config that offloads
the optimizer to CPU must add an "optimizer" section (DeepSpeedCPUAdam). The "scheduler" is left
to the Trainer too (the run's lr_scheduler and warmup_steps). Values set to "auto" are filled from
the run's settings by the transformers integration (batch sizes, accumulation, lr, betas, bf16,
gradient clipping), so the JSON never contradicts the settings.

Ops that DeepSpeed does compile (the CPU shared-memory comm op, about 30 s) go to
TORCH_EXTENSIONS_DIR, set to ``.cache/torch_extensions`` under the working directory unless the
environment sets it, so they compile once per machine.
"""

from __future__ import annotations

import contextlib
import io
import os
import sys
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ..errors import UserError
from ..io import write_json
from ..models import ModelSpec
from .sft import TrainSettings

#: the request file in a run folder (out_dir), read by the training process
REQUEST_FILE = "train_request.json"
#: where DeepSpeed's compiled ops are kept when TORCH_EXTENSIONS_DIR is unset (under the cwd)
DEFAULT_EXTENSIONS_DIR = Path(".cache") / "torch_extensions"


class TrainRequest(BaseModel):
    """Everything one training process needs; kept as JSON in the run folder."""

    model_config = ConfigDict(extra="forbid")

    model: ModelSpec
    data_dir: str = Field(description="absolute dataset folder (train/validation splits)")
    out_dir: str = Field(description="absolute run folder models/<model>-<method>-<data>")
    data_name: str = Field(description="the <data> part of the run name, also the model card's dataset")
    settings: TrainSettings
    num_processes: int = Field(default=1, ge=1, description="training processes (GPUs); >1 or DeepSpeed: torchrun")


def write_request(req: TrainRequest) -> Path:
    """The request as out_dir/REQUEST_FILE, written atomically."""
    return write_json(Path(req.out_dir) / REQUEST_FILE, req.model_dump(mode="json"))


def read_request(path: str | os.PathLike[str]) -> TrainRequest:
    path = Path(path)
    text = path.read_text(encoding="utf-8")  # FileNotFoundError names the file
    try:
        return TrainRequest.model_validate_json(text)
    except ValidationError as e:
        first = e.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "(top level)"
        raise UserError(f"{path}: not a training request: {where}: {first['msg']}") from None


def uses_torchrun(req: TrainRequest) -> bool:
    return req.num_processes > 1 or req.settings.deepspeed is not None


def launch_command(req: TrainRequest, request_file: Path) -> list[str]:
    """The command that trains `req`: this module in one plain process, or under torchrun
    (``--standalone``: one machine, a free rendezvous port) for several processes or DeepSpeed."""
    worker = ["-m", "ruinstruct.train.launch", str(request_file)]
    if not uses_torchrun(req):
        return [sys.executable, *worker]
    return [sys.executable, "-m", "torch.distributed.run", "--standalone",
            f"--nproc_per_node={req.num_processes}", *worker]


def check_request(req: TrainRequest) -> None:
    """The inputs a run needs exist: the data folder and the DeepSpeed config. Raises
    FileNotFoundError (or UserError) naming what is missing; call it before launching, so that a
    missing path fails in one line rather than once per process under torchrun."""
    data = Path(req.data_dir)
    if not data.is_dir():
        raise FileNotFoundError(f"dataset folder not found: {data}")
    if req.settings.deepspeed is not None:
        ds = Path(req.settings.deepspeed)
        if not ds.is_file():
            raise FileNotFoundError(f"deepspeed: config file not found: {ds}")


# ---- memory estimate -------------------------------------------------------------------------------


def count_parameters(spec: ModelSpec) -> tuple[int, int]:
    """(total parameters, parameters of the largest layer) of `spec`, from its config.json (a local
    folder or the hub cache; never downloaded), the model built on the meta device: no weights are
    read. Tied weights count once, as DeepSpeed counts them."""
    from accelerate import init_empty_weights
    from transformers import AutoConfig, AutoModelForCausalLM

    config = AutoConfig.from_pretrained(
        spec.hf_id, revision=spec.revision, trust_remote_code=spec.trust_remote_code, local_files_only=True)
    with init_empty_weights():
        model = AutoModelForCausalLM.from_config(config, trust_remote_code=spec.trust_remote_code)
    return parameter_counts(model)


def parameter_counts(model: Any) -> tuple[int, int]:
    """(total parameters, parameters of the largest layer) of an instantiated (or meta) model;
    tied weights count once."""
    seen: dict[int, int] = {}
    for p in model.parameters():
        seen.setdefault(id(p), p.numel())
    largest = max((sum(p.numel() for p in m.parameters(recurse=False)) for m in model.modules()), default=0)
    return sum(seen.values()), largest


def memory_estimate(spec: ModelSpec, num_processes: int) -> list[str]:
    """DeepSpeed's own estimate of the memory ZeRO-3 needs per GPU and per CPU for `spec` on
    `num_processes` GPUs of one node (params, gradients, optimizer states; activations come on
    top), as printable lines. A model whose config.json cannot be read offline gets one line
    saying so."""
    source = ""
    try:
        total, largest = count_parameters(spec)
    except (OSError, ValueError, KeyError) as e:
        if not (spec.parameters and spec.largest_layer_parameters):
            return [f"memory estimate: {spec.hf_id}: its config.json is in no local folder and not in the Hugging "
                    f"Face cache ({type(e).__name__}); no estimate without it"]
        # a registry model offline: its recorded counts (the config would give the same shape)
        total, largest = spec.parameters, spec.largest_layer_parameters
        source = " (the registry's counts: config.json not at hand)"
    from deepspeed.runtime.zero.stage3 import (
        estimate_zero3_model_states_mem_needs,
        estimate_zero3_model_states_mem_needs_all_cold,
    )

    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):  # DeepSpeed prints its table
        estimate_zero3_model_states_mem_needs_all_cold(
            total_params=total, largest_layer_params=largest, num_gpus_per_node=num_processes, num_nodes=1)
    # The row of configs/deepspeed/zero3.json (no offload, zero.Init), in MiB: DeepSpeed's table
    # rounds to 0.01 GB, which says nothing for a small model.
    cpu, gpu, _ = estimate_zero3_model_states_mem_needs(
        total, largest, num_gpus_per_node=num_processes, num_nodes=1,
        cpu_offload=False, cpu_offload_params=False, zero_init=True)
    head = (f"{spec.name} ({spec.hf_id}): {total:,} parameters, largest layer {largest:,}{source}; "
            f"DeepSpeed ZeRO-3 estimate for {num_processes} GPU(s) on one node:")
    ours = (f"configs/deepspeed/zero3.json (no offload, zero_init=1): {gpu / 2**20:,.1f} MiB per GPU, "
            f"{cpu / 2**20:,.1f} MiB CPU, for params, gradients and optimizer states (activations come on top)")
    return [head] + [line.rstrip() for line in buf.getvalue().splitlines() if line.strip()] + [ours]


# ---- the training process ----------------------------------------------------------------------------


def _rank() -> int:
    return int(os.environ.get("RANK", "0"))


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def init_distributed(req: TrainRequest) -> None:
    """Start the process group before the model is built. Only DeepSpeed needs it this early
    (ZeRO-3 partitions the model inside from_pretrained); plain DDP under torchrun is started by
    the Trainer itself."""
    if req.settings.deepspeed is None:
        return
    if "WORLD_SIZE" not in os.environ:  # started without torchrun: a group of one
        os.environ.update({"RANK": "0", "LOCAL_RANK": "0", "WORLD_SIZE": "1", "MASTER_ADDR": "127.0.0.1",
                           "MASTER_PORT": str(_free_port())})
    import deepspeed
    import torch

    deepspeed.init_distributed(dist_backend="nccl" if torch.cuda.is_available() else "gloo")


def _progress_callback() -> Any:
    from transformers import TrainerCallback

    class Progress(TrainerCallback):
        """One stdout line per logged step, on rank 0."""

        def on_log(self, args: Any, state: Any, control: Any, logs: dict[str, Any] | None = None, **kw: Any) -> None:
            if not state.is_world_process_zero or not logs:
                return
            where = f"step {state.global_step}/{state.max_steps}"
            if "loss" in logs:
                lr = logs.get("learning_rate")
                print(f"{where} loss {float(logs['loss']):.4f}" + (f" lr {float(lr):.3e}" if lr is not None else ""),
                      flush=True)
            if "eval_loss" in logs:
                print(f"{where} eval_loss {float(logs['eval_loss']):.4f}", flush=True)

    return Progress()


def final_line(summary: dict[str, Any]) -> str:
    m = summary["metrics"]

    def f(v: float | None) -> str:
        return "-" if v is None else f"{v:.4g}"

    return (f"trained {summary['run_name']}: {summary['steps']} steps, loss {f(m['first_train_loss'])} -> "
            f"{f(m['final_train_loss'])}, {summary['tokens_per_s']:.0f} tokens/s, peak {summary['peak_memory_mb']:.0f} MiB "
            f"({summary['peak_memory_kind']}); outputs in {summary['output']}")


def run(req: TrainRequest) -> dict[str, Any]:
    """Train `req` in this process (one rank of it under torchrun). Returns the summary on rank 0."""
    from .sft import train_model

    check_request(req)
    _quiet_output()
    _cpu_threads()
    init_distributed(req)
    settings = req.settings
    if settings.dataset_name is None:
        settings = settings.model_copy(update={"dataset_name": req.data_name})
    return train_model(req.model, req.data_dir, req.out_dir, settings, callbacks=[_progress_callback()], quiet=True)


def _cpu_threads() -> None:
    """On CPU, one intra-op thread per process unless OMP_NUM_THREADS says otherwise: the default
    torchrun gives each of its processes, so that 1 and N processes run alike. Measured on a shared
    2-core machine, tiny LLaMA full fine-tuning: 2 threads 40-58 tokens/s, 1 thread 2,529-2,557
    (the threads wait on each other when another process holds a core)."""
    if "OMP_NUM_THREADS" in os.environ:
        return
    import torch

    if not torch.cuda.is_available():
        torch.set_num_threads(1)
        # accelerate's PartialState (DeepSpeed, DDP on CPU) otherwise sets its own count, physical
        # cores / local processes (2 here), when it finds OMP_NUM_THREADS unset
        os.environ["OMP_NUM_THREADS"] = "1"


def _quiet_output() -> None:
    # The progress lines are this process's output; the libraries' bars would interleave with them.
    import warnings

    import datasets
    import transformers

    datasets.disable_progress_bars()
    transformers.utils.logging.disable_progress_bar()
    # bitsandbytes on an AVX512-BF16 CPU looks for an optional kernel from the hub when imported and
    # warns when it is not installed; its own CPU path is used instead. Set before any import of it.
    import logging

    logging.getLogger("bitsandbytes.backends.cpu.ops").setLevel(logging.ERROR)
    # DeepSpeed 0.19's ZeRO-3 calls torch's deprecated collective names on every step: hundreds of
    # identical warnings per run, one per call site and process.
    warnings.filterwarnings(
        "ignore", message=r"`torch\.distributed\.(all_gather_into_tensor|reduce_scatter_tensor)` is deprecated",
        category=FutureWarning)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m ruinstruct.train.launch REQUEST.json", file=sys.stderr)
        return 2
    os.environ.setdefault("TORCH_EXTENSIONS_DIR", str(Path.cwd() / DEFAULT_EXTENSIONS_DIR))
    from ..errors import describe

    try:
        summary = run(read_request(args[0]))
    except Exception as e:
        message = describe(e, args)
        if message is None:
            raise
        if _rank() == 0:  # every rank meets the same input error; one line is enough
            print(message, file=sys.stderr, flush=True)
        return 2
    if _rank() == 0:
        print(final_line(summary), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
