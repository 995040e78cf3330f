"""Loading a model to evaluate: a fine-tuned folder the training stage wrote (a full model, or a
LoRA adapter over its base), or any causal LM folder / HF id.

Evaluation runs the model as a user would: an adapter is merged into a full-precision base (the
int8 base of training only saved memory during training, and merging into int8 weights would
round the update away), bf16 on CUDA, fp32 on CPU. The tokenizer comes from the folder itself,
so the chat template the model was trained with renders the prompts.

Heavy imports (torch, transformers, peft) happen inside the functions.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from ..errors import UserError

ADAPTER_CONFIG = "adapter_config.json"  # peft's file name


def is_adapter(model_dir: str | os.PathLike[str]) -> bool:
    return (Path(model_dir) / ADAPTER_CONFIG).is_file()


def base_of(model_dir: str | os.PathLike[str]) -> str:
    """The base model an adapter folder was trained on (peft's base_model_name_or_path)."""
    cfg = json.loads((Path(model_dir) / ADAPTER_CONFIG).read_text(encoding="utf-8"))
    base = cfg.get("base_model_name_or_path")
    if not base:
        raise UserError(f"{model_dir}/{ADAPTER_CONFIG}: no base_model_name_or_path")
    return str(base)


def eval_device() -> tuple[str, Any]:
    """(device, dtype) for evaluation: CUDA in bf16 when available, else CPU in fp32."""
    import torch

    if torch.cuda.is_available():
        return "cuda", torch.bfloat16
    return "cpu", torch.float32


def context_limit(model: Any, tokenizer: Any = None) -> int | None:
    """The longest input the model takes: its position table (max_position_embeddings,
    n_positions, ...), or the tokenizer's model_max_length when that is a real limit (the
    smaller of the two); None when neither says."""
    from ..chat import context_length

    cfg = model.config
    limits = [getattr(cfg, k) for k in ("max_position_embeddings", "n_positions", "max_sequence_length", "seq_length")
              if isinstance(getattr(cfg, k, None), int) and getattr(cfg, k) > 0]
    if tokenizer is not None and (n := context_length(tokenizer)):
        limits.append(n)
    return min(limits) if limits else None


def pad_batch(seqs: Any, pad_id: int, *, side: str = "left") -> tuple[Any, Any]:
    """(input ids, attention mask) of token id lists padded to the longest, on the CPU: left for
    generation (every row's next token lands in the last column), right for scoring."""
    import torch

    width = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(seqs), width), dtype=torch.long)
    for row, s in enumerate(seqs):
        cols = slice(width - len(s), width) if side == "left" else slice(0, len(s))
        ids[row, cols] = torch.tensor(list(s), dtype=torch.long)
        mask[row, cols] = 1
    return ids, mask


def load_for_eval(model: str | os.PathLike[str], *, padding_side: str = "left") -> tuple[Any, Any]:
    """(model in eval mode on the evaluation device, its tokenizer with `padding_side` and a pad
    token). `model` is a fine-tuned folder (full or adapter) or any causal LM folder / HF id."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = Path(model)
    local = path.is_dir()
    if not local and (path.is_absolute() or str(model).startswith(".") or str(model).count("/") != 1):
        raise UserError(f"{model}: model folder not found")
    device, dtype = eval_device()
    if local and is_adapter(path):
        from peft import PeftModel

        base = AutoModelForCausalLM.from_pretrained(base_of(path), dtype=dtype)
        net = PeftModel.from_pretrained(base, str(path)).merge_and_unload()
    else:
        net = AutoModelForCausalLM.from_pretrained(str(model), dtype=dtype)
    net.to(device).eval()
    tok = AutoTokenizer.from_pretrained(str(model))
    tok.padding_side = padding_side
    if tok.pad_token_id is None:
        # batching needs a pad id; its positions are masked out, so which token it is does not matter
        tok.pad_token = tok.eos_token
    return net, tok
