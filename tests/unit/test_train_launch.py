"""The training process (ruinstruct.train.launch): the request file, the launch command, the worker's
output and exit codes, DeepSpeed ZeRO-3 over two gloo processes, and DeepSpeed's memory estimate."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from ruinstruct.models import resolve_model
from ruinstruct.paths import TRAIN_SUMMARY
from ruinstruct.train import TrainSettings
from ruinstruct.train.launch import REQUEST_FILE, TrainRequest, launch_command, read_request, write_request

from .test_train import DIALOGS, _write_dataset

REPO = Path(__file__).resolve().parents[2]
ZERO3 = REPO / "configs" / "deepspeed" / "zero3.json"


def _request(tmp_path, spec, method="lora", num_processes=1, **settings):
    s = TrainSettings(**{"method": method, "micro_batch_size": 1, "grad_accum": 2, "max_steps": 3, "logging_steps": 1,
                         "save_steps": 10_000, "learning_rate": 1e-3, "lr_scheduler": "constant", **settings})
    return TrainRequest(model=spec, data_dir=str(tmp_path / "final"), out_dir=str(tmp_path / "run"),
                        data_name="tinyset", settings=s, num_processes=num_processes)


def _worker(request_file, cwd, timeout=600):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1",
           "TORCH_EXTENSIONS_DIR": os.environ.get("TORCH_EXTENSIONS_DIR", str(REPO / ".cache" / "torch_extensions"))}
    req = read_request(request_file)
    return subprocess.run(launch_command(req, request_file), cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=timeout)


def test_launch_commands(tmp_path, tiny_dir):
    spec = resolve_model(str(tiny_dir / "llama"), "llama")
    f = tmp_path / "run" / REQUEST_FILE
    worker = ["-m", "ruinstruct.train.launch", str(f)]
    assert launch_command(_request(tmp_path, spec), f) == [sys.executable, *worker]
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone"]
    full2 = _request(tmp_path, spec, "full", 2, deepspeed=str(ZERO3))
    assert launch_command(full2, f) == [*torchrun, "--nproc_per_node=2", *worker]
    # DeepSpeed needs a process group even for one process; plain DDP needs torchrun for two
    full1 = _request(tmp_path, spec, "full", 1, deepspeed=str(ZERO3))
    assert launch_command(full1, f) == [*torchrun, "--nproc_per_node=1", *worker]
    assert launch_command(_request(tmp_path, spec, "lora", 2), f) == [*torchrun, "--nproc_per_node=2", *worker]


def test_request_round_trips_exactly(tmp_path, tiny_dir):
    spec = resolve_model(str(tiny_dir / "xglm"), "xglm")
    req = _request(tmp_path, spec, "full", 2, deepspeed=str(ZERO3), warmup_steps=3, bf16=False)
    path = write_request(req)
    assert path == tmp_path / "run" / REQUEST_FILE
    assert read_request(path) == req
    assert json.loads(path.read_text()) == req.model_dump(mode="json")
    assert [p.name for p in path.parent.iterdir()] == [REQUEST_FILE]  # no temporary file left


def test_lora_with_deepspeed_is_refused_naming_the_field():
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="deepspeed: DeepSpeed ZeRO-3 is for method full"):
        TrainSettings(method="lora", deepspeed=str(ZERO3))


def test_a_bad_request_names_the_file(tmp_path):
    from ruinstruct.errors import UserError

    bad = tmp_path / REQUEST_FILE
    bad.write_text('{"model": {}}')
    with pytest.raises(UserError, match=f"{bad}: not a training request: "):
        read_request(bad)


def test_worker_on_a_missing_data_folder_exits_2_with_one_line(tmp_path, tiny_dir):
    spec = resolve_model(str(tiny_dir / "llama"), "llama")
    req = _request(tmp_path, spec)
    p = _worker(write_request(req), tmp_path, timeout=120)
    assert p.returncode == 2
    assert p.stderr.strip().splitlines() == [f"dataset folder not found: {tmp_path / 'final'}"]
    assert "Traceback" not in p.stdout + p.stderr


def _progress(stdout, steps):
    lines = [line for line in stdout.splitlines() if line.startswith(("step ", "trained "))]
    loss = [line for line in lines if line.startswith("step ") and " loss " in line]
    assert [line.split()[1] for line in loss] == [f"{i}/{steps}" for i in range(1, steps + 1)]
    assert all(" lr " in line for line in loss)
    assert lines[-1].startswith("trained ")
    return lines[-1]


@pytest.mark.slow
def test_single_process_lora_through_the_worker(tmp_path, tiny_dir):
    spec = resolve_model(str(tiny_dir / "llama"), "llama")
    _write_dataset(tmp_path / "final", DIALOGS, DIALOGS[2:3])
    req = _request(tmp_path, spec)
    p = _worker(write_request(req), tmp_path)
    assert p.returncode == 0, p.stderr[-3000:]
    out = tmp_path / "run"
    assert _progress(p.stdout, 3).endswith(f"outputs in {out}")
    s = json.loads((out / TRAIN_SUMMARY).read_text())
    assert s["steps"] == 3 and s["dataset"] == "tinyset" and s["run_name"] == f"{spec.name}-lora-tinyset"
    assert s["tokens_per_s"] > 0 and s["peak_memory_mb"] > 0 and s["peak_memory_kind"] == "cpu_max_rss"
    assert s["num_processes"] == 1 and (out / "adapter_model.safetensors").is_file()


@pytest.mark.slow
def test_zero3_full_fine_tuning_on_two_gloo_processes(tmp_path, tiny_dir):
    """torchrun starts two CPU processes; DeepSpeed ZeRO-3 (configs/deepspeed/zero3.json) partitions
    the tiny LLaMA over them (gloo). Rank 0 alone prints progress and writes the run's files; the
    saved model, gathered from both shards, is the trained one: reloaded in one plain process its
    validation loss is the trainer's, and it generates with its chat template."""
    import math

    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from ruinstruct import chat

    from .test_train import _generate, _loss

    spec = resolve_model(str(tiny_dir / "llama"), "llama")
    _write_dataset(tmp_path / "final", DIALOGS, DIALOGS[2:3])
    req = _request(tmp_path, spec, "full", 2, deepspeed=str(ZERO3), max_steps=3)
    request_file = write_request(req)
    assert launch_command(req, request_file)[2] == "torch.distributed.run"
    p = _worker(request_file, tmp_path)
    assert p.returncode == 0, p.stderr[-3000:]
    out = tmp_path / "run"
    last = _progress(p.stdout, 3)
    assert last.startswith(f"trained {spec.name}-full-tinyset: 3 steps") and last.endswith(f"outputs in {out}")
    assert p.stdout.count("trained ") == 1  # rank 1 prints nothing

    s = json.loads((out / TRAIN_SUMMARY).read_text())
    assert s["num_processes"] == 2 and s["deepspeed"] == str(ZERO3) and s["steps"] == 3
    assert s["tokens_per_s"] > 0 and s["peak_memory_mb"] > 0
    state = json.loads((out / "trainer_state.json").read_text())
    assert state["global_step"] == 3
    # micro-batch 1 x accumulation 2 x 2 processes: each step sees all 4 dialogs
    assert state["num_input_tokens_seen"] == 3 * sum(
        len(chat.render(AutoTokenizer.from_pretrained(out), d, "full")["input_ids"]) for d in DIALOGS)

    tok = AutoTokenizer.from_pretrained(out)
    assert chat.template_kind(tok) == "full"
    model = AutoModelForCausalLM.from_pretrained(out).eval()
    base = AutoModelForCausalLM.from_pretrained(tiny_dir / "llama").eval()
    assert all(a.shape == b.shape for a, b in zip(model.parameters(), base.parameters(), strict=True))
    assert math.isclose(_loss(model, tok, DIALOGS[2], "full"), s["metrics"]["final_eval_loss"], abs_tol=1e-4)
    assert not math.isclose(_loss(base, tok, DIALOGS[2], "full"), s["metrics"]["final_eval_loss"], abs_tol=1e-3)
    prompt, gen = _generate(model, tok, DIALOGS[0], "full")
    assert tok.decode(prompt[0]).endswith("Assistant:\n")
    assert gen.shape[1] > prompt.shape[1] and torch.equal(gen[0, : prompt.shape[1]], prompt[0])


