"""Fine-tuning benchmark: packing vs padded batches, LoRA-int8 vs full memory (not a test; prints JSON).

    .venv/bin/python bench/train.py [--data DIR] [--tiny-dir .cache/tiny] [--micro-batch 8] [--quick]

Prints one JSON object. Everything goes through ruinstruct.train.sft (TrainSettings, build_trainer)
on the same data in one run, so the figures are comparable even on a noisy shared machine:

  throughput   the tiny LLaMA (`ruinstruct make-tiny`) with the tiny profile's method (LoRA, int8
               base weights) over one epoch of the tiny profile's training split, twice:
               packed (TRL packing, best-fit decreasing, padding-free; micro-batch 1) and the
               baseline, unpacked at micro-batch `--micro-batch` (padded to the longest dialog of
               each batch). Counted in the collator, on the batches actually trained: real tokens
               (attention mask; a padding-free batch has no padding), positions, real-token
               fraction, and real tokens/s over the steps after the first (the first pays one-off
               start-up costs). Both epochs must see the same real tokens: a check of the counting.
  memory       a LLaMA-shaped model of tens of millions of parameters with random weights (built
               here from a LlamaConfig, with the tiny tokenizer; most parameters in the linear
               layers), a few optimizer steps of LoRA on int8 base weights (bitsandbytes) and of
               full fine-tuning, on packed sequences of `--seq-len` tokens, each in its own fresh
               child process so the peaks do not mix (the two children run at the same time:
               a process's memory does not depend on the other's). On CUDA the peak is
               torch.cuda.max_memory_allocated. On CPU:
                 peak_mb                  the child's peak RSS (VmHWM; ru_maxrss is reported too,
                                          but it can start at the spawning parent's peak)
                 peak_above_baseline_mb   that peak less the RSS just before the model is loaded
                                          (imports done): model + optimizer + activations, plus
                                          the file-backed checkpoint pages below
                 train_peak_above_baseline_mb   the same for the training phase alone (the
                                          high-water mark reset after loading, /proc/self/clear_refs)
                 peak_anon_above_baseline_mb    anonymous RSS only, sampled every 5 ms: leaves out
                                          file-backed pages, chiefly the fp32 checkpoint that
                                          loading maps and reads to quantize it (LoRA-int8 here:
                                          most of it still resident after loading, because the
                                          unquantized embeddings stay views of the mapping), which
                                          a GPU's allocated memory never holds, and which the
                                          kernel reclaims under pressure. The target is judged on
                                          this one on CPU: it is what the process allocates, the
                                          analogue of torch.cuda.max_memory_allocated
               The children run with a fixed glibc mmap threshold (MALLOC_ENV), so freed large
               blocks leave the RSS at once and it follows live memory, not allocator churn.

Without --data the tiny profile's dataset is built once (`ruinstruct data --config configs/tiny.yaml`)
into .cache/bench/tiny-run and reused. `--quick` shrinks everything (a few dialogs, a 2-layer
model, 1 step) to check the code path in seconds; its figures mean nothing.

`--smoke` (bench/gpu_smoke.sh) runs one LoRA step and one full step of the tiny LLaMA on the
current device (bf16 on CUDA) and prints tokens/s.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

TARGET_REAL_FRACTION = 0.98
TARGET_MEMORY_RATIO = 0.5
DATA_CACHE = REPO / ".cache/bench/tiny-run"
# The memory model: LLaMA-shaped, 88M parameters, 96% of them in the decoder's linear layers
# (embeddings are small with the tiny 2,000-token vocabulary), so int8 weights can show. At 28M
# the fixed costs (activations, bitsandbytes' per-matmul fp32 weight copies on CPU) still
# weighed as much as the model states: the ratio measured 0.48 (anon) there, 0.31 here.
MEMORY_SHAPE = {"hidden_size": 768, "intermediate_size": 2048, "num_hidden_layers": 12,
                "num_attention_heads": 12, "num_key_value_heads": 12}
# glibc raises its mmap threshold each time a large block is freed, after which big tensors come
# from the heap and their memory is kept after free: RSS then grows with churn, not with live
# tensors. A fixed threshold returns freed blocks at once, so RSS follows live memory (what
# cuda.max_memory_allocated counts on a GPU). Same setting for both variants; a value set in the
# environment wins.
MALLOC_ENV = {"MALLOC_MMAP_THRESHOLD_": os.environ.get("MALLOC_MMAP_THRESHOLD_", "65536")}
QUICK_MEMORY_SHAPE = {"hidden_size": 128, "intermediate_size": 256, "num_hidden_layers": 2,
                      "num_attention_heads": 4, "num_key_value_heads": 4}


def _quiet() -> None:
    # bitsandbytes on CPU logs a float16 cast warning on every int8 matmul (STACK_NOTES).
    logging.getLogger("bitsandbytes.autograd._functions").setLevel(logging.ERROR)
    import transformers

    transformers.logging.set_verbosity_error()


def versions() -> dict[str, str]:
    import bitsandbytes
    import datasets
    import peft
    import torch
    import transformers
    import trl

    return {"python": sys.version.split()[0], "torch": torch.__version__, "transformers": transformers.__version__,
            "trl": trl.__version__, "peft": peft.__version__, "bitsandbytes": bitsandbytes.__version__,
            "datasets": datasets.__version__}


def device_info() -> dict[str, Any]:
    import torch

    cuda = torch.cuda.is_available()
    return {"device": "cuda" if cuda else "cpu", "name": torch.cuda.get_device_name(0) if cuda else None,
            "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads()}


# ---- data -------------------------------------------------------------------------------------------


def dataset_dir(data: str | None) -> Path:
    """The dataset folder: --data (a dataset folder, or a run root holding data/final), else the
    tiny profile's, built once into DATA_CACHE."""
    if data:
        p = Path(data)
        if (p / "data/final").is_dir():
            p = p / "data/final"
        if not p.is_dir():
            sys.exit(f"bench/train.py: --data {data}: no such dataset folder")
        return p
    final = DATA_CACHE / "data/final"
    if not final.is_dir():
        print(f"building the tiny profile's dataset into {DATA_CACHE} ...", file=sys.stderr)
        exe = Path(sys.executable).with_name("ruinstruct")  # the venv's console script
        cmd = [str(exe) if exe.is_file() else "ruinstruct", "data", "--config", str(REPO / "configs/tiny.yaml"),
               "--output", str(DATA_CACHE)]
        r = subprocess.run(cmd, cwd=REPO, stdout=sys.stderr, env={**os.environ, "PYTHONPATH": str(REPO / "src")})
        if r.returncode != 0 or not final.is_dir():
            sys.exit(f"bench/train.py: `{' '.join(cmd)}` failed (exit {r.returncode}); pass --data DIR")
    return final


