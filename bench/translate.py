"""Translation benchmark: backends side by side, the paper's way, cold vs warm cache, memory.

    .venv/bin/python bench/translate.py [--tiny .cache/tiny] [--paragraphs 2000] [--scale 10]
    .venv/bin/python bench/translate.py --backends-only      # just the backend comparison
    .venv/bin/python bench/translate.py --gpu-model          # CUDA: a random ~400M M2M100, paragraphs/s

Prints one JSON object. Everything runs on the same tiny M2M100 (`ruinstruct make-tiny`) in one
process, so the ratios are comparable even on a noisy shared machine.

`backends`: the same paragraphs through
  paper_loop             the authors' way: one paragraph per generate() call, unbatched (transformers)
  transformers_batched   HFTranslator.translate_scored: unique, length-sorted, token-budget batches
  ctranslate2_float32    CT2Translator, the checkpoint converted to CTranslate2 (convert_s: that
  ctranslate2_int8       conversion, first use only), the same batches and output caps
each with its time (the best of `--repeat` runs; the paper's loop runs once), paragraphs/s, speedups
against transformers_batched and the paper's loop, and its agreement with transformers_batched
(fp32, the reference): the share of identical outputs, and the differing paragraphs split into
`differ_hit_cap` (decoded alone with its own cap, ceil(length_ratio x input tokens) +
length_extra, transformers or this backend stops at the cap instead of </s>: a degenerate loop)
and `differ_other` (a few are listed under `differ_examples`).

The rest (skipped with --backends-only):
  naive_same_segments_s  one generate() call per segment that ours sends (long paragraphs split
                     at sentence boundaries as ours does): the effect of batching alone
  limit40_s          transformers batched with max_input_tokens=40 (the tiny profile's old limit):
                     paragraphs over it are split and translated in pieces
  cold_s / warm_cache_s   the shard pipeline (segment -> dedup -> cache -> translate -> join) on
                     dialogs made of the same paragraphs, with an empty and then a filled cache
  peak_rss_mb        max RSS of a child process that runs the shard pipeline over the fixture
                     dialogs x1 and x`scale` (distinct content), one shard at a time

`--gpu-model` (CUDA only): a random M2M100 of d_model 1024 and 12+12 layers (~355M parameters
with the tiny vocabulary), built with make-tiny's code, and paragraphs/s (and generated tokens/s
where the translator counts them) for transformers bf16 and fp16 and CTranslate2 float16 and
int8_float16. Random weights rarely emit </s>, so most outputs run to their cap: the figure is a
decoding throughput, not a translation quality.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
REPO = Path(__file__).resolve().parents[1]

#: CTranslate2 compute types measured on each device, by their bench names.
CT2_TYPES = {"cpu": ("float32", "int8"), "cuda": ("float16", "int8_float16")}
#: The random "GPU model": d_model, encoder = decoder layers, ffn, heads (M2M100-418M's shape).
GPU_SHAPE = (1024, 12, 4096, 16)


def corpus_sentences() -> list[str]:
    from ruinstruct.tiny import load_corpus

    return [en for en, _ in load_corpus()]


def make_paragraphs(n: int, seed: int = 0) -> list[str]:
    """n distinct paragraphs of 1-3 corpus sentences (what the tiny translator was trained on)."""
    sents = corpus_sentences()
    rng = random.Random(seed)
    out: list[str] = list(dict.fromkeys(sents))[: n // 2]
    seen = set(out)
    while len(out) < n:
        p = " ".join(rng.sample(sents, rng.randint(2, 3)))
        if p not in seen:
            seen.add(p)
            out.append(p)
    return out


def make_dialogs(paragraphs: list[str], prefix: str = "bench") -> list[dict]:
    from ruinstruct.schema import make_dialog

    dialogs = []
    for i in range(0, len(paragraphs) - 1, 2):
        dialogs.append(make_dialog(
            id=f"{prefix}:{i}", source=prefix, license="Apache-2.0",
            messages=[{"role": "user", "content": paragraphs[i]},
                      {"role": "assistant", "content": "1. " + paragraphs[i + 1] + "\n\n```python\nprint(1)\n```"}],
        ))
    return dialogs


def translator(tiny: Path | None, device: str = "cpu", model: Path | None = None, **overrides):
    """(resolved settings, translator) with the demo's translation settings (configs/tiny.yaml) on
    the tiny translator of `tiny` (or on `model`); `overrides` are TranslationConfig fields."""
    import yaml

    from ruinstruct.config import TranslationConfig
    from ruinstruct.translate.engine import load_translator

    base = yaml.safe_load((REPO / "configs/tiny.yaml").read_text())["translation"]
    path = model if model is not None else tiny / "translator"  # type: ignore[operator]
    fields = {**base, "model": str(path), "device": device,
              "dtype": "float32" if device == "cpu" else "auto", **overrides}
    tr = load_translator(TranslationConfig(**fields))  # validated: a typo in a field name fails here
    return tr.cfg, tr  # the resolved settings (the input limit the model allows)


def timed(fn: Callable[[], Any], repeat: int) -> tuple[float, list[float], Any]:
    """(best time, every time, the last result) of `repeat` calls: the best is the least disturbed
    by the other processes of a shared machine."""
    times, result = [], None
    for _ in range(max(1, repeat)):
        t = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - t)
    return min(times), times, result


def rss_child(tiny: Path, scale: int, device: str) -> None:
    """Shard pipeline over `scale` x the paragraphs, one shard in memory at a time."""
    from ruinstruct.io import write_dialogs
    from ruinstruct.translate.cache import ParagraphCache
    from ruinstruct.translate.shards import plan_shards, translate_shard

    _, tr = translator(tiny, device)
    with tempfile.TemporaryDirectory() as d:
        d = Path(d)
        dialogs = make_dialogs(make_paragraphs(200 * scale, seed=scale), prefix=f"x{scale}")
        write_dialogs(d / "raw.parquet", dialogs)
        del dialogs
        cache = ParagraphCache(d / "cache.sqlite3", tr.id)
        refs = plan_shards("bench", d / "raw.parquet", 32, d / "shards")
        for ref in refs:
            translate_shard(ref, d / "out" / f"{ref['index']}.parquet", tr, cache)
        print(json.dumps({"dialogs": sum(r["dialogs"] for r in refs), "shards": len(refs),
                          "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))


# --------------------------------------------------------------------------- length-cap probes


class CapProbe:
    """Whether a paragraph, decoded alone with its own output cap, stops at the cap rather than
    at </s> (a degenerate loop), with transformers (`hf`) or with a CT2Translator's own
    CTranslate2 model and options. Results are memoised: only the paragraphs on which two
    backends differ are probed."""

    def __init__(self, hf) -> None:
        self.hf = hf
        self._hf: dict[str, bool] = {}
        self._ct2: dict[tuple[str, str], bool] = {}

    def cap(self, n_input: int) -> int:
        return self.hf.max_new_tokens(n_input)

    def transformers(self, text: str) -> bool:
        if text not in self._hf:
            import torch

            hf = self.hf
            ids = hf.encode([text])[0]
            x = torch.tensor([ids], dtype=torch.long, device=hf.device)
            gen = hf._generate(x, torch.ones_like(x), self.cap(len(ids)))
            new = gen.sequences[0].tolist()[1:]  # [0] is the decoder's start token
            self._hf[text] = not any(t in hf._eos_ids for t in new)
        return self._hf[text]

    def ctranslate2(self, text: str, ct) -> bool:
        """`ct`: a loaded CT2Translator; its own CTranslate2 model and decoding options."""
        key = (text, ct.id)
        if key not in self._ct2:
            tok = ct.tokenizer
            ids = ct.encode([text])[0]
            res = ct.model.translator.translate_batch(
                [tok.convert_ids_to_tokens(ids)],
                target_prefix=[ct._prefix] if ct._prefix else None,
                **{**ct._options(ct.max_new_tokens(len(ids))), "return_end_token": True})
            self._ct2[key] = res[0].hypotheses[0][-1:] != [tok.eos_token]
        return self._ct2[key]


def agreement(paragraphs: list[str], reference: list[str], outputs: list[str],
              capped: Callable[[str], bool]) -> dict:
    """Identical share against the reference; the differing paragraphs counted as hitting the
    length cap (`capped`) or not, a few of the others shown."""
    differ = [i for i, (a, b) in enumerate(zip(reference, outputs, strict=True)) if a != b]
    hit = [i for i in differ if capped(paragraphs[i])]
    other = [i for i in differ if i not in set(hit)]
    return {
        "identical": len(paragraphs) - len(differ),
        "identical_share": round((len(paragraphs) - len(differ)) / len(paragraphs), 4),
        "differ": len(differ),
        "differ_hit_cap": len(hit),
        "differ_other": len(other),
        "differ_examples": [{"source": paragraphs[i][:160], "reference": reference[i][:160],
                             "output": outputs[i][:160]} for i in other[:3]],
    }


def bench_backends(tiny: Path, paragraphs: list[str], device: str, repeat: int, ct2_dir: Path) -> tuple[dict, Any]:
    """The four ways on the same paragraphs; returns (JSON part, the transformers translator)."""
    import torch

    from ruinstruct.translate.ct2 import convert

    cfg, hf = translator(tiny, device)
    hf.translate(paragraphs[:4])  # load the model and warm up kernels before timing either way
    runs: dict[str, dict] = {}
    outputs: dict[str, list[str]] = {}

    t = time.perf_counter()
    outputs["paper_loop"] = hf.translate_naive(paragraphs)
    runs["paper_loop"] = {"s": time.perf_counter() - t, "times_s": None}

    best, times, scored = timed(lambda: hf.translate_scored(paragraphs), repeat)
    outputs["transformers_batched"] = [s.text for s in scored]
    runs["transformers_batched"] = {"s": best, "times_s": times,
                                    "dtype": str(hf.model.dtype).removeprefix("torch.")}

    ct2s: dict[str, Any] = {}
    for compute_type in CT2_TYPES["cuda" if device.startswith("cuda") else "cpu"]:
        name = f"ctranslate2_{compute_type}"
        ccfg, ct = translator(tiny, device, backend="ctranslate2", compute_type=compute_type, ct2_dir=str(ct2_dir))
        t = time.perf_counter()
        convert(ccfg)
        convert_s = time.perf_counter() - t
        ct.translate(paragraphs[:4])
        best, times, out = timed(lambda ct=ct: ct.translate_scored(paragraphs), repeat)
        outputs[name] = [s.text for s in out]
        runs[name] = {"s": best, "times_s": times, "compute_type": ct.cfg.compute_type,
                      "convert_s": round(convert_s, 3), "translator_id": ct.id}
        ct2s[name] = ct

    probe = CapProbe(hf)
    reference = outputs["transformers_batched"]
    base_s, loop_s = runs["transformers_batched"]["s"], runs["paper_loop"]["s"]
    out: dict[str, dict] = {}
    for name, run in runs.items():
        if name in ct2s:
            def capped(p: str, ct=ct2s[name]) -> bool:
                return probe.transformers(p) or probe.ctranslate2(p, ct)
        else:
            capped = probe.transformers
        out[name] = {
            "s": round(run["s"], 3),
            **({"times_s": [round(x, 3) for x in run["times_s"]]} if run["times_s"] else {}),
            "paragraphs_per_s": round(len(paragraphs) / run["s"], 1),
            "speedup_vs_transformers_batched": round(base_s / run["s"], 2),
            "speedup_vs_paper_loop": round(loop_s / run["s"], 2),
            **{k: v for k, v in run.items() if k in ("dtype", "compute_type", "convert_s", "translator_id")},
            "agreement_vs_reference": agreement(paragraphs, reference, outputs[name], capped),
        }
    meta = {
        "device": hf.device,
        "paragraphs": len(paragraphs),
        "repeat": repeat,
        "torch_threads": torch.get_num_threads(),
        "ct2_workers": {name: ct.workers for name, ct in ct2s.items()},
        "max_batch_tokens": cfg.max_batch_tokens,
        "max_batch_size": cfg.max_batch_size,
        "max_input_tokens": cfg.max_input_tokens,
        "num_beams": cfg.num_beams,
        # the pipeline's own dtype: fp32 on CPU, bf16 (or fp16) on CUDA, which is what CTranslate2's
        # types are compared with there
        "reference": f"transformers_batched ({runs['transformers_batched']['dtype']} on {hf.device})",
    }
    return {"settings": meta, **out}, (cfg, hf)


# --------------------------------------------------------------------------- the GPU model


def build_gpu_model(tiny: Path, out: Path, shape: tuple[int, int, int, int], seed: int = 0) -> int:
    """A random M2M100 of the given shape with the tiny translator's tokenizer, built by
    make-tiny's own model builder (its shape constants swapped for the call); returns its
    parameter count."""
    from transformers import AutoTokenizer

    from ruinstruct import tiny as tinymod

    tok = AutoTokenizer.from_pretrained(str(tiny / "translator"))
    saved = (tinymod.D_MODEL, tinymod.LAYERS, tinymod.FFN, tinymod.HEADS)
    tinymod.D_MODEL, tinymod.LAYERS, tinymod.FFN, tinymod.HEADS = shape
    try:
        model = tinymod._translator_model(tok, seed)
    finally:
        tinymod.D_MODEL, tinymod.LAYERS, tinymod.FFN, tinymod.HEADS = saved
    model.save_pretrained(out)
    tok.save_pretrained(out)
    return sum(p.numel() for p in model.parameters())


def bench_gpu_model(tiny: Path, n: int, repeat: int, device: str, shape: tuple[int, int, int, int],
                    batch_tokens: int, batch_size: int, variants: list[tuple[str, dict]],
                    model: str | None = None) -> dict:
    """paragraphs/s of each variant on the random model of `shape`, or on the checkpoint `model`
    (a local folder or a hub id already in the cache, e.g. WMT21 itself)."""
    paragraphs = make_paragraphs(n)
    res: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as d:
        if model is None:
            model_dir: Path | str = Path(d) / "m2m100-random"
            params = build_gpu_model(tiny, model_dir, shape)  # type: ignore[arg-type]
            res["model"] = {"d_model": shape[0], "encoder_layers": shape[1], "decoder_layers": shape[1],
                            "ffn": shape[2], "heads": shape[3], "parameters": params, "weights": "random"}
        else:
            from transformers import AutoConfig

            model_dir = model
            c = AutoConfig.from_pretrained(model)
            res["model"] = {"name": model, "d_model": c.d_model, "encoder_layers": c.encoder_layers,
                            "decoder_layers": c.decoder_layers, "ffn": c.decoder_ffn_dim, "vocab": c.vocab_size}
        res["settings"] = {"device": device, "paragraphs": n, "max_batch_tokens": batch_tokens,
                           "max_batch_size": batch_size, "repeat": repeat}
        for name, over in variants:
            _, tr = translator(None, device, model=Path(model_dir), max_batch_tokens=batch_tokens,
                               max_batch_size=batch_size, ct2_dir=str(Path(d) / "ct2"), **over)
            t = time.perf_counter()
            tr.translate(paragraphs[:8])  # load (and for CTranslate2 convert) and warm up
            load_s = time.perf_counter() - t
            before = getattr(tr, "tokens_out", None)
            best, times, _ = timed(lambda tr=tr: tr.translate(paragraphs), repeat)
            row = {"s": round(best, 3), "times_s": [round(x, 3) for x in times],
                   "paragraphs_per_s": round(n / best, 1), "first_call_s": round(load_s, 2)}
            if before is not None:  # generated tokens (pad excluded), per run
                row["tokens_out_per_s"] = round((tr.tokens_out - before) / len(times) / best, 1)
            res[name] = row
            del tr
            _free_cuda()
    return res


def _free_cuda() -> None:
    import gc

    gc.collect()
    try:
        import torch

        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    except ImportError:
        pass


# --------------------------------------------------------------------------- the rest


def bench_rest(tiny: Path, paragraphs: list[str], device: str, scale: int, cfg, tr) -> dict:
    """The transformers path's own measurements: splitting, batching alone, the cache, memory."""
    from ruinstruct.translate.cache import ParagraphCache
    from ruinstruct.translate.dialogs import translate_dialogs
    from ruinstruct.translate.engine import split_long

    # The old tiny profile's limit: paragraphs over 40 tokens split and translated in pieces.
    _, tr40 = translator(tiny, device, max_input_tokens=40)
    tr40.translate(paragraphs[:4])
    warm_segments = tr40.segments_generated
    t = time.perf_counter()
    tr40.translate(paragraphs)
    limit40_s = time.perf_counter() - t
    limit40_segments = tr40.segments_generated - warm_segments

    # The same segments ours generates for (long paragraphs split at sentence boundaries), one
    # per generate() call: isolates what batching alone buys from what splitting buys.
    segments = list(dict.fromkeys(
        seg.strip() for p in paragraphs for seg in split_long(p, tr.count_tokens, cfg.max_input_tokens)))
    t = time.perf_counter()
    tr.translate_naive(segments)
    naive_segments_s = time.perf_counter() - t

    scored = tr.translate_scored(paragraphs)
    logprobs = sorted(s.logprob for s in scored if s.logprob is not None)

    dialogs = make_dialogs(paragraphs)
    with tempfile.TemporaryDirectory() as d:
        cache = ParagraphCache(Path(d) / "c.sqlite3", tr.id)
        t = time.perf_counter()
        _, cold_stats = translate_dialogs(dialogs, tr, cache)
        cold_s = time.perf_counter() - t
        t = time.perf_counter()
        _, warm_stats = translate_dialogs(dialogs, tr, cache)
        warm_s = time.perf_counter() - t

    rss = {}
    for s in (1, scale):
        out = subprocess.run([sys.executable, __file__, "--tiny", str(tiny), "--device", device,
                              "--rss-child", str(s)], check=True, capture_output=True, text=True).stdout
        rss[f"x{s}"] = json.loads(out.strip().splitlines()[-1])

    return {
        "limit40_s": round(limit40_s, 3),
        "limit40_segments": limit40_segments,
        "logprob_quantiles": {q: round(logprobs[min(int(q * len(logprobs)), len(logprobs) - 1)], 4)
                              for q in (0.01, 0.1, 0.5, 0.9)} if logprobs else {},
        "segments": len(segments),
        "naive_same_segments_s": round(naive_segments_s, 3),
        "dialogs": len(dialogs),
        "cold_s": round(cold_s, 3),
        "warm_cache_s": round(warm_s, 4),
        "warm_speedup": round(cold_s / warm_s, 1),
        "cold_translated_units": cold_stats.get("translated"),
        "warm_translated_units": warm_stats.get("translated"),
        "peak_rss_mb": {k: round(v["peak_rss_mb"], 1) for k, v in rss.items()},
        "rss_dialogs": {k: v["dialogs"] for k, v in rss.items()},
        "peak_rss_growth": round(rss[f"x{scale}"]["peak_rss_mb"] / rss["x1"]["peak_rss_mb"], 3),
    }