def test_memory_estimate_counts_the_tiny_model(tiny_dir):
    """DeepSpeed's estimate from the config alone (meta device); the counts are the real model's."""
    from deepspeed.runtime.zero.stage3 import model_to_params
    from transformers import AutoModelForCausalLM

    from ruinstruct.train.launch import count_parameters, memory_estimate

    spec = resolve_model(str(tiny_dir / "llama"), "llama")
    total, largest = model_to_params(AutoModelForCausalLM.from_pretrained(tiny_dir / "llama"))
    assert count_parameters(spec) == (total, largest)
    lines = memory_estimate(spec, 2)
    assert lines[0] == (f"{spec.name} ({spec.hf_id}): {total:,} parameters, largest layer {largest:,}; "
                        "DeepSpeed ZeRO-3 estimate for 2 GPU(s) on one node:")
    assert "HW: Setup with 1 node, 2 GPUs per node." in lines
    per_gpu = (4 * largest + int(18 * total / 2)) / 2**20  # DeepSpeed's formula without offload
    assert lines[-1].startswith(f"configs/deepspeed/zero3.json (no offload, zero_init=1): {per_gpu:,.1f} MiB per GPU")


def test_memory_estimate_without_a_config_is_one_line():
    """Offline (conftest), a hub id that is in no cache: one line, no traceback."""
    from ruinstruct.models import ModelSpec
    from ruinstruct.train.launch import memory_estimate

    spec = ModelSpec(name="absent", hf_id="example-org/absent-model", family="llama", context_length=2048)
    assert memory_estimate(spec, 4) == [
        "memory estimate: example-org/absent-model: its config.json is in no local folder and not in the "
        "Hugging Face cache (OSError); no estimate without it"]