def load_split(folder: Path, split: str = "train", limit: int | None = None) -> list[dict[str, Any]]:
    from datasets import load_dataset

    rows = [dict(r) for r in load_dataset(str(folder), split=split)]
    return rows[:limit] if limit else rows


# ---- counting what the trainer trains on ------------------------------------------------------------


class CountingCollator:
    """Wraps the trainer's collator and records, for each batch it builds (in the order the
    training loop consumes them), its real tokens and positions. A batch with an attention mask
    counts its ones; a padding-free batch (TRL packing: one row, position ids restarting at each
    example, no mask) holds no padding, so every position is real."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.batches: list[tuple[int, int]] = []

    def __call__(self, features: Any) -> Any:
        batch = self.inner(features)
        ids = batch["input_ids"]
        real = int(batch["attention_mask"].sum()) if "attention_mask" in batch else ids.numel()
        self.batches.append((real, ids.numel()))
        return batch


def _step_clock() -> Any:
    from transformers import TrainerCallback

    class StepClock(TrainerCallback):
        def __init__(self) -> None:
            self.ends: list[float] = []

        def on_train_begin(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            self.begin = time.perf_counter()

        def on_step_end(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            self.ends.append(time.perf_counter())

    return StepClock()


def run_counted(spec: Any, rows: list[dict[str, Any]], settings: Any) -> dict[str, Any]:
    """Train `settings` on `rows` (train split only, no evaluation) in a temp folder; what the
    batches held and how fast the steps went."""
    from ruinstruct.train.sft import build_trainer, real_token_fraction

    with tempfile.TemporaryDirectory(prefix="bench-train-") as tmp:
        trainer, info = build_trainer(spec, {"train": rows}, tmp, settings)
        # The figure the run's summary reports (sft.real_token_fraction), as a cross-check.
        sft_fraction = real_token_fraction(trainer)
        counter = CountingCollator(trainer.data_collator)
        trainer.data_collator = counter
        clock = _step_clock()
        trainer.add_callback(clock)
        t0 = time.perf_counter()
        with contextlib.redirect_stdout(sys.stderr):  # the Trainer prints its logs; stdout is the JSON's
            out = trainer.train()
        wall = time.perf_counter() - t0
    steps = trainer.state.global_step
    accum = settings.grad_accum
    if len(counter.batches) < steps * accum:
        raise AssertionError(f"{len(counter.batches)} batches counted for {steps} steps")
    batches = counter.batches[: steps * accum]  # the loader may build one more than it trains
    real = sum(r for r, _ in batches)
    positions = sum(n for _, n in batches)
    # Steps after the first: the first pays one-off costs (kernels, allocator, lazy init).
    warm = batches[accum:]
    warm_s = clock.ends[-1] - clock.ends[0] if steps > 1 else clock.ends[0] - clock.begin
    warm_real = sum(r for r, _ in warm) if steps > 1 else real
    warm_pos = sum(n for _, n in warm) if steps > 1 else positions
    return {
        "steps": steps, "micro_batch": settings.micro_batch_size, "grad_accum": accum,
        "max_length": info["max_length"], "dialogs": info["data"]["train"]["kept"] + info["data"]["train"]["truncated"],
        "real_tokens": real, "positions": positions,
        "real_token_fraction": round(real / positions, 4) if positions else None,
        "sft_real_token_fraction": round(sft_fraction, 4),
        "tokens_per_s": round(warm_real / warm_s, 1) if warm_s > 0 else None,
        "positions_per_s": round(warm_pos / warm_s, 1) if warm_s > 0 else None,
        "timed_steps": max(steps - 1, 1), "timed_s": round(warm_s, 3), "train_wall_s": round(wall, 3),
        "first_step_s": round(clock.ends[0] - clock.begin, 3) if clock.ends else None,
        "train_loss": round(float(out.training_loss), 4),
    }


# ---- throughput: packing vs padded batches ---------------------------------------------------------


def profile_lora() -> dict[str, Any]:
    """The tiny profile's LoRA settings (configs/tiny.yaml, training.lora), {} when it has none."""
    import yaml

    cfg = yaml.safe_load((REPO / "configs/tiny.yaml").read_text(encoding="utf-8")) or {}
    return dict((cfg.get("training") or {}).get("lora") or {})