def versions() -> dict:
    import importlib.metadata as md

    out = {}
    for pkg in ("torch", "transformers", "ctranslate2"):
        try:
            out[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            out[pkg] = None
    return out


def main() -> None:
    # Libraries' chatter (DeepSpeed's accelerator notice, imported by transformers) goes to
    # stderr, so that stdout is the one JSON object.
    with contextlib.redirect_stdout(sys.stderr):
        result = run()
    if result is not None:
        print(json.dumps(result, indent=2, ensure_ascii=False))


def run() -> dict | None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--tiny", type=Path, default=REPO / ".cache/tiny")
    ap.add_argument("--paragraphs", type=int, default=None, help="default 2000 (--quick: 40)")
    ap.add_argument("--repeat", type=int, default=None, help="timed runs per batched backend, best kept (default 3)")
    ap.add_argument("--scale", type=int, default=10)
    ap.add_argument("--device", default="cpu", help="cpu | cuda | auto")
    ap.add_argument("--backends-only", action="store_true", help="only the backend comparison")
    ap.add_argument("--ct2-threads", type=int, default=None,
                    help="CTranslate2 CPU workers of one thread each ($RUINSTRUCT_CT2_THREADS; "
                    "default torch's thread count, the cores the transformers path uses)")
    ap.add_argument("--quick", action="store_true", help="40 paragraphs, one run each, backends only (tests)")
    ap.add_argument("--ct2-dir", type=Path, default=None,
                    help="where to convert (default: a temporary folder, so convert_s is a first use)")
    ap.add_argument("--gpu-model", action="store_true",
                    help="CUDA: a random ~400M M2M100, transformers bf16/fp16 vs CTranslate2 float16/int8_float16")
    ap.add_argument("--gpu-paragraphs", type=int, default=1024)
    ap.add_argument("--gpu-checkpoint", default=None,
                    help="with --gpu-model: measure this checkpoint (folder or cached hub id, e.g. "
                    "facebook/wmt21-dense-24-wide-en-x) instead of the random one")
    ap.add_argument("--gpu-backends", default="transformers,ctranslate2",
                    help="with --gpu-model: which backends' variants to run (comma-separated)")
    ap.add_argument("--gpu-batch-tokens", type=int, default=16384)
    ap.add_argument("--gpu-batch-size", type=int, default=128)
    # the --gpu-model code path on CPU with a small shape and the CPU types (tests, no GPU needed)
    ap.add_argument("--gpu-model-cpu-smoke", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--rss-child", type=int, default=0, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if not (args.tiny / "translator").exists():
        from ruinstruct.tiny import build_tiny

        build_tiny(args.tiny)
    if args.rss_child:
        with contextlib.redirect_stdout(sys.__stdout__):
            rss_child(args.tiny, args.rss_child, args.device)
        return None
    if args.ct2_threads is not None:
        os.environ["RUINSTRUCT_CT2_THREADS"] = str(args.ct2_threads)
    n = args.paragraphs or (40 if args.quick else 2000)
    repeat = args.repeat or (1 if args.quick else 3)

    if args.gpu_model or args.gpu_model_cpu_smoke:
        import torch

        if args.gpu_model_cpu_smoke:
            device, shape = "cpu", (64, 1, 128, 4)
            variants = [("transformers_float32", {"dtype": "float32"}),
                        ("ctranslate2_float32", {"backend": "ctranslate2", "compute_type": "float32"}),
                        ("ctranslate2_int8", {"backend": "ctranslate2", "compute_type": "int8"})]
        else:
            if not torch.cuda.is_available():
                print("bench/translate.py --gpu-model: needs CUDA, and torch sees no GPU here", file=sys.stderr)
                sys.exit(2)
            device, shape = "cuda", GPU_SHAPE
            variants = [("transformers_bfloat16", {"dtype": "bfloat16"}),
                        ("transformers_float16", {"dtype": "float16"}),
                        ("ctranslate2_float16", {"backend": "ctranslate2", "compute_type": "float16"}),
                        ("ctranslate2_int8_float16", {"backend": "ctranslate2", "compute_type": "int8_float16"})]
        wanted = {b.strip() for b in args.gpu_backends.split(",") if b.strip()}
        unknown = wanted - {"transformers", "ctranslate2"}
        if unknown or not wanted:
            print(f"bench/translate.py --gpu-backends: transformers and/or ctranslate2, not {args.gpu_backends!r}",
                  file=sys.stderr)
            sys.exit(2)
        variants = [(name, over) for name, over in variants if over.get("backend", "transformers") in wanted]
        res = bench_gpu_model(args.tiny, args.gpu_paragraphs if not args.quick else n, repeat, device, shape,
                              args.gpu_batch_tokens, args.gpu_batch_size, variants, args.gpu_checkpoint)
        if device == "cuda":
            res["gpu"] = torch.cuda.get_device_name(0)
        return {"bench": "translate-gpu-model", "versions": versions(), **res}

    paragraphs = make_paragraphs(n)
    with tempfile.TemporaryDirectory() as tmp:
        ct2_dir = args.ct2_dir or Path(tmp) / "ct2"
        backends, (cfg, tr) = bench_backends(args.tiny, paragraphs, args.device, repeat, ct2_dir)
    result: dict[str, Any] = {
        "bench": "translate",
        "quick": args.quick,
        "model": "tiny M2M100 (ruinstruct make-tiny), configs/tiny.yaml translation settings",
        "versions": versions(),
        "backends": backends,
    }
    if not (args.backends_only or args.quick):
        rest = bench_rest(args.tiny, paragraphs, args.device, args.scale, cfg, tr)
        ours_s = backends["transformers_batched"]["s"]
        rest["ours_s"] = ours_s
        rest["speedup_batching_only"] = round(rest["naive_same_segments_s"] / ours_s, 2)
        rest["speedup_model_limit_vs_40"] = round(rest["limit40_s"] / ours_s, 2)
        result["transformers_path"] = rest
    return result


if __name__ == "__main__":
    main()
