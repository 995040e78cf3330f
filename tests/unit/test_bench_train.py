"""bench/train.py in --quick mode: runs end to end on a small dataset folder and prints one JSON
object whose counts add up (the same real tokens packed and unpacked, the trainable parameters of
each memory variant)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def _dialog(i: int) -> dict:
    # Answers of different lengths, so that unpacked batches of two need padding.
    answer = " ".join(["Ответ номер", str(i)] + ["и ещё слово"] * (i + 1)) + "."
    return {"id": f"b{i}", "source": "test", "lang": "ru", "origin_id": None, "license": "apache-2.0", "meta": {},
            "messages": [{"role": "user", "content": f"Вопрос {i}?"}, {"role": "assistant", "content": answer}]}


@pytest.mark.slow
def test_quick_bench_prints_json_whose_counts_add_up(tmp_path, tiny_dir):
    from ruinstruct import chat
    from ruinstruct.io import write_dialogs
    from ruinstruct.mix import split_file

    dialogs = [_dialog(i) for i in range(8)]
    write_dialogs(split_file(tmp_path / "data", "train"), dialogs)
    write_dialogs(split_file(tmp_path / "data", "validation"), dialogs[:2])

    env = {**os.environ, "RUINSTRUCT_TINY_DIR": str(tiny_dir), "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    r = subprocess.run([sys.executable, str(REPO / "bench/train.py"), "--quick", "--data", str(tmp_path / "data")],
                       capture_output=True, text=True, env=env, cwd=REPO)
    assert r.returncode == 0, r.stderr[-3000:]
    out = json.loads(r.stdout)

    assert out["bench"] == "train" and out["quick"] is True and out["device"] == "cpu"
    assert {"torch", "transformers", "bitsandbytes"} <= set(out["versions"])

    # Both epochs train on every dialog once: the real tokens are the rendered dialogs' tokens.
    tok = chat.load_tokenizer(str(tiny_dir / "llama"), "lora")
    expected = sum(len(chat.render(tok, d, "lora")["input_ids"]) for d in dialogs)
    thr = out["throughput"]
    packed, unpacked = thr["packed"], thr["unpacked"]
    assert thr["train_dialogs"] == 8 and thr["same_real_tokens"] is True
    assert packed["real_tokens"] == unpacked["real_tokens"] == expected
    assert packed["positions"] == expected and packed["real_token_fraction"] == 1.0
    assert unpacked["micro_batch"] == 2 and unpacked["steps"] == 4
    assert unpacked["positions"] > expected
    assert unpacked["real_token_fraction"] == round(expected / unpacked["positions"], 4)
    assert unpacked["sft_real_token_fraction"] == unpacked["real_token_fraction"]
    assert packed["tokens_per_s"] > 0 and unpacked["tokens_per_s"] > 0

    mem = out["memory"]
    n_params = mem["model"]["parameters"]
    assert mem["full"]["trainable_parameters"] == n_params
    # LoRA r=16 on the 4 attention linears (128 -> 128) of 2 layers: 2 * 4 * 16 * (128 + 128).
    assert mem["lora"]["trainable_parameters"] == 2 * 4 * 16 * (128 + 128)
    for variant in ("full", "lora"):
        m = mem[variant]
        assert m["steps"] == 1 and m["peak_kind"] == "cpu_max_rss"
        assert m["peak_mb"] >= m["baseline_rss_mb"] + m["peak_above_baseline_mb"] - 0.2  # rounding
    ratios = mem["ratio_lora_over_full"]
    assert ratios["peak_above_baseline_mb"] == round(
        mem["lora"]["peak_above_baseline_mb"] / mem["full"]["peak_above_baseline_mb"], 4)
    assert out["targets_met"]["packed_real_token_fraction"] is True
    judged = out["targets"]["memory_ratio_judged_on"]
    assert judged == ("peak_anon_above_baseline_mb" if mem["full"]["peak_kind"] == "cpu_max_rss" else "peak_above_baseline_mb")
    assert out["targets_met"]["lora_int8_over_full_peak_memory"] == (ratios[judged] <= 0.5)