def throughput(tiny: Path, data: Path, micro_batch: int, max_length: int | None, quick: bool,
               repeats: int) -> dict[str, Any]:
    from ruinstruct.models import resolve_model
    from ruinstruct.train import TrainSettings

    spec = resolve_model(str(tiny / "llama"), family="llama", name="tiny-llama")
    rows = load_split(data, limit=4 * micro_batch if quick else None)
    common = {"method": "lora", "quantization": "int8", "grad_accum": 1, "epochs": 1.0, "max_length": max_length,
              "micro_batch_size": micro_batch, "lr_scheduler": "constant", "logging_steps": 10_000,
              "save_steps": 10_000}
    # Alternating epochs, best of `repeats` per mode: the machine is shared and noisy, and a later
    # epoch should not win merely by coming second.
    runs: dict[str, list[dict[str, Any]]] = {"packed": [], "unpacked": []}
    for _ in range(repeats):
        for mode in runs:
            runs[mode].append(run_counted(spec, rows, TrainSettings(**common, packing=mode == "packed")))
    best = {m: max(rs, key=lambda r: r["tokens_per_s"] or 0) for m, rs in runs.items()}
    for m, rs in runs.items():
        best[m] = {**best[m], "tokens_per_s_each_epoch": [r["tokens_per_s"] for r in rs]}
    packed, padded = best["packed"], best["unpacked"]
    return {
        "model": str(tiny / "llama"), "method": "lora", "quantization": "int8", "data": str(data),
        "train_dialogs": len(rows), "epochs_per_mode": repeats, "micro_batch": micro_batch,
        "packed": {**packed, "how": f"TRL packing (bfd, padding-free), micro-batch {micro_batch}"},
        "unpacked": {**padded, "how": f"no packing, micro-batch {micro_batch}, padded to the longest in the batch"},
        "same_real_tokens": len({r["real_tokens"] for rs in runs.values() for r in rs}) == 1,
        "speedup_tokens_per_s": (round(packed["tokens_per_s"] / padded["tokens_per_s"], 3)
                                 if packed["tokens_per_s"] and padded["tokens_per_s"] else None),
    }