def test_memory_estimate_of_a_registry_model_offline_uses_its_counts():
    """A registry model whose config.json is not cached (offline) is estimated from the registry's
    parameter counts, and says so; the MiB line is DeepSpeed's formula on those counts."""
    from ruinstruct.models import REGISTRY
    from ruinstruct.train.launch import memory_estimate

    spec = REGISTRY["llama2-7b"]
    lines = memory_estimate(spec, 8)
    assert lines[0] == ("llama2-7b (meta-llama/Llama-2-7b-hf): 6,738,415,616 parameters, largest layer "
                        "131,072,000 (the registry's counts: config.json not at hand); DeepSpeed ZeRO-3 "
                        "estimate for 8 GPU(s) on one node:")
    per_gpu = (4 * 131_072_000 + int(18 * 6_738_415_616 / 8)) / 2**20
    assert lines[-1].startswith(f"configs/deepspeed/zero3.json (no offload, zero_init=1): {per_gpu:,.1f} MiB per GPU")


@pytest.mark.parametrize(("name", "shape"), [
    ("llama-7b", {"hidden_size": 4096, "intermediate_size": 11008, "num_hidden_layers": 32, "num_attention_heads": 32}),
    ("llama2-13b", {"hidden_size": 5120, "intermediate_size": 13824, "num_hidden_layers": 40, "num_attention_heads": 40}),
])
def test_registry_counts_are_the_architectures(name, shape):
    """The LLaMA registry counts equal the count of the published architecture (built on the meta
    device: no weights), as count_parameters would take them from its config.json."""
    import torch
    from transformers import AutoModelForCausalLM, LlamaConfig

    from ruinstruct.models import REGISTRY
    from ruinstruct.train.launch import parameter_counts

    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(LlamaConfig(vocab_size=32000, **shape))
    assert parameter_counts(model) == (REGISTRY[name].parameters, REGISTRY[name].largest_layer_parameters)


@pytest.mark.slow
def test_zero3_on_one_process_trains_like_the_plain_run(tmp_path, tiny_dir):
    """One process under ZeRO-3 (partitioned over a group of one, the Trainer's torch AdamW) logs the
    same losses, step by step, as the plain in-process run of the same settings."""
    import math

    from ruinstruct.train import train_model

    spec = resolve_model(str(tiny_dir / "xglm"), "xglm")
    _write_dataset(tmp_path / "final", DIALOGS, DIALOGS[2:3])
    req = _request(tmp_path, spec, "full", 1, deepspeed=str(ZERO3), max_steps=4)
    p = _worker(write_request(req), tmp_path)
    assert p.returncode == 0, p.stderr[-3000:]
    plain = train_model(spec, tmp_path / "final", tmp_path / "plain", req.settings.model_copy(update={"deepspeed": None}))

    def losses(out):
        rows = [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]
        return [(r["step"], r["loss"]) for r in rows if "loss" in r]

    zero3 = losses(tmp_path / "run")
    assert [s for s, _ in zero3] == [1, 2, 3, 4] and [s for s, _ in losses(tmp_path / "plain")] == [1, 2, 3, 4]
    for (_, a), (_, b) in zip(zero3, losses(tmp_path / "plain"), strict=True):
        assert math.isclose(a, b, rel_tol=1e-4), (zero3, losses(tmp_path / "plain"))
    s = json.loads((tmp_path / "run" / TRAIN_SUMMARY).read_text())
    assert math.isclose(s["metrics"]["final_eval_loss"], plain["metrics"]["final_eval_loss"], rel_tol=1e-4)
