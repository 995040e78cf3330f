"""Translation benchmark: the project's translator vs the paper's way, cold vs warm cache, memory.

    .venv/bin/python bench/translate.py [--tiny .cache/tiny] [--paragraphs 400] [--scale 10]

Prints one JSON object. Everything runs on the same tiny M2M100 (`ruinstruct make-tiny`) in one
process, so the ratios are comparable even on a noisy shared machine:
  naive_s            the authors' way: one paragraph per generate() call, unbatched
  naive_same_segments_s   one generate() call per segment that ours sends (long paragraphs split
                     at sentence boundaries as ours does): the effect of batching alone
  ours_s             HFTranslator.translate_scored: unique, length-sorted, token-budget batches,
                     each output scored (mean token log-probability); input limit from the model
  limit40_s          the same with max_input_tokens=40 (the tiny profile's old limit): paragraphs
                     over it are split and translated in pieces
  cold_s / warm_cache_s   the shard pipeline (segment -> dedup -> cache -> translate -> join) on
                     dialogs made of the same paragraphs, with an empty and then a filled cache
  peak_rss_mb        max RSS of a child process that runs the shard pipeline over the fixture
                     dialogs x1 and x`scale` (distinct content), one shard at a time
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
REPO = Path(__file__).resolve().parents[1]


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


def translator(tiny: Path, device: str = "cpu", **overrides):
    import yaml

    from ruinstruct.config import TranslationConfig
    from ruinstruct.translate.engine import load_translator

    # the demo's translation settings (configs/tiny.yaml), on the given tiny build
    cfg = TranslationConfig(**yaml.safe_load((REPO / "configs/tiny.yaml").read_text())["translation"])
    cfg = cfg.model_copy(update={"model": str(tiny / "translator"), "device": device,
                                 "dtype": "float32" if device == "cpu" else "auto", **overrides})
    tr = load_translator(cfg)
    return tr.cfg, tr  # the resolved settings (the input limit the model allows)


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


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--tiny", type=Path, default=REPO / ".cache/tiny")
    ap.add_argument("--paragraphs", type=int, default=400)
    ap.add_argument("--scale", type=int, default=10)
    ap.add_argument("--device", default="cpu", help="cpu | cuda | auto")
    ap.add_argument("--rss-child", type=int, default=0, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if not (args.tiny / "translator").exists():
        from ruinstruct.tiny import build_tiny

        build_tiny(args.tiny)
    if args.rss_child:
        return rss_child(args.tiny, args.rss_child, args.device)

    import torch

    from ruinstruct.translate.cache import ParagraphCache
    from ruinstruct.translate.dialogs import translate_dialogs

    paragraphs = make_paragraphs(args.paragraphs)
    cfg, tr = translator(args.tiny, args.device)
    tr.translate(paragraphs[:4])  # load the model and warm up kernels before timing either way

    t = time.perf_counter()
    naive = tr.translate_naive(paragraphs)
    naive_s = time.perf_counter() - t
    t = time.perf_counter()
    scored = tr.translate_scored(paragraphs)
    ours_s = time.perf_counter() - t
    ours = [s.text for s in scored]
    logprobs = sorted(s.logprob for s in scored if s.logprob is not None)

    # The old tiny profile's limit: paragraphs over 40 tokens split and translated in pieces.
    _, tr40 = translator(args.tiny, args.device, max_input_tokens=40)
    tr40.translate(paragraphs[:4])
    warm_segments = tr40.segments_generated
    t = time.perf_counter()
    tr40.translate(paragraphs)
    limit40_s = time.perf_counter() - t
    limit40_segments = tr40.segments_generated - warm_segments

    # The same segments ours generates for (long paragraphs split at sentence boundaries), one
    # per generate() call: isolates what batching alone buys from what splitting buys.
    from ruinstruct.translate.engine import split_long

    segments = list(dict.fromkeys(
        seg.strip() for p in paragraphs for seg in split_long(p, tr.count_tokens, cfg.max_input_tokens)))
    t = time.perf_counter()
    tr.translate_naive(segments)
    naive_segments_s = time.perf_counter() - t

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
    for scale in (1, args.scale):
        out = subprocess.run([sys.executable, __file__, "--tiny", str(args.tiny), "--device", args.device,
                              "--rss-child", str(scale)],
                             check=True, capture_output=True, text=True).stdout
        rss[f"x{scale}"] = json.loads(out.strip().splitlines()[-1])

    print(json.dumps({
        "model": "tiny M2M100 (ruinstruct make-tiny), configs/tiny.yaml translation settings",
        "max_batch_tokens": cfg.max_batch_tokens,
        "max_batch_size": cfg.max_batch_size,
        "max_input_tokens": cfg.max_input_tokens,
        "device": tr.device,
        "dtype": str(tr.model.dtype),
        "torch_threads": torch.get_num_threads(),
        "paragraphs": len(paragraphs),
        "naive_s": round(naive_s, 3),
        "ours_s": round(ours_s, 3),
        "speedup_vs_naive": round(naive_s / ours_s, 2),
        "limit40_s": round(limit40_s, 3),
        "limit40_segments": limit40_segments,
        "speedup_model_limit_vs_40": round(limit40_s / ours_s, 2),
        "logprob_quantiles": {q: round(logprobs[min(int(q * len(logprobs)), len(logprobs) - 1)], 4)
                              for q in (0.01, 0.1, 0.5, 0.9)} if logprobs else {},
        "same_output_fraction": round(sum(a == b for a, b in zip(naive, ours, strict=True)) / len(paragraphs), 3),
        "segments": len(segments),
        "naive_same_segments_s": round(naive_segments_s, 3),
        "speedup_batching_only": round(naive_segments_s / ours_s, 2),
        "dialogs": len(dialogs),
        "cold_s": round(cold_s, 3),
        "warm_cache_s": round(warm_s, 4),
        "warm_speedup": round(cold_s / warm_s, 1),
        "cold_translated_units": cold_stats.get("translated"),
        "warm_translated_units": warm_stats.get("translated"),
        "peak_rss_mb": {k: round(v["peak_rss_mb"], 1) for k, v in rss.items()},
        "rss_dialogs": {k: v["dialogs"] for k, v in rss.items()},
        "peak_rss_growth": round(rss[f"x{args.scale}"]["peak_rss_mb"] / rss["x1"]["peak_rss_mb"], 3),
    }, indent=2))


if __name__ == "__main__":
    main()