# ---- memory: LoRA on int8 weights vs full fine-tuning -----------------------------------------------


def build_memory_model(tiny: Path, dest: Path, shape: dict[str, int]) -> dict[str, Any]:
    """A LLaMA of `shape` with random weights (seed 0), fp32, saved with the tiny tokenizer."""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    tok = AutoTokenizer.from_pretrained(str(tiny / "llama"))
    small = LlamaConfig.from_pretrained(str(tiny / "llama"))
    cfg = LlamaConfig(vocab_size=small.vocab_size, max_position_embeddings=small.max_position_embeddings,
                      bos_token_id=small.bos_token_id, eos_token_id=small.eos_token_id,
                      pad_token_id=small.pad_token_id, tie_word_embeddings=False, **shape)
    torch.manual_seed(0)
    model = LlamaForCausalLM(cfg)
    total = sum(p.numel() for p in model.parameters())
    in_layers = sum(m.weight.numel() for m in model.model.layers.modules() if isinstance(m, torch.nn.Linear))
    model.save_pretrained(str(dest))
    tok.save_pretrained(str(dest))
    del model
    return {"shape": shape, "vocab_size": cfg.vocab_size, "parameters": total,
            "decoder_linear_parameters": in_layers, "decoder_linear_share": round(in_layers / total, 4)}


def _status_kb() -> dict[str, int]:
    """VmRSS, VmHWM (peak RSS), RssAnon, RssFile of this process, in kB (/proc/self/status)."""
    out = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM", "RssAnon", "RssFile"):
            out[key] = int(value.split()[0])
    return out


class AnonPeak:
    """Samples this process's anonymous RSS every 5 ms in a thread and keeps the maximum. The
    kernel keeps a peak of the whole RSS only, which also counts file-backed pages: the mapped
    checkpoint that loading reads (and that stays mapped while fp32 tensors still point into it)
    and the libraries. Anonymous memory is the process's own: tensors and allocator arenas."""

    def __init__(self) -> None:
        import threading

        self.peak = _status_kb()["RssAnon"]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(0.005):
            self.peak = max(self.peak, _status_kb()["RssAnon"])

    def __enter__(self) -> AnonPeak:
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, _status_kb()["RssAnon"])


