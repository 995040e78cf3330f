"""One single-process fine-tuning run with TRL's SFTTrainer (PAPER.md, section 5).

- ``method="lora"``: base weights in int8 (or nf4) through BitsAndBytesConfig,
  ``prepare_model_for_kbit_training``, LoraConfig with the spec's targets (checked against the
  instantiated model first), the system/user/bot template and the loss on the bot answers only
  (TRL's ``assistant_only_loss``, which reads the template's ``{% generation %}`` mask: the same
  mask :func:`ruinstruct.chat.render` uses, so there is one masking path).
- ``method="full"``: the plain model, gradient checkpointing, the Human/Assistant template and the
  loss on every token.

Dialogs reach TRL as a ``messages`` column; TRL renders them with the chat template stored on the
tokenizer. The context policy (:func:`ruinstruct.chat.fit`) runs before TRL, because TRL's own
truncation cuts at a token, not at a turn boundary; dialogs with special-token text are rejected
(:func:`ruinstruct.chat.special_tokens_in`). Both are counted in the summary.

Outputs in ``out_dir``: the adapter (LoRA) or the model (full), the tokenizer with its chat
template, trainer_state.json, train_rejects.jsonl (dialogs left out, with reasons), train_log.jsonl
(every logged metrics dict), train_summary.json (with tokens/s and peak memory),
README.md (model card) and loss.png; with ``merge`` (LoRA) also ``merged/``, the adapter merged
into a full-precision base.

Heavy imports (torch, transformers, peft, trl, datasets, matplotlib) happen inside functions.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from .. import chat
from ..errors import UserError
from ..io import write_json, write_jsonl, write_text
from ..models import ModelSpec, check_spec_targets, template_for
from ..paths import MODEL_CARD, TRAIN_SUMMARY

log = logging.getLogger(__name__)

# PAPER.md: lr 3e-4 for LoRA; the full fine-tuning lr is not legible in the paper, the authors'
# code uses 3e-6.
DEFAULT_LR: dict[str, float] = {"lora": 3e-4, "full": 3e-6}
# Families whose attention keeps packed examples apart. TRL packs padding-free (one row, position
# ids restarting at each example, no attention mask); transformers then builds a block-diagonal
# mask from the position ids for LLaMA and GPT-2, but XGLM's attention ignores them and lets an
# example attend to the one before it (measured: per-token losses differ by 0.03 from the example
# run alone). tests/unit/test_train.py checks both sides.
PACKING_FAMILIES = ("llama", "gpt2")
# Dialogs left out of training (context policy, special-token text), with reasons and split.
REJECTS_FILE = "train_rejects.jsonl"
# The paper trained at 2048 tokens; a longer checkpoint context is not used by default.
PAPER_CONTEXT = 2048


class TrainSettings(BaseModel):
    """Hyperparameters of one fine-tuning run; the defaults are the paper's."""

    model_config = ConfigDict(extra="forbid")

    method: Literal["full", "lora"] = Field(description="full fine-tuning or LoRA")
    learning_rate: float | None = Field(
        default=None, gt=0, description="AdamW learning rate; default 3e-4 for lora, 3e-6 for full"
    )
    epochs: float = Field(default=1.0, gt=0, description="passes over the training split (ignored when max_steps > 0)")
    max_steps: int = Field(default=-1, description="optimizer steps to run; -1: run `epochs`")
    micro_batch_size: int = Field(default=1, ge=1, description="sequences per device per forward pass")
    grad_accum: int = Field(default=16, ge=1, description="gradient accumulation steps")
    adam_beta1: float = Field(default=0.9, ge=0, lt=1, description="AdamW beta1")
    adam_beta2: float = Field(default=0.95, ge=0, lt=1, description="AdamW beta2")
    weight_decay: float = Field(default=0.0, ge=0, description="AdamW weight decay")
    lr_scheduler: str = Field(default="linear", description="transformers lr scheduler name (linear, constant, cosine)")
    warmup_steps: int = Field(default=0, ge=0, description="learning-rate warmup steps")
    bf16: bool | None = Field(default=None, description="bf16 mixed precision; default: on with CUDA, off on CPU")
    gradient_checkpointing: bool = Field(default=True, description="recompute activations in the backward pass")
    lora_r: int = Field(default=16, ge=1, description="LoRA rank")
    lora_alpha: int = Field(default=16, ge=1, description="LoRA alpha")
    lora_dropout: float = Field(default=0.05, ge=0, lt=1, description="LoRA dropout")
    quantization: Literal["int8", "nf4", "none"] = Field(
        default="int8", description="LoRA base weights: int8 (paper), nf4 (4-bit) or none; full ignores it"
    )
    max_length: int | None = Field(
        default=None, ge=8, description="context in tokens; default min(model context, 2048)"
    )
    context_policy: Literal["drop", "truncate"] = Field(
        default="drop", description="a dialog longer than max_length: drop it, or truncate at a turn boundary"
    )
    packing: bool = Field(default=False, description="pack several dialogs into one sequence (TRL packing)")
    group_by_length: bool = Field(
        default=False,
        description="unpacked runs: batch dialogs of similar length, so little of a batch is padding "
        "(for families that cannot pack, XGLM)",
    )
    save_steps: int = Field(default=500, ge=1, description="save a checkpoint every N optimizer steps")
    save_total_limit: int | None = Field(
        default=2, ge=1,
        description="keep only the newest N checkpoints (a ZeRO-3 checkpoint holds the optimizer states); null: all",
    )
    logging_steps: int = Field(default=10, ge=1, description="log the training loss every N optimizer steps")
    eval_steps: int | None = Field(
        default=None, ge=1, description="validation loss every N steps; default: logging_steps"
    )
    merge: bool = Field(
        default=False, description="LoRA: also export the adapter merged into a full-precision base (out_dir/merged)"
    )
    seed: int = Field(default=42, description="seed of weights init (LoRA), shuffling and dropout")
    dataset_name: str | None = Field(default=None, description="dataset id for the model card (default: folder name)")
    deepspeed: str | None = Field(
        default=None,
        description="DeepSpeed config JSON (e.g. configs/deepspeed/zero3.json) for full fine-tuning; "
        "the run then starts under torchrun (ruinstruct.train.launch)",
    )

    @model_validator(mode="after")
    def _deepspeed_is_for_full(self) -> TrainSettings:
        if self.deepspeed is not None and self.method != "full":
            raise ValueError(
                f"deepspeed: DeepSpeed ZeRO-3 is for method full; method {self.method} trains its "
                "adapter without it (remove `deepspeed`)"
            )
        return self

    @model_validator(mode="after")
    def _group_by_length_is_for_unpacked(self) -> TrainSettings:
        if self.group_by_length and self.packing:
            raise ValueError("group_by_length: applies to unpacked batches, and packing is on (set one of them false)")
        return self

    def lr(self) -> float:
        return self.learning_rate if self.learning_rate is not None else DEFAULT_LR[self.method]


