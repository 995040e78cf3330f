"""`ruinstruct train`: --dry-run prints the exact launch command and DeepSpeed's estimate without
training; a run streams the training process's output and says where the model is; expected
errors are one line with exit 2; SIGTERM leaves no training process behind."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from ruinstruct.io import write_dialogs
from ruinstruct.mix import split_file
from ruinstruct.stages.train import DEFAULT_DEEPSPEED
from tests.flows.test_cli import run_cli
from tests.flows.test_signals import assert_nothing_left, wait_for

REPO = Path(__file__).resolve().parents[2]


def dialog(i: int) -> dict:
    return {"id": f"t:{i}", "source": "t", "lang": "en", "origin_id": None, "license": "MIT", "meta": {},
            "messages": [{"role": "user", "content": f"What is {i} plus {i}?"},
                         {"role": "assistant", "content": f"It is {2 * i}."}]}


@pytest.fixture
def work(tmp_path, tiny_dir):
    """A dataset folder (a run's data/final) and a profile with tiny models and short settings."""
    final = tmp_path / "run" / "data" / "final"
    write_dialogs(split_file(final, "train"), [dialog(i) for i in range(6)])
    write_dialogs(split_file(final, "validation"), [dialog(9)])
    short = {"max_steps": 2, "grad_accum": 1, "micro_batch_size": 2, "logging_steps": 1, "save_steps": 100}
    (tmp_path / "c.yaml").write_text(yaml.safe_dump({
        "name": "c", "data": {"sources": [{"name": "d", "kind": "dolly", "path": "d.jsonl"}]},
        "training": {"models": [{"name": "tl", "hf_id": str(tiny_dir / "llama"), "family": "llama"},
                                {"name": "tx", "hf_id": str(tiny_dir / "xglm"), "family": "xglm"}],
                     "runs": [{"model": ["tl", "tx"], "method": ["lora", "full"]}],
                     "lora": short, "full": {**short, "max_steps": 3}},
    }))
    return tmp_path


def test_dry_run_prints_the_launch_command_and_the_estimate(work):
    out = work / "out-full"
    res = run_cli("train", "--config", "c.yaml", "--model", "tx", "--method", "full", "--data", "run/data/final",
                  "--output", out, "--dry-run", cwd=work)
    assert res.returncode == 0, res.stderr
    request = out / "train_request.json"
    lines = res.stdout.splitlines()
    assert lines[0] == f"request: {request}"
    assert lines[1] == (f"{sys.executable} -m torch.distributed.run --standalone --nproc_per_node=1 "
                        f"-m ruinstruct.train.launch {request}")
    assert any(line.startswith("tx (") and "DeepSpeed ZeRO-3 estimate for 1 GPU(s)" in line for line in lines)
    assert "per GPU" in res.stdout
    req = json.loads(request.read_text())
    assert (req["model"]["name"], req["data_name"], req["data_dir"]) == ("tx", "run", str(work / "run/data/final"))
    assert (req["settings"]["max_steps"], req["settings"]["deepspeed"]) == (3, str(DEFAULT_DEEPSPEED))
    assert not (out / "train_summary.json").exists() and sorted(p.name for p in out.iterdir()) == ["train_request.json"]


def test_dry_run_of_lora_is_one_plain_process(work, tiny_dir):
    out = work / "out-lora"
    res = run_cli("train", "--model", tiny_dir / "gpt2", "--family", "gpt2", "--method", "lora",
                  "--data", "run/data/final", "--data-name", "mine", "--output", out, "--dry-run", cwd=work)
    assert res.returncode == 0, res.stderr
    assert res.stdout.splitlines()[1] == f"{sys.executable} -m ruinstruct.train.launch {out / 'train_request.json'}"
    req = json.loads((out / "train_request.json").read_text())
    assert (req["model"]["family"], req["data_name"], req["settings"]["deepspeed"]) == ("gpt2", "mine", None)
    assert req["settings"]["lora_r"] == 16 and req["settings"]["learning_rate"] is None  # the paper's defaults


ERRORS = {
    "unknown model": (["--model", "llama-7", "--method", "lora", "--data", "run/data/final"],
                      "--model llama-7: not a registered model"),
    "bad method": (["--model", "tl", "--method", "qlora", "--data", "run/data/final"],
                   "--method qlora: expected full or lora"),
    "missing data": (["--model", "tl", "--method", "lora", "--data", "nowhere"], "--data nowhere: dataset folder not found"),
    "data is a file": (["--model", "tl", "--method", "lora", "--data", "c.yaml"],
                       "--data c.yaml: a file, not a dataset folder"),
    "missing model folder": (["--model", "./no-model", "--family", "llama", "--method", "lora", "--data",
                              "run/data/final"], "--model ./no-model: not a model folder (no such folder)"),
    "bad family": (["--model", "./m", "--family", "bert", "--method", "lora", "--data", "run/data/final"],
                   "--family bert: unknown family 'bert'"),
    "family against the config": (["--model", "tl", "--family", "gpt2", "--method", "lora", "--data", "run/data/final"],
                                  "--family gpt2: the config's training.models[0] (tl) says family llama"),
}


@pytest.mark.parametrize("case", sorted(ERRORS))
def test_expected_errors_are_one_line_with_exit_2(work, case):
    args, named = ERRORS[case]
    res = run_cli("train", "--config", "c.yaml", *args, "--output", "o", cwd=work)
    lines = [line for line in res.stderr.splitlines() if line.strip()]
    assert res.returncode == 2, res.stdout + res.stderr
    assert len(lines) == 1 and named in lines[0], res.stderr
    assert "Traceback" not in res.stderr + res.stdout


@pytest.mark.slow
def test_train_streams_the_log_and_says_where_the_model_is(work):
    out = work / "models" / "tl-lora-run"
    res = run_cli("train", "--config", "c.yaml", "--model", "tl", "--method", "lora", "--data", "run/data/final",
                  "--output", out, cwd=work, env={"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"})
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    lines = res.stdout.splitlines()
    assert "step 2/2 eval_loss" in res.stdout and any(line.startswith("step 1/2 loss") for line in lines)
    assert any(line.startswith("trained tl-lora-run: 2 steps") for line in lines)
    assert lines[-1] == f"model: {out}"
    assert (out / "adapter_model.safetensors").is_file()


@pytest.mark.slow
def test_a_training_error_exits_2_with_its_line(work, tiny_dir):
    raw = yaml.safe_load((work / "c.yaml").read_text())
    raw["training"]["models"][0]["lora_targets"] = ["qkv_proj"]
    (work / "bad.yaml").write_text(yaml.safe_dump(raw))
    res = run_cli("train", "--config", "bad.yaml", "--model", "tl", "--method", "lora", "--data", "run/data/final",
                  "--output", "o", cwd=work, env={"HF_HUB_OFFLINE": "1"})
    assert res.returncode == 2
    err = [line for line in res.stderr.splitlines() if line.strip()]
    assert err[-1].startswith("train o: models.tl.lora_targets: 'qkv_proj' matches no module"), res.stderr
    assert "Traceback" not in res.stderr + res.stdout


@pytest.mark.slow
def test_sigterm_leaves_no_training_process_behind(work):
    raw = yaml.safe_load((work / "c.yaml").read_text())
    raw["training"]["lora"].update(max_steps=100_000, save_steps=100_000)
    (work / "long.yaml").write_text(yaml.safe_dump(raw))
    out = work / "long"
    proc = subprocess.Popen(
        [sys.executable, "-m", "ruinstruct.cli", "train", "--config", "long.yaml", "--model", "tl", "--method", "lora",
         "--data", "run/data/final", "--output", str(out)],
        cwd=work, env={**os.environ, "HF_HUB_OFFLINE": "1"}, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        text=True, start_new_session=True)
    lines: list[str] = []

    def training() -> bool:
        line = proc.stdout.readline()
        lines.append(line)
        return line.startswith("step ")

    wait_for(training, proc, "a training step")
    os.kill(proc.pid, signal.SIGTERM)
    rest, _ = proc.communicate(timeout=30)
    assert proc.returncode == 128 + signal.SIGTERM, "".join(lines) + rest
    assert_nothing_left(proc.pid)  # the training process (and its children) went with the CLI