def memory_child(variant: str, model_dir: str, data: str, seq_len: int, micro_batch: int, steps: int,
                 limit: int | None = None) -> dict[str, Any]:
    """One variant's few steps, in this (fresh) process; its peak memory."""
    # Everything a run imports, before the baseline: the baseline is the process without the model.
    import bitsandbytes  # noqa: F401
    import datasets  # noqa: F401
    import peft  # noqa: F401
    import torch
    import transformers  # noqa: F401
    import trl  # noqa: F401

    from ruinstruct.models import resolve_model
    from ruinstruct.train import TrainSettings
    from ruinstruct.train.sft import build_trainer

    _quiet()
    cuda = torch.cuda.is_available()
    rows = load_split(Path(data), limit=limit)
    spec = resolve_model(model_dir, family="llama", name="bench-llama-memory")
    settings = TrainSettings(method=variant, quantization="int8", packing=True, max_length=seq_len,
                             micro_batch_size=micro_batch, grad_accum=1, max_steps=steps,
                             lr_scheduler="constant", logging_steps=10_000, save_steps=10_000)
    base = _status_kb()
    base_cuda = torch.cuda.memory_allocated() if cuda else 0
    with tempfile.TemporaryDirectory(prefix="bench-mem-") as tmp, AnonPeak() as anon:
        trainer, _ = build_trainer(spec, {"train": rows}, tmp, settings)
        model = trainer.model
        loaded = _status_kb()
        # Reset the RSS high-water mark (Linux >= 4.0), so the training phase has its own peak.
        try:
            Path("/proc/self/clear_refs").write_text("5")
            reset = True
        except OSError:
            reset = False
        counter = CountingCollator(trainer.data_collator)
        trainer.data_collator = counter
        with contextlib.redirect_stdout(sys.stderr):  # the Trainer prints its logs; stdout is the JSON's
            trainer.train()
        trained = _status_kb()
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    out: dict[str, Any] = {
        "variant": variant, "steps": trainer.state.global_step, "micro_batch": micro_batch, "seq_len": seq_len,
        "positions": sum(n for _, n in counter.batches[:steps]),
        "trainable_parameters": trainable,
        "weights_footprint_mb": round(model.get_memory_footprint() / 2**20, 2),
        "bf16": bool(trainer.args.bf16), "gradient_checkpointing": settings.gradient_checkpointing,
    }
    if cuda:
        peak = torch.cuda.max_memory_allocated()
        out.update({"peak_kind": "cuda_max_allocated", "peak_mb": round(peak / 2**20, 2),
                    "peak_above_baseline_mb": round((peak - base_cuda) / 2**20, 2)})
        return out

    def mb(kb: int) -> float:
        return round(kb / 1024, 1)

    # The whole-life peak is the larger of the two phases' (the mark was reset in between).
    peak = max(loaded["VmHWM"], trained["VmHWM"])
    out.update({
        "peak_kind": "cpu_max_rss",
        "baseline_rss_mb": mb(base["VmRSS"]),
        "peak_mb": mb(peak),
        "peak_above_baseline_mb": mb(peak - base["VmRSS"]),
        "after_load_rss_mb": mb(loaded["VmRSS"]),
        "load_peak_above_baseline_mb": mb(loaded["VmHWM"] - base["VmRSS"]),
        "train_peak_above_baseline_mb": mb(trained["VmHWM"] - base["VmRSS"]) if reset else None,
        "baseline_anon_mb": mb(base["RssAnon"]),
        "peak_anon_above_baseline_mb": mb(anon.peak - base["RssAnon"]),
        # ru_maxrss is max(VmHWM, the peak the process inherited at exec): a child spawned by a
        # large parent can start with the parent's figure, hence VmHWM above.
        "ru_maxrss_mb": mb(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss),
    })
    return out


def start_memory_child(variant: str, model_dir: Path, data: Path, seq_len: int, micro_batch: int, steps: int,
                       limit: int | None) -> subprocess.Popen:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--memory-child", variant, "--model-dir", str(model_dir),
           "--data", str(data), "--seq-len", str(seq_len), "--micro-batch", str(micro_batch), "--steps", str(steps)]
    if limit:
        cmd += ["--limit", str(limit)]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONPATH": str(REPO / "src"), **MALLOC_ENV})


def finish_memory_child(variant: str, proc: subprocess.Popen) -> dict[str, Any]:
    stdout, stderr = proc.communicate()
    if proc.returncode != 0:
        sys.stderr.write(stderr[-4000:])
        raise RuntimeError(f"memory child {variant} failed (exit {proc.returncode})")
    return json.loads(stdout)