# ---- data ----------------------------------------------------------------------------------------


def _load_rows(data: Any) -> dict[str, list[dict[str, Any]]]:
    """Split name -> dialog records, from a dataset folder (``datasets.load_dataset(path)``, as the
    data flow writes it), a DatasetDict, or a dict of row lists."""
    where = "dataset"
    if isinstance(data, (str, os.PathLike)):
        path = Path(data)
        if not path.is_dir():
            raise FileNotFoundError(f"dataset folder not found: {path}")
        from datasets import load_dataset
        from datasets.data_files import EmptyDatasetError
        from datasets.exceptions import DataFilesNotFoundError

        where = str(path)
        try:
            data = load_dataset(where)
        except (EmptyDatasetError, DataFilesNotFoundError):
            raise UserError(f"{where}: no data files (expected train/validation splits of dialog records, "
                            "as the data flow writes them)") from None
    out: dict[str, list[dict[str, Any]]] = {}
    for split, rows in dict(data).items():
        out[split] = [dict(r) for r in rows]
    if "train" not in out or not out["train"]:
        raise UserError(f"{where}: no train split with rows (splits: {', '.join(out) or 'none'})")
    for split, rows in out.items():
        # a folder of other data (text, parquet of another schema) loads fine and would fail
        # deep inside the chat template
        if rows and "messages" not in rows[0]:
            raise UserError(f"{where}: split {split} holds no dialog records (no `messages` field; its fields: "
                            f"{', '.join(rows[0])})")
    return out


