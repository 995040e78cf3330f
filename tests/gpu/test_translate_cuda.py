"""CUDA paths of the translator (skipped without a GPU): half precision and real OOM halving."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from ruinstruct.config import TranslationConfig  # noqa: E402
from ruinstruct.tiny import load_corpus  # noqa: E402
from ruinstruct.translate.engine import HFTranslator  # noqa: E402

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")]


def cfg(tiny_dir, **kw) -> TranslationConfig:
    return TranslationConfig(model=str(tiny_dir / "translator"), **kw)


def test_auto_picks_cuda_half_precision_and_agrees_with_cpu(tiny_dir):
    sents = [en for en, _ in load_corpus()][:96]
    cpu = HFTranslator(cfg(tiny_dir, device="cpu", dtype="float32")).translate(sents)
    gpu = HFTranslator(cfg(tiny_dir, device="auto", dtype="auto"))
    out = gpu.translate(sents)
    assert gpu.device.startswith("cuda")
    assert gpu.model.dtype in (torch.bfloat16, torch.float16)
    agree = sum(a == b for a, b in zip(cpu, out, strict=True)) / len(sents)
    assert agree >= 0.95, agree


def test_real_cuda_oom_halves_the_batch_and_keeps_every_output(tiny_dir):
    sents = [en for en, _ in load_corpus()]
    # long distinct paragraphs, all in one planned batch, so the first generate() cannot fit
    texts = [" ".join(sents[(i + k) % len(sents)] for k in range(8)) for i in range(256)]
    # fp32: batch composition must not change greedy outputs (in bf16 it can, legitimately)
    big = dict(device="cuda", dtype="float32", max_batch_size=256, max_batch_tokens=10**7, max_input_tokens=512)
    reference = HFTranslator(cfg(tiny_dir, **{**big, "max_batch_size": 16})).translate(texts)

    tr = HFTranslator(cfg(tiny_dir, **big))
    tr.load()
    ids = tr.encode(texts)

    def peak_reserved(batch) -> int:
        """Memory the caching allocator reserves (2 MiB granularity included) for one batch."""
        torch.cuda.synchronize()
        torch.cuda.empty_cache()
        base = torch.cuda.memory_reserved()
        torch.cuda.reset_peak_memory_stats()
        tr._run_batch(batch)
        return torch.cuda.max_memory_reserved() - base

    peak_reserved(ids[:16])  # warm-up: cuBLAS workspaces and the like are allocated once
    p16, p256 = peak_reserved(ids[:16]), peak_reserved(ids)
    assert p256 > 2 * p16, (p16, p256)
    calls_before, retries_before = tr.generate_calls, tr.oom_retries
    # Leave room between the two: 16 texts fit, the planned batch of 256 does not.
    torch.cuda.empty_cache()
    free, _ = torch.cuda.mem_get_info()
    filler = torch.empty(free - (p16 + p256) // 2, dtype=torch.uint8, device="cuda")
    try:
        out = tr.translate(texts)
    finally:
        del filler
        torch.cuda.empty_cache()
    assert tr.oom_retries > retries_before
    assert tr.generate_calls - calls_before > 1
    assert out == reference


def test_scores_on_cuda_agree_with_cpu(tiny_dir):
    """The translator's scores are recorded on the device during generate(): fp32 on CUDA gives
    the CPU's scores, and bf16 gives finite, non-positive ones."""
    import math

    sents = [en for en, _ in load_corpus()][:64]
    cpu = HFTranslator(cfg(tiny_dir, device="cpu", dtype="float32")).translate_scored(sents)
    gpu = HFTranslator(cfg(tiny_dir, device="cuda", dtype="float32")).translate_scored(sents)
    same = [(a, b) for a, b in zip(cpu, gpu, strict=True) if a.text == b.text]
    assert len(same) >= 0.95 * len(sents)
    for a, b in same:
        assert b.logprob == pytest.approx(a.logprob, abs=1e-3)
    half = HFTranslator(cfg(tiny_dir, device="cuda", dtype="bfloat16")).translate_scored(sents)
    assert all(t.logprob is not None and math.isfinite(t.logprob) and t.logprob <= 0 for t in half)