def memory(tiny: Path, data: Path, quick: bool, seq_len: int, micro_batch: int, steps: int,
           meanwhile: Any = None) -> tuple[dict[str, Any], Any]:
    """The memory comparison, and what `meanwhile()` (run while the children run) returned."""
    with tempfile.TemporaryDirectory(prefix="bench-mem-model-") as tmp:
        model_dir = Path(tmp) / "llama-memory"
        model = build_memory_model(tiny, model_dir, QUICK_MEMORY_SHAPE if quick else MEMORY_SHAPE)
        # Each variant in its own fresh process; both at once, since a process's peak memory does
        # not depend on what else runs (only its speed would, and speed is not measured here).
        limit = 32 if quick else None
        procs = {v: start_memory_child(v, model_dir, data, seq_len, micro_batch, steps, limit) for v in ("full", "lora")}
        other = meanwhile() if meanwhile else None
        full, lora = (finish_memory_child(v, procs[v]) for v in ("full", "lora"))

    def ratio(key: str) -> float | None:
        a, b = lora.get(key), full.get(key)
        return round(a / b, 4) if a is not None and b else None

    keys = ["peak_mb", "peak_above_baseline_mb"]
    if full["peak_kind"] == "cpu_max_rss":
        keys += ["train_peak_above_baseline_mb", "peak_anon_above_baseline_mb"]
    return {"model": model, "child_env": MALLOC_ENV, "seq_len": seq_len, "micro_batch": micro_batch, "steps": steps,
            "lora": {**lora, "quantization": "int8 (bitsandbytes)", "lora_r": 16},
            "full": full, "ratio_lora_over_full": {k: ratio(k) for k in keys}}, other


# ---- smoke (bench/gpu_smoke.sh) ---------------------------------------------------------------------


def _smoke_dialogs(n: int) -> list[dict[str, Any]]:
    pairs = [("Привет! Как дела?", "Здравствуйте! Всё хорошо, чем могу помочь?"),
             ("What is the capital of France?", "Paris is the capital of France."),
             ("Сколько будет два плюс два?", "Два плюс два будет четыре."),
             ("Name three colours.", "Red, green and blue.")]
    return [{"id": f"smoke:{i}", "source": "smoke", "lang": "ru", "license": "apache-2.0", "origin_id": None,
             "meta": {}, "messages": [{"role": "user", "content": pairs[i % 4][0]},
                                      {"role": "assistant", "content": pairs[i % 4][1]}]} for i in range(n)]


def smoke(tiny: Path, steps: int) -> dict[str, Any]:
    import torch

    from ruinstruct.models import resolve_model
    from ruinstruct.train import TrainSettings

    _quiet()
    cuda = torch.cuda.is_available()
    spec = resolve_model(str(tiny / "llama"), family="llama", name="tiny-llama")
    rows = _smoke_dialogs(8 * steps)
    out: dict[str, Any] = {"bench": "gpu_smoke", **device_info(), "versions": versions(), "model": spec.hf_id,
                           "dtype": "bf16" if cuda else "fp32", "runs": {}}
    for method in ("lora", "full"):
        settings = TrainSettings(method=method, quantization="int8", micro_batch_size=8, grad_accum=1,
                                 max_steps=steps, bf16=cuda, lr_scheduler="constant",
                                 logging_steps=10_000, save_steps=10_000)
        if cuda:
            torch.cuda.reset_peak_memory_stats()
        r = run_counted(spec, rows, settings)
        r["bf16"] = settings.bf16
        if cuda:
            r["peak_memory_mb"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)
        out["runs"][method] = r
    return out