def _fit_messages(tok: Any, dialog: dict[str, Any], kind: str, max_length: int, policy: str) -> tuple[Any, str]:
    """(messages or None, status) under the context policy; status as :func:`chat.fit`, plus
    "special_tokens" for a dialog rejected for special-token text."""
    if chat.special_tokens_in(tok, dialog):
        return None, "special_tokens"
    row, status = chat.fit(tok, dialog, kind, max_length, policy)
    messages = [{"role": m["role"], "content": m["content"]} for m in dialog["messages"]]
    if status != "truncated":
        return (messages if row is not None else None), status
    # chat.fit returns the rendered prefix; find which whole-turn prefix it is, so TRL renders the
    # same messages (the turn-boundary rule stays in chat.fit alone).
    for end in range(len(messages) - 1, 0, -1):
        if messages[end - 1]["role"] == "assistant":
            if chat.render(tok, messages[:end], kind)["input_ids"] == row["input_ids"]:
                return messages[:end], status
    raise AssertionError("truncated dialog matches no turn prefix")  # chat.fit only cuts at turn ends


def prepare_split(
    tok: Any, rows: Iterable[dict[str, Any]], kind: str, max_length: int, policy: str,
    rejects: list[dict[str, Any]] | None = None,
) -> tuple[list[dict[str, Any]], dict[str, int]]:
    """Rows ``{messages}`` for TRL, and counts: ``dialogs == kept + truncated + dropped +
    special_tokens`` and ``len(rows) == kept + truncated``. Each dialog left out is appended to
    `rejects` (when given) as a rejects-file row with its reasons."""
    from ..io import reject_row

    counts = {"dialogs": 0, "kept": 0, "truncated": 0, "dropped": 0, "special_tokens": 0}
    out = []
    for d in rows:
        counts["dialogs"] += 1
        messages, status = _fit_messages(tok, d, kind, max_length, policy)
        counts[status] += 1
        if messages is not None:
            out.append({"messages": messages})
        elif rejects is not None:
            reasons = (chat.special_tokens_in(tok, d) if status == "special_tokens"
                       else [f"longer than the context ({max_length} tokens)" if policy == "drop"
                             else f"first turn longer than the context ({max_length} tokens)"])
            rejects.append(reject_row(reasons, record=d))
    return out, counts


# ---- model ---------------------------------------------------------------------------------------


def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()


def load_model(spec: ModelSpec, settings: TrainSettings) -> tuple[Any, Any]:
    """(model, peft LoraConfig or None). LoRA: quantized base, prepared for k-bit training, its
    targets checked against the instantiated model."""
    import torch
    from transformers import AutoModelForCausalLM

    kwargs = {k: v for k, v in spec.load_kwargs().items() if v is not None}
    cuda = _cuda()
    if settings.method == "full":
        model = AutoModelForCausalLM.from_pretrained(spec.hf_id, dtype=torch.float32, **kwargs)
        return model, None

    from peft import LoraConfig, prepare_model_for_kbit_training

    if settings.quantization != "none":
        from transformers import BitsAndBytesConfig

        if settings.quantization == "int8":
            kwargs["quantization_config"] = BitsAndBytesConfig(load_in_8bit=True)
        else:
            kwargs["quantization_config"] = BitsAndBytesConfig(
                load_in_4bit=True, bnb_4bit_quant_type="nf4",
                bnb_4bit_compute_dtype=torch.bfloat16 if cuda else torch.float32,
            )
        # bitsandbytes places the quantized weights on load; on CPU they must be put there explicitly.
        kwargs["device_map"] = {"": 0} if cuda else "cpu"
    model = AutoModelForCausalLM.from_pretrained(spec.hf_id, **kwargs)
    check_spec_targets(model, spec)
    if settings.quantization != "none":
        model = prepare_model_for_kbit_training(
            model, use_gradient_checkpointing=settings.gradient_checkpointing
        )
    lora = LoraConfig(
        r=settings.lora_r, lora_alpha=settings.lora_alpha, lora_dropout=settings.lora_dropout,
        bias="none", task_type="CAUSAL_LM", **spec.lora_kwargs(),
    )
    return model, lora


