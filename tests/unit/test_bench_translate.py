"""bench/translate.py in --quick mode: the four ways on the same paragraphs, one JSON object whose
counts add up and whose ratios are its own times'; and the --gpu-model code path on CPU."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("ctranslate2")

REPO = Path(__file__).resolve().parents[2]
WAYS = ("paper_loop", "transformers_batched", "ctranslate2_float32", "ctranslate2_int8")


def bench(tiny_dir: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "RUINSTRUCT_CT2_THREADS": "1", "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, str(REPO / "bench/translate.py"), "--tiny", str(tiny_dir), *args],
                          capture_output=True, text=True, env=env, cwd=REPO)


@pytest.mark.slow
def test_quick_bench_compares_the_four_ways_on_the_same_paragraphs(tiny_dir, tmp_path):
    r = bench(tiny_dir, "--quick", "--paragraphs", "30", "--ct2-dir", str(tmp_path / "ct2"))
    assert r.returncode == 0, r.stderr[-3000:]
    out = json.loads(r.stdout)
    assert out["bench"] == "translate" and out["quick"] is True
    assert "transformers_path" not in out  # --quick: the backends only
    b = out["backends"]
    assert set(b) == {"settings", *WAYS}
    assert b["settings"]["paragraphs"] == 30 and set(b["settings"]["ct2_workers"].values()) == {1}
    assert b["settings"]["reference"] == "transformers_batched (float32 on cpu)"

    base, loop = b["transformers_batched"]["s"], b["paper_loop"]["s"]
    for way in WAYS:
        row = b[way]
        agree = row["agreement_vs_reference"]
        assert agree["identical"] + agree["differ"] == 30
        assert agree["differ_hit_cap"] + agree["differ_other"] == agree["differ"]
        assert agree["identical_share"] == round(agree["identical"] / 30, 4)
        assert len(agree["differ_examples"]) == min(3, agree["differ_other"])
        # the ratios are the rows' own (rounded) times, to rounding
        assert row["paragraphs_per_s"] == pytest.approx(30 / row["s"], rel=0.02, abs=0.2)
        assert row["speedup_vs_transformers_batched"] == pytest.approx(base / row["s"], rel=0.02, abs=0.02)
        assert row["speedup_vs_paper_loop"] == pytest.approx(loop / row["s"], rel=0.02, abs=0.02)
    # the reference against itself
    assert b["transformers_batched"]["agreement_vs_reference"]["identical"] == 30
    assert b["transformers_batched"]["speedup_vs_transformers_batched"] == 1.0
    assert b["paper_loop"]["speedup_vs_paper_loop"] == 1.0
    # both CTranslate2 rows converted their own folder and are distinct translators
    f32, i8 = b["ctranslate2_float32"], b["ctranslate2_int8"]
    assert (f32["compute_type"], i8["compute_type"]) == ("float32", "int8")
    assert f32["convert_s"] > 0 and i8["convert_s"] > 0
    assert f32["translator_id"] != i8["translator_id"]
    assert len(list((tmp_path / "ct2").glob("*-float32"))) == 1 and len(list((tmp_path / "ct2").glob("*-int8"))) == 1


@pytest.mark.slow
def test_gpu_model_path_runs_on_cpu_with_a_small_shape(tiny_dir):
    r = bench(tiny_dir, "--gpu-model-cpu-smoke", "--quick", "--paragraphs", "12")
    assert r.returncode == 0, r.stderr[-3000:]
    out = json.loads(r.stdout)
    assert out["bench"] == "translate-gpu-model"
    assert out["model"]["d_model"] == 64 and out["model"]["parameters"] > 0
    for way in ("transformers_float32", "ctranslate2_float32", "ctranslate2_int8"):
        assert out[way]["paragraphs_per_s"] == pytest.approx(12 / out[way]["s"], rel=0.02, abs=0.2)
        assert out[way]["tokens_out_per_s"] > 0


def test_gpu_model_without_cuda_is_a_one_line_error(tiny_dir):
    torch = pytest.importorskip("torch")
    if torch.cuda.is_available():
        pytest.skip("a GPU is here: the option runs")
    r = bench(tiny_dir, "--gpu-model")
    assert r.returncode == 2
    assert r.stderr.strip().splitlines()[-1] == "bench/translate.py --gpu-model: needs CUDA, and torch sees no GPU here"
    assert "Traceback" not in r.stderr
    assert r.stdout == ""