# ---- main -------------------------------------------------------------------------------------------


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", help="dataset folder (or run root with data/final); default: build the tiny profile's")
    ap.add_argument("--tiny-dir", default=os.environ.get("RUINSTRUCT_TINY_DIR", str(REPO / ".cache/tiny")))
    ap.add_argument("--micro-batch", type=int, default=None,
                    help="throughput micro-batch, packed and unpacked; default: the tiny profile's LoRA one, else 8")
    ap.add_argument("--max-length", type=int, default=None,
                    help="throughput context; default: the tiny profile's LoRA one, else the trainer's")
    ap.add_argument("--repeats", type=int, default=2, help="throughput: epochs per mode, alternating (best kept)")
    ap.add_argument("--threads", type=int, default=1,
                    help="torch intra-op threads on CPU (1: stable timings on a shared machine)")
    ap.add_argument("--seq-len", type=int, default=512, help="memory runs: packed sequence length")
    ap.add_argument("--steps", type=int, default=None,
                    help="optimizer steps: memory runs (default 3), --smoke (default 2: the first warms up)")
    ap.add_argument("--quick", action="store_true", help="tiny sizes: checks the code path, figures mean nothing")
    ap.add_argument("--smoke", action="store_true", help="one LoRA and one full step on this device (gpu_smoke.sh)")
    ap.add_argument("--memory-child", choices=["full", "lora"], help=argparse.SUPPRESS)
    ap.add_argument("--model-dir", help=argparse.SUPPRESS)
    ap.add_argument("--limit", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args()
    # Libraries print to stdout (DeepSpeed's accelerator line, the Trainer's logs): send all of
    # fd 1 to stderr and keep the real stdout for the JSON alone.
    json_out = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)

    def emit(obj: dict[str, Any], indent: int | None = 2) -> None:
        sys.stdout.flush()
        json_out.write(json.dumps(obj, ensure_ascii=False, indent=indent) + "\n")
        json_out.flush()

    if args.memory_child:
        emit(memory_child(args.memory_child, args.model_dir, args.data, args.seq_len,
                          args.micro_batch, args.steps or 3, args.limit), indent=None)
        return
    if args.threads and not args.smoke:
        os.environ["OMP_NUM_THREADS"] = str(args.threads)  # the memory children inherit it
        import torch

        torch.set_num_threads(args.threads)
    tiny = Path(args.tiny_dir)
    if not (tiny / "llama/config.json").is_file():
        sys.exit(f"bench/train.py: no tiny LLaMA at {tiny}/llama: run `ruinstruct make-tiny --out {tiny}` "
                 "or pass --tiny-dir")
    _quiet()
    if args.smoke:
        emit(smoke(tiny, args.steps or 2))
        return

    t0 = time.perf_counter()
    data = dataset_dir(args.data)

    lora_profile = profile_lora()
    micro_batch = 2 if args.quick else args.micro_batch or lora_profile.get("micro_batch_size") or 8
    max_length = args.max_length or lora_profile.get("max_length")

    def run_throughput() -> dict[str, Any]:
        return throughput(tiny, data, micro_batch, max_length, args.quick, 1 if args.quick else args.repeats)

    seq_len, steps = (300, 1) if args.quick else (args.seq_len, args.steps or 3)
    if args.quick:  # figures mean nothing here: save time by running both parts at once
        mem, thr = memory(tiny, data, True, seq_len, 2, steps, meanwhile=run_throughput)
    else:  # one after the other, so the memory children do not slow the timed epochs
        thr = run_throughput()
        mem, _ = memory(tiny, data, False, seq_len, 2, steps)
    frac = thr["packed"]["real_token_fraction"]
    ratios = mem["ratio_lora_over_full"]
    judged = "peak_anon_above_baseline_mb" if "peak_anon_above_baseline_mb" in ratios else "peak_above_baseline_mb"
    mem_ratio = ratios[judged]
    result = {
        "bench": "train", "quick": args.quick, **device_info(), "versions": versions(),
        "throughput": thr, "memory": mem,
        "targets": {"packed_real_token_fraction": f">= {TARGET_REAL_FRACTION}",
                    "lora_int8_over_full_peak_memory": f"<= {TARGET_MEMORY_RATIO} (paper: about 0.25 on GPU)",
                    "memory_ratio_judged_on": judged},
        "targets_met": {"packed_real_token_fraction": frac is not None and frac >= TARGET_REAL_FRACTION,
                        "lora_int8_over_full_peak_memory": mem_ratio is not None and mem_ratio <= TARGET_MEMORY_RATIO,
                        "lora_int8_over_full_peak_memory_by_measure": {
                            k: v is not None and v <= TARGET_MEMORY_RATIO for k, v in ratios.items()}},
        "wall_s": round(time.perf_counter() - t0, 1),
    }
    emit(result)


if __name__ == "__main__":
    main()