def sft_config(settings: TrainSettings, out_dir: Path, max_length: int, has_eval: bool) -> Any:
    from trl import SFTConfig

    bf16 = settings.bf16 if settings.bf16 is not None else _cuda()
    return SFTConfig(
        output_dir=str(out_dir / "checkpoints"),
        learning_rate=settings.lr(),
        num_train_epochs=settings.epochs,
        max_steps=settings.max_steps,
        per_device_train_batch_size=settings.micro_batch_size,
        per_device_eval_batch_size=settings.micro_batch_size,
        gradient_accumulation_steps=settings.grad_accum,
        adam_beta1=settings.adam_beta1,
        adam_beta2=settings.adam_beta2,
        weight_decay=settings.weight_decay,
        lr_scheduler_type=settings.lr_scheduler,
        warmup_steps=settings.warmup_steps,
        bf16=bf16,
        use_cpu=not _cuda(),
        # the new name: TRL's default for the deprecated `gradient_checkpointing` warned on every run
        activation_checkpointing=settings.gradient_checkpointing,
        max_length=max_length,
        packing=settings.packing,
        train_sampling_strategy="group_by_length" if settings.group_by_length else "random",
        assistant_only_loss=settings.method == "lora",
        save_strategy="steps",
        save_steps=settings.save_steps,
        save_total_limit=settings.save_total_limit,
        logging_strategy="steps",
        logging_steps=settings.logging_steps,
        logging_first_step=True,
        eval_strategy="steps" if has_eval else "no",
        eval_steps=settings.eval_steps or settings.logging_steps,
        seed=settings.seed,
        data_seed=settings.seed,
        report_to=[],
        disable_tqdm=True,
        dataset_num_proc=None,
        # real tokens per step, summed over processes: the summary's tokens/s
        include_num_input_tokens_seen="non_padding",
        deepspeed=settings.deepspeed,
    )


def build_trainer(
    spec: ModelSpec, data: Any, out_dir: str | os.PathLike[str], settings: TrainSettings
) -> tuple[Any, dict[str, Any]]:
    """The SFTTrainer of a run, not started, and the data counts (for tests and `train_model`)."""
    from datasets import Dataset
    from trl import SFTTrainer

    out = Path(out_dir)
    if settings.packing and spec.family not in PACKING_FAMILIES:
        raise UserError(
            f"packing: the {spec.family} family's attention does not keep packed examples apart "
            f"(packing works for {', '.join(PACKING_FAMILIES)}); set packing: false"
        )
    kind = template_for(settings.method)
    tok = chat.load_tokenizer(spec.hf_id, kind)
    max_length = settings.max_length or min(spec.context_length, PAPER_CONTEXT)
    splits = _load_rows(data)
    prepared: dict[str, list[dict[str, Any]]] = {}
    counts: dict[str, dict[str, int]] = {}
    rejects: list[dict[str, Any]] = []
    for split in ("train", "validation"):
        if split in splits:
            left_out: list[dict[str, Any]] = []
            prepared[split], counts[split] = prepare_split(
                tok, splits[split], kind, max_length, settings.context_policy, left_out)
            rejects += [{**r, "split": split} for r in left_out]
    if not prepared["train"]:
        raise UserError(f"no training dialog fits the context ({max_length} tokens): {counts['train']}")
    has_eval = bool(prepared.get("validation"))
    # The arguments come before the model: with a ZeRO-3 config they make from_pretrained build it
    # partitioned over the processes (deepspeed.zero.Init) instead of whole in each.
    args = sft_config(settings, out, max_length, has_eval)
    model, lora = load_model(spec, settings)
    trainer = SFTTrainer(
        model=model,
        args=args,
        train_dataset=Dataset.from_list(prepared["train"]),
        eval_dataset=Dataset.from_list(prepared["validation"]) if has_eval else None,
        processing_class=tok,
        peft_config=lora,
    )
    return trainer, {"template": kind, "max_length": max_length, "data": counts, "rejects": rejects}


# ---- outputs -------------------------------------------------------------------------------------


def loss_curves(log_history: list[dict[str, Any]]) -> tuple[list[tuple[int, float]], list[tuple[int, float]]]:
    """(train, validation) loss points (step, loss) from a trainer's log history."""
    train = [(int(e["step"]), float(e["loss"])) for e in log_history if "loss" in e]
    val = [(int(e["step"]), float(e["eval_loss"])) for e in log_history if "eval_loss" in e]
    return train, val


def plot_losses(log_history: list[dict[str, Any]], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")  # no display on training machines
    import matplotlib.pyplot as plt

    train, val = loss_curves(log_history)
    fig, ax = plt.subplots(figsize=(7, 4))
    if train:
        ax.plot(*zip(*train, strict=True), label="train")
    if val:
        ax.plot(*zip(*val, strict=True), marker="o", label="validation")
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("loss")
    ax.set_title(title)
    ax.legend()
    fig.tight_layout()
    tmp = path.with_name(path.name + ".tmp.png")
    fig.savefig(tmp, dpi=100)
    plt.close(fig)
    os.replace(tmp, path)


def model_card(spec: ModelSpec, settings: TrainSettings, summary: dict[str, Any]) -> str:
    import yaml

    lora = settings.method == "lora"
    front = {
        # the hub's field names a hub model: a local folder by its name, not this machine's path
        "base_model": Path(spec.hf_id).name if Path(spec.hf_id).is_dir() else spec.hf_id,
        "datasets": [summary["dataset"]],
        "license": spec.license or "other",
        "library_name": "peft" if lora else "transformers",
        "language": ["ru", "en"],
        "pipeline_tag": "text-generation",
        "tags": ["ruinstruct", "trl", "sft", settings.method]
        + ([settings.quantization] if lora and settings.quantization != "none" else []),
    }
    hp = {
        "method": settings.method, "template": summary["template"], "learning_rate": settings.lr(),
        "optimizer": f"AdamW (betas {settings.adam_beta1}, {settings.adam_beta2}), weight decay {settings.weight_decay}",
        "lr_scheduler": settings.lr_scheduler, "warmup_steps": settings.warmup_steps,
        "micro_batch_size": settings.micro_batch_size, "gradient_accumulation": settings.grad_accum,
        "epochs": settings.epochs, "max_steps": settings.max_steps, "max_length": summary["max_length"],
        "context_policy": settings.context_policy, "packing": settings.packing,
        "group_by_length": settings.group_by_length, "bf16": summary["bf16"],
        "gradient_checkpointing": settings.gradient_checkpointing, "seed": settings.seed,
    }
    if lora:
        hp["merged_export"] = settings.merge
        hp.update({"lora_r": settings.lora_r, "lora_alpha": settings.lora_alpha,
                   "lora_dropout": settings.lora_dropout, "quantization": settings.quantization,
                   "target_modules": " ".join(spec.lora_targets)})
    loss_scope = "bot answers only (assistant-only loss)" if lora else "every token"
    lines = ["---", yaml.safe_dump(front, allow_unicode=True, sort_keys=False).strip(), "---", "",
             f"# {summary['run_name']}", "",
             f"{spec.hf_id} fine-tuned ({'LoRA' if lora else 'full fine-tuning'}) on {summary['dataset']} "
             f"with TRL's SFTTrainer; the loss is on {loss_scope}. The tokenizer carries the "
             f"`{summary['template']}` chat template: render prompts with "
             "`tokenizer.apply_chat_template(messages, add_generation_prompt=True)`.", "",
             "## Hyperparameters", "", "| setting | value |", "|---|---|"]
    lines += [f"| {k} | {v} |" for k, v in hp.items()]
    lines += ["", "## Data", "", "| split | dialogs | kept | truncated | dropped | special_tokens |", "|---|---|---|---|---|---|"]
    for split, c in summary["data"].items():
        lines.append(f"| {split} | {c['dialogs']} | {c['kept']} | {c['truncated']} | {c['dropped']} | {c['special_tokens']} |")
    m = summary["metrics"]
    lines += ["", "## Results", "", "| metric | value |", "|---|---|",
              f"| optimizer steps | {summary['steps']} |",
              f"| real-token fraction of batches | {summary['real_token_fraction']:.4f} |",
              f"| first train loss | {_fmt(m['first_train_loss'])} |",
              f"| final train loss | {_fmt(m['final_train_loss'])} |",
              f"| final validation loss | {_fmt(m['final_eval_loss'])} |",
              f"| wall time (s) | {summary['wall_s']:.1f} |",
              f"| tokens/s (training steps, all processes) | {summary['tokens_per_s']:.1f} |",
              f"| peak memory per process (MiB, {summary['peak_memory_kind']}) | {summary['peak_memory_mb']:.0f} |",
              f"| processes | {summary['num_processes']} |", "",
              "![loss](loss.png)", ""]
    return "\n".join(lines)


def _fmt(v: float | None) -> str:
    return "-" if v is None else f"{v:.4f}"


class _DropCastWarning(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return "inputs will be cast from" not in record.getMessage()


def _quiet_bnb_warnings() -> None:
    # STACK_NOTES: bitsandbytes on CPU logs a float16 cast warning on every int8 matmul.
    bnb_log = logging.getLogger("bitsandbytes.autograd._functions")
    if not any(isinstance(f, _DropCastWarning) for f in bnb_log.filters):
        bnb_log.addFilter(_DropCastWarning())


def _log_callback(path: Path) -> Any:
    """A TrainerCallback appending each logged metrics dict to `path` (the run's training log)."""
    from transformers import TrainerCallback

    from ..io import dumps_line

    class LogToFile(TrainerCallback):
        def on_log(self, args: Any, state: Any, control: Any, logs: dict[str, Any] | None = None, **kw: Any) -> None:
            if state.is_world_process_zero and logs:
                with open(path, "a", encoding="utf-8") as f:
                    f.write(dumps_line({"step": state.global_step, **logs}) + "\n")

    return LogToFile()


def _throughput_callback() -> Any:
    """A TrainerCallback summing the time and the real tokens of the optimizer steps (from a step's
    start to its end: forward, backward, optimizer; not evaluation, checkpoints or start-up). The
    tokens are the Trainer's count over all processes, so `tokens_per_s` is the run's throughput."""
    from transformers import TrainerCallback

    class Throughput(TrainerCallback):
        def __init__(self) -> None:
            self.seconds = 0.0
            self.tokens = 0
            self._t = 0.0
            self._n = 0

        def on_step_begin(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            self._t, self._n = time.perf_counter(), state.num_input_tokens_seen

        def on_step_end(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            self.seconds += time.perf_counter() - self._t
            self.tokens += state.num_input_tokens_seen - self._n

        def tokens_per_s(self) -> float:
            return self.tokens / self.seconds if self.seconds > 0 else 0.0

    return Throughput()


def peak_memory() -> tuple[float, str]:
    """(MiB, kind) of this process's peak memory: on CUDA the most the caching allocator handed
    out (``cuda_max_allocated``, this process's device); on CPU the process's peak resident set
    (``cpu_max_rss``, which includes the Python runtime and libraries, not the model alone)."""
    import torch

    if torch.cuda.is_available() and torch.cuda.is_initialized():
        return torch.cuda.max_memory_allocated() / 2**20, "cuda_max_allocated"
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "cpu_max_rss"  # Linux: KiB


def real_token_fraction(trainer: Any, max_batches: int = 200) -> float:
    """Share of the positions in the training batches that hold a real token, not padding, over
    the first `max_batches` batches the trainer would draw. Packed (padding-free) batches carry no
    attention mask: every position is real."""
    import torch

    # The sampler shuffles with the global torch RNG: measuring must not change the training order.
    rng = torch.random.get_rng_state()
    real = total = 0
    try:
        for i, batch in enumerate(trainer.get_train_dataloader()):
            if i >= max_batches:
                break
            ids = batch["input_ids"]
            total += ids.numel()
            real += int(batch["attention_mask"].sum()) if "attention_mask" in batch else ids.numel()
    finally:
        torch.random.set_rng_state(rng)
    return real / total if total else 0.0


def export_merged(spec: ModelSpec, adapter_dir: str | os.PathLike[str], dest: str | os.PathLike[str]) -> Path:
    """The adapter in `adapter_dir` merged into an fp32 copy of the base model, saved with the
    adapter's tokenizer to `dest`. The base is reloaded unquantized: merging into int8 weights
    would round the update away."""
    import shutil

    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    dest = Path(dest)
    kwargs = {k: v for k, v in spec.load_kwargs().items() if v is not None}
    base = AutoModelForCausalLM.from_pretrained(spec.hf_id, dtype=torch.float32, **kwargs)
    merged = PeftModel.from_pretrained(base, str(adapter_dir)).merge_and_unload()
    tmp = dest.with_name(dest.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    merged.save_pretrained(str(tmp))
    AutoTokenizer.from_pretrained(str(adapter_dir)).save_pretrained(str(tmp))
    shutil.rmtree(dest, ignore_errors=True)
    os.replace(tmp, dest)
    return dest


def last_checkpoint(out_dir: str | os.PathLike[str]) -> Path | None:
    """The newest complete checkpoint of a run (``checkpoints/checkpoint-<step>``), or None."""
    from transformers.trainer_utils import get_last_checkpoint

    folder = Path(out_dir) / "checkpoints"
    found = get_last_checkpoint(str(folder)) if folder.is_dir() else None
    return Path(found) if found else None


def train_model(
    spec: ModelSpec,
    data: Any,
    out_dir: str | os.PathLike[str],
    settings: TrainSettings,
    callbacks: Iterable[Any] = (),
    quiet: bool = False,
) -> dict[str, Any]:
    """Fine-tune `spec` on `data` (a dataset folder with train/validation splits of dialog records,
    or a dict split -> rows) into `out_dir`. Returns the summary that train_summary.json holds
    (on rank 0; other ranks of a multi-process run return an empty dict).

    A run whose ``out_dir/checkpoints`` holds a checkpoint (a run killed mid-way) continues from
    the newest one: step, optimizer, scheduler and RNG states, as transformers' Trainer restores
    them. `callbacks` are extra transformers TrainerCallbacks (progress streaming, tests);
    `quiet` drops the Trainer's own printing of every logged dict (a caller that prints its own
    progress lines)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    _quiet_bnb_warnings()
    t0 = time.perf_counter()
    trainer, info = build_trainer(spec, data, out, settings)
    # Under several processes (torchrun, DeepSpeed) every rank runs this function; the files of
    # the run are written by rank 0 alone. Collective steps (train, evaluate, save_model, which
    # gathers ZeRO-3 shards) run on all ranks.
    main = trainer.is_world_process_zero()
    if main:
        write_jsonl(out / REJECTS_FILE, info["rejects"])
    resume = last_checkpoint(out)
    train_log = out / "train_log.jsonl"
    if resume is None:
        if main:
            train_log.unlink(missing_ok=True)  # a fresh run's log, not appended to an old one
    elif main:
        step = int(resume.name.rsplit("-", 1)[-1])
        log.warning("resuming from checkpoint %s (step %d), not from step 0", resume, step)
        from ..io import dumps_line

        with open(train_log, "a", encoding="utf-8") as f:
            f.write(dumps_line({"event": "resumed", "checkpoint": str(resume), "step": step}) + "\n")
    real_fraction = real_token_fraction(trainer)
    throughput = _throughput_callback()
    trainer.add_callback(throughput)
    trainer.add_callback(_log_callback(train_log))
    for cb in callbacks:
        trainer.add_callback(cb)
    if quiet:
        from transformers.trainer_callback import PrinterCallback

        trainer.remove_callback(PrinterCallback)
    trainer.train(resume_from_checkpoint=str(resume) if resume else None)
    evaluated = [e["step"] for e in trainer.state.log_history if "eval_loss" in e]
    if trainer.eval_dataset is not None and (not evaluated or evaluated[-1] != trainer.state.global_step):
        trainer.evaluate()  # the final validation loss (logged into the state's history)
    wall = time.perf_counter() - t0
    memory_mb, memory_kind = peak_memory()
    history = list(trainer.state.log_history)

    # The adapter (peft's save_pretrained) or the whole model; under ZeRO-3 the shards are
    # gathered to rank 0 (stage3_gather_16bit_weights_on_model_save), so every rank must call it.
    trainer.save_model(str(out))
    if not main:
        return {}
    # Trainer.save_model also writes training_args.bin, a pickle; the settings are in
    # train_summary.json and the model card instead. (Checkpoints keep theirs: resuming reads it.)
    (out / "training_args.bin").unlink(missing_ok=True)
    trainer.processing_class.save_pretrained(str(out))  # with its chat template
    trainer.state.save_to_json(str(out / "trainer_state.json"))

    merged = export_merged(spec, out, out / "merged") if settings.merge and settings.method == "lora" else None
    train, val = loss_curves(history)
    dataset = settings.dataset_name or (Path(data).name if isinstance(data, (str, os.PathLike)) else "dialogs")
    summary = {
        "run_name": f"{spec.name}-{settings.method}-{dataset}",
        "model": spec.name, "base_model": spec.hf_id, "method": settings.method, "dataset": dataset,
        "template": info["template"], "max_length": info["max_length"], "data": info["data"],
        "bf16": bool(trainer.args.bf16), "steps": trainer.state.global_step, "wall_s": wall,
        "resumed_from": str(resume) if resume else None,
        "merged": str(merged) if merged else None,
        "rejects_file": str(out / REJECTS_FILE),
        "real_token_fraction": real_fraction,
        "tokens_per_s": throughput.tokens_per_s(),
        "peak_memory_mb": memory_mb,
        "peak_memory_kind": memory_kind,
        "num_processes": trainer.args.world_size,
        "deepspeed": settings.deepspeed,
        "metrics": {
            "first_train_loss": train[0][1] if train else None,
            "final_train_loss": train[-1][1] if train else None,
            "final_eval_loss": val[-1][1] if val else None,
        },
        "settings": settings.model_dump(),
        "output": str(out),
    }
    plot_losses(history, out / "loss.png", summary["run_name"])
    write_text(out / MODEL_CARD, model_card(spec, settings, summary))
    write_json(out / TRAIN_SUMMARY, summary)  # written last: its presence means the run finished
    log.info("trained %s: %d steps, loss %s -> %s", summary["run_name"], summary["steps"],
             _fmt(summary["metrics"]["first_train_loss"]), _fmt(summary["metrics"]["final_train_loss"]))
    return summary
