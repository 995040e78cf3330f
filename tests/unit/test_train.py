"""Fine-tuning on the tiny models with TRL's SFTTrainer: LoRA on int8 weights (tiny LLaMA; one step
of GPT-2 and XGLM) and full fine-tuning (tiny LLaMA, XGLM and GPT-2) overfit a handful of dialogs
read from a dataset folder, save what reloads and generates with its chat template, and TRL trains
on exactly chat.render's labels."""

from __future__ import annotations

import json
import math

import pytest
from pydantic import ValidationError

from ruinstruct import chat
from ruinstruct.errors import UserError
from ruinstruct.models import resolve_model, template_for
from ruinstruct.train import TrainSettings
from ruinstruct.train.sft import build_trainer, prepare_split


def _dialog(i, turns, lang="ru"):
    messages = []
    for user, answer in turns:
        messages += [{"role": "user", "content": user}, {"role": "assistant", "content": answer}]
    return {"id": f"d{i}", "source": "test", "lang": lang, "messages": messages, "origin_id": None,
            "license": "apache-2.0", "meta": {}}


DIALOGS = [
    _dialog(0, [("Привет!", "Здравствуйте, чем помочь?")]),
    _dialog(1, [("How do I boil an egg?", "Ten minutes in boiling water."), ("And a soft one?", "Six minutes.")], "en"),
    _dialog(2, [("Столица России?", "Москва.")]),
    _dialog(3, [("What is two plus two?", "Four.")], "en"),
]


def _write_dataset(folder, train, validation):
    """A dataset folder as the data flow writes it (mix.split_file names, parquet)."""
    from ruinstruct.io import write_dialogs
    from ruinstruct.mix import split_file

    write_dialogs(split_file(folder, "train"), train)
    write_dialogs(split_file(folder, "validation"), validation)
    return folder


def _overfit(method, **kw):
    # micro-batch 4 = the whole set per step, no accumulation: one step per epoch, so a few dozen
    # steps overfit it in seconds on CPU.
    return TrainSettings(**{"method": method, "micro_batch_size": 4, "grad_accum": 1, "lr_scheduler": "constant",
                            "logging_steps": 5, "save_steps": 10_000, **kw})


def _front_matter(card: str) -> dict:
    import yaml

    assert card.startswith("---\n")
    return yaml.safe_load(card.split("---\n")[1])


def _loss(model, tok, dialog, kind):
    import torch

    row = chat.render(tok, dialog, kind)
    with torch.no_grad():
        out = model(input_ids=torch.tensor([row["input_ids"]]), labels=torch.tensor([row["labels"]]))
    return float(out.loss)


def _generate(model, tok, dialog, kind):
    prompt = tok.apply_chat_template(dialog["messages"][:1], add_generation_prompt=True,
                                     return_tensors="pt", return_dict=True)
    out = model.generate(**prompt, max_new_tokens=4, do_sample=False,
                         eos_token_id=chat.end_token_id(tok, kind), pad_token_id=tok.pad_token_id)
    return prompt["input_ids"], out


# ---- settings and data preparation ---------------------------------------------------------------


def test_settings_are_the_papers():
    s = TrainSettings(method="lora")
    assert (s.lr(), s.micro_batch_size, s.grad_accum, s.adam_beta1, s.adam_beta2, s.weight_decay) == (
        3e-4, 1, 16, 0.9, 0.95, 0.0)
    assert (s.lora_r, s.lora_alpha, s.lora_dropout, s.quantization) == (16, 16, 0.05, "int8")
    assert TrainSettings(method="full").lr() == 3e-6
    assert TrainSettings(method="full", learning_rate=1e-5).lr() == 1e-5
    with pytest.raises(ValidationError):
        TrainSettings(method="lora", lora_rank=8)
    with pytest.raises(ValidationError):
        TrainSettings(method="qlora")


def test_context_policy_and_special_tokens_are_counted(tiny_dir):
    tok = chat.load_tokenizer(tiny_dir / "llama", "lora")
    long = DIALOGS[1]
    limit = max(len(chat.render(tok, long["messages"][:2], "lora")["input_ids"]),
                len(chat.render(tok, DIALOGS[0], "lora")["input_ids"]))
    assert limit < len(chat.render(tok, long, "lora")["input_ids"])
    bad = _dialog(9, [("Say </s> please", "No.")])
    rows = [DIALOGS[0], long, bad]

    rejects = []
    kept, counts = prepare_split(tok, rows, "lora", limit, "truncate", rejects)
    assert counts == {"dialogs": 3, "kept": 1, "truncated": 1, "dropped": 0, "special_tokens": 1}
    assert kept == [{"messages": DIALOGS[0]["messages"]}, {"messages": long["messages"][:2]}]
    assert [(r["id"], r["reasons"]) for r in rejects] == [("d9", ["message 0: contains special token text </s>"])]

    rejects = []
    kept, counts = prepare_split(tok, rows, "lora", limit, "drop", rejects)
    assert counts == {"dialogs": 3, "kept": 1, "truncated": 0, "dropped": 1, "special_tokens": 1}
    assert kept == [{"messages": DIALOGS[0]["messages"]}]
    assert [(r["id"], r["reasons"]) for r in rejects] == [
        ("d1", [f"longer than the context ({limit} tokens)"]), ("d9", ["message 0: contains special token text </s>"])]


@pytest.mark.parametrize(("family", "method"), [("llama", "lora"), ("xglm", "full")])
def test_trl_trains_on_chat_render_labels(tiny_dir, tmp_path, family, method):
    """The labels SFTTrainer builds (its assistant_only_loss reads the template's generation mask)
    are exactly chat.render's, for every example: one masking path."""
    spec = resolve_model(str(tiny_dir / family), family)
    trainer, info = build_trainer(spec, {"train": DIALOGS}, tmp_path, _overfit(method, max_steps=1))
    kind = template_for(method)
    assert info["template"] == kind
    assert trainer.args.assistant_only_loss is (method == "lora")
    assert len(trainer.train_dataset) == len(DIALOGS)
    for i, d in enumerate(DIALOGS):
        row = chat.render(trainer.processing_class, d, kind)
        assert trainer.train_dataset[i]["input_ids"] == row["input_ids"]
        assert trainer.train_dataset[i]["labels"] == row["labels"]
    if method == "lora":
        assert any(label == -100 for label in trainer.train_dataset[0]["labels"])


@pytest.mark.slow
@pytest.mark.parametrize(("family", "method", "quantization"),
                         [("gpt2", "lora", "int8"), ("llama", "lora", "nf4"), ("xglm", "lora", "int8")])
def test_one_step_of_each_family_and_quantization(tiny_dir, tmp_path, family, method, quantization):
    """The families and quantizations the overfitting runs below leave out take a training step:
    their LoRA targets match the quantized model, and the loss is finite."""
    import bitsandbytes as bnb

    spec = resolve_model(str(tiny_dir / family), family)
    trainer, _ = build_trainer(spec, {"train": DIALOGS}, tmp_path,
                               _overfit(method, max_steps=1, quantization=quantization, learning_rate=1e-2))
    layer = bnb.nn.Linear8bitLt if quantization == "int8" else bnb.nn.Linear4bit
    adapted = [n for n, m in trainer.model.named_modules() if hasattr(m, "lora_A") and isinstance(m.base_layer, layer)]
    assert len(adapted) == 2 * len(spec.lora_targets)  # two layers in every tiny model
    result = trainer.train()
    assert trainer.state.global_step == 1 and math.isfinite(result.training_loss)


@pytest.mark.parametrize(("family", "method"), [("llama", "lora"), ("gpt2", "full")])
def test_packed_examples_do_not_see_each_other(tiny_dir, tmp_path, family, method):
    """TRL packs the dialogs into one padding-free row; each example's per-token loss in it equals
    its loss run alone (fp32): attention stays inside the example. No token is padding."""
    import torch

    spec = resolve_model(str(tiny_dir / family), family)
    trainer, _ = build_trainer(spec, {"train": DIALOGS}, tmp_path,
                               _overfit(method, max_steps=1, packing=True, max_length=256, quantization="none"))
    ds = trainer.train_dataset
    assert sorted(n for row in ds["seq_lengths"] for n in row) == sorted(
        len(chat.render(trainer.processing_class, d, template_for(method))["input_ids"]) for d in DIALOGS)
    batch = trainer.data_collator([ds[i] for i in range(len(ds))])
    assert "attention_mask" not in batch  # padding-free: every token is real
    model = trainer.model.eval()

    def token_losses(**inputs):
        with torch.no_grad():
            logits = model(**inputs).logits.float()[0, :-1]
        return torch.nn.functional.cross_entropy(logits, inputs["input_ids"][0, 1:], reduction="none")

    packed = token_losses(**{k: v for k, v in batch.items() if k != "labels"})
    ids = batch["input_ids"][0]
    starts = batch["cu_seq_lens_q"].tolist()
    assert len(starts) == len(DIALOGS) + 1 and starts[-1] == len(ids)
    for a, b in zip(starts, starts[1:], strict=False):
        alone = token_losses(input_ids=ids[a:b][None])
        assert torch.allclose(alone, packed[a:b - 1], atol=1e-4)


def test_real_token_fraction(tiny_dir, tmp_path):
    """Unpacked batches of 4 pad to the longest dialog; packed ones hold no padding."""
    from ruinstruct.train.sft import real_token_fraction

    spec = resolve_model(str(tiny_dir / "gpt2"), "gpt2")
    tok = chat.load_tokenizer(tiny_dir / "gpt2", "full")
    lengths = [len(chat.render(tok, d, "full")["input_ids"]) for d in DIALOGS]
    trainer, _ = build_trainer(spec, {"train": DIALOGS}, tmp_path, _overfit("full", max_steps=1))
    assert real_token_fraction(trainer) == sum(lengths) / (4 * max(lengths)) < 0.9
    trainer, _ = build_trainer(spec, {"train": DIALOGS}, tmp_path,
                               _overfit("full", max_steps=1, packing=True, max_length=256))
    assert real_token_fraction(trainer) == 1.0


def test_group_by_length_batches_dialogs_of_similar_length(tiny_dir, tmp_path):
    """XGLM cannot pack; grouping by length (transformers' LengthGroupedSampler: length-sorted
    mega-batches of a quarter of the set) puts short dialogs with short ones: at most one batch per
    mega-batch mixes a short and a long dialog, where random batches mix about half the time."""
    from ruinstruct.train.sft import real_token_fraction

    spec = resolve_model(str(tiny_dir / "xglm"), "xglm")
    rows = [_dialog(i, [("Вопрос " + "очень " * (40 if i % 2 else 0) + str(i), "Ответ.")]) for i in range(64)]
    settings = {"micro_batch_size": 2, "max_steps": 1, "max_length": 512}

    def mixed_batches(trainer):
        masks = [b["attention_mask"].sum(1).tolist() for b in trainer.get_train_dataloader()]
        assert len(masks) == 32
        return sum(1 for m in masks if min(m) < 30 < max(m))

    grouped, _ = build_trainer(spec, {"train": rows}, tmp_path, _overfit("full", group_by_length=True, **settings))
    plain, _ = build_trainer(spec, {"train": rows}, tmp_path, _overfit("full", **settings))
    assert mixed_batches(grouped) <= 4 < mixed_batches(plain)
    assert real_token_fraction(grouped) > real_token_fraction(plain)
    with pytest.raises(ValidationError, match="group_by_length: applies to unpacked batches"):
        _overfit("full", group_by_length=True, packing=True)


def test_only_the_newest_checkpoints_are_kept(tiny_dir, tmp_path):
    """save_total_limit (default 2): a run saving every step keeps its last two checkpoints."""
    from ruinstruct.train.sft import train_model

    spec = resolve_model(str(tiny_dir / "llama"), "llama")
    train_model(spec, {"train": DIALOGS}, tmp_path, _overfit("full", max_steps=4, save_steps=1))
    kept = sorted(p.name for p in (tmp_path / "checkpoints").iterdir() if p.name.startswith("checkpoint-"))
    assert kept == ["checkpoint-3", "checkpoint-4"]


def test_packing_is_refused_where_attention_crosses_examples(tiny_dir, tmp_path):
    spec = resolve_model(str(tiny_dir / "xglm"), "xglm")
    with pytest.raises(UserError, match="packing: the xglm family"):
        build_trainer(spec, {"train": DIALOGS}, tmp_path, _overfit("full", packing=True))


def test_dataset_folders_that_hold_no_training_dialogs_name_the_folder(tmp_path):
    from ruinstruct.train.sft import _load_rows

    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(UserError, match=f"^{empty}: no data files"):
        _load_rows(empty)
    validation_only = tmp_path / "validation_only"
    _write_dataset(validation_only, DIALOGS, DIALOGS)
    from ruinstruct.mix import split_file

    split_file(validation_only, "train").unlink()
    with pytest.raises(UserError, match=rf"^{validation_only}: no train split with rows \(splits: validation\)"):
        _load_rows(validation_only)
    text = tmp_path / "text"
    text.mkdir()
    (text / "notes.txt").write_text("hello\n", encoding="utf-8")
    with pytest.raises(UserError, match=f"^{text}: split train holds no dialog records .*fields: text"):
        _load_rows(text)
    rows = _load_rows(_write_dataset(tmp_path / "ok", DIALOGS, DIALOGS[:1]))
    assert {k: len(v) for k, v in rows.items()} == {"train": 4, "validation": 1}


@pytest.mark.parametrize(("method", "quantization", "tags"), [
    ("lora", "int8", ["ruinstruct", "trl", "sft", "lora", "int8"]),
    ("lora", "none", ["ruinstruct", "trl", "sft", "lora"]),
    ("full", "int8", ["ruinstruct", "trl", "sft", "full"]),
])
def test_model_card_tags_name_each_thing_once(method, quantization, tags):
    from ruinstruct.models import REGISTRY
    from ruinstruct.train.sft import model_card

    counts = {"dialogs": 1, "kept": 1, "truncated": 0, "dropped": 0, "special_tokens": 0}
    summary = {"dataset": "ruinstruct", "template": template_for(method), "max_length": 16, "bf16": False,
               "run_name": "r", "data": {"train": counts}, "steps": 1, "real_token_fraction": 1.0,
               "metrics": {"first_train_loss": 2.0, "final_train_loss": 1.0, "final_eval_loss": None},
               "wall_s": 1.0, "tokens_per_s": 1.0, "peak_memory_kind": "cpu_max_rss", "peak_memory_mb": 1.0,
               "num_processes": 1}
    card = model_card(REGISTRY["llama-7b"], TrainSettings(method=method, quantization=quantization), summary)
    assert _front_matter(card)["tags"] == tags


# ---- training runs -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def llama_for_lora(tiny_dir, tmp_path_factory):
    """The tiny LLaMA with its output layer scaled up 10x. Its random lm_head (std 0.02 on 64
    dims, after a frozen RMSNorm) bounds every logit to about ±1.3, so no adapter on the frozen
    model can move the loss far from ln(vocab); a trained model's output layer has a larger scale."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    out = tmp_path_factory.mktemp("llama10")
    model = AutoModelForCausalLM.from_pretrained(tiny_dir / "llama")
    with torch.no_grad():
        model.lm_head.weight.mul_(10)
    model.save_pretrained(out)
    AutoTokenizer.from_pretrained(tiny_dir / "llama").save_pretrained(out)
    return out


@pytest.mark.slow
def test_lora_int8_overfits_saves_and_reloads(llama_for_lora, tmp_path):
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer, BitsAndBytesConfig

    from ruinstruct.stages.train import train

    data = _write_dataset(tmp_path / "final", DIALOGS, DIALOGS[2:3])
    settings = _overfit("lora", learning_rate=3e-2, max_steps=40, lora_dropout=0.0, merge=True)
    s = train(str(llama_for_lora), data, tmp_path / "models", settings, family="llama", data_name="tinyset")

    out = tmp_path / "models" / f"{llama_for_lora.name}-lora-tinyset"
    assert s["output"] == str(out) and s["steps"] == 40 and s["real_token_fraction"] < 1
    assert s["data"]["train"] == {"dialogs": 4, "kept": 4, "truncated": 0, "dropped": 0, "special_tokens": 0}
    m = s["metrics"]
    assert m["final_train_loss"] <= 0.5 * m["first_train_loss"], m
    assert (out / "train_rejects.jsonl").read_text() == ""
    assert (out / "adapter_config.json").is_file() and (out / "adapter_model.safetensors").is_file()
    assert not (out / "model.safetensors").exists() and not (out / "training_args.bin").exists()
    assert json.loads((out / "trainer_state.json").read_text())["global_step"] == 40
    assert (out / "loss.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    log = [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]
    assert [e["step"] for e in log if "loss" in e] == [1, 5, 10, 15, 20, 25, 30, 35, 40]
    assert [e["step"] for e in log if "eval_loss" in e] == [5, 10, 15, 20, 25, 30, 35, 40]
    front = _front_matter((out / "README.md").read_text())
    assert front["base_model"] == llama_for_lora.name  # a local base: its name, not this machine's path
    assert front["datasets"] == ["tinyset"] and front["library_name"] == "peft"
    assert {"lora", "int8"} <= set(front["tags"]) and front["license"] == "other"
    assert "| lora_r | 16 |" in (out / "README.md").read_text()

    tok = AutoTokenizer.from_pretrained(out)
    assert chat.template_kind(tok) == "lora"
    base = AutoModelForCausalLM.from_pretrained(
        llama_for_lora, quantization_config=BitsAndBytesConfig(load_in_8bit=True), device_map="cpu")
    model = PeftModel.from_pretrained(base, out).eval()
    # The reloaded adapter is the trained one: its loss on the validation dialog is the trainer's.
    assert math.isclose(_loss(model, tok, DIALOGS[2], "lora"), m["final_eval_loss"], abs_tol=2e-2)
    prompt, gen = _generate(model, tok, DIALOGS[0], "lora")
    assert tok.decode(prompt[0]).endswith("<s> bot\n")
    assert gen.shape[1] > prompt.shape[1] and torch.equal(gen[0, : prompt.shape[1]], prompt[0])

    # The merged export is the adapter folded into the fp32 base: same outputs as base + adapter.
    assert s["merged"] == str(out / "merged")
    merged = AutoModelForCausalLM.from_pretrained(out / "merged").eval()
    assert chat.template_kind(AutoTokenizer.from_pretrained(out / "merged")) == "lora"
    fp32 = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(llama_for_lora), out).eval()
    assert math.isclose(_loss(merged, tok, DIALOGS[2], "lora"), _loss(fp32, tok, DIALOGS[2], "lora"), abs_tol=1e-4)


@pytest.mark.slow
@pytest.mark.parametrize("family", ["llama", "xglm", "gpt2"])
def test_full_overfits_saves_and_reloads(tiny_dir, tmp_path, family):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from ruinstruct.train import train_model

    spec = resolve_model(str(tiny_dir / family), family)
    data = _write_dataset(tmp_path / "final", DIALOGS, DIALOGS[2:3])
    out = tmp_path / "run"
    s = train_model(spec, data, out, _overfit("full", learning_rate=3e-3, max_steps=30))

    m = s["metrics"]
    assert s["steps"] == 30 and s["template"] == "full"
    assert m["final_train_loss"] <= 0.5 * m["first_train_loss"], m
    assert (out / "model.safetensors").is_file() and not (out / "adapter_config.json").exists()
    assert not (out / "training_args.bin").exists() and s["merged"] is None
    front = _front_matter((out / "README.md").read_text())
    assert front["library_name"] == "transformers" and "full" in front["tags"]
    assert front["datasets"] == ["final"]

    tok = AutoTokenizer.from_pretrained(out)
    assert chat.template_kind(tok) == "full"
    model = AutoModelForCausalLM.from_pretrained(out).eval()
    assert math.isclose(_loss(model, tok, DIALOGS[2], "full"), m["final_eval_loss"], abs_tol=1e-4)
    prompt, gen = _generate(model, tok, DIALOGS[0], "full")
    assert tok.decode(prompt[0]).endswith("Assistant:\n")
    assert gen.shape[1] > prompt.shape[1] and torch.equal(gen[0, : prompt.shape[1]], prompt[0])


class _Killed(Exception):
    pass


@pytest.mark.slow
def test_a_killed_run_resumes_from_its_last_checkpoint(tiny_dir, tmp_path):
    """Killed after step 4 with a checkpoint at step 3, the rerun continues from step 3 (not 0),
    says so in its log, and then logs the same losses as a run never interrupted (optimizer,
    scheduler and RNG states restored)."""
    from transformers import TrainerCallback

    from ruinstruct.train import train_model

    class KillAfterStep4(TrainerCallback):
        def on_step_end(self, args, state, control, **kw):
            if state.global_step == 4:
                raise _Killed

    spec = resolve_model(str(tiny_dir / "gpt2"), "gpt2")
    settings = _overfit("full", learning_rate=3e-3, max_steps=6, save_steps=3, logging_steps=1,
                        lr_scheduler="linear")
    data = {"train": DIALOGS}
    with pytest.raises(_Killed):
        train_model(spec, data, tmp_path / "run", settings, callbacks=[KillAfterStep4()])
    assert (tmp_path / "run" / "checkpoints" / "checkpoint-3").is_dir()
    resumed = train_model(spec, data, tmp_path / "run", settings)
    straight = train_model(spec, data, tmp_path / "straight", settings)

    assert resumed["resumed_from"].endswith("checkpoint-3") and straight["resumed_from"] is None
    assert resumed["steps"] == straight["steps"] == 6
    log = [json.loads(line) for line in (tmp_path / "run" / "train_log.jsonl").read_text().splitlines()]
    events = [e for e in log if e.get("event") == "resumed"]
    assert len(events) == 1 and events[0]["step"] == 3
    after = log[log.index(events[0]) + 1:]
    losses = {e["step"]: e["loss"] for e in after if "loss" in e}
    assert sorted(losses) == [4, 5, 6]
    ref = [json.loads(line) for line in (tmp_path / "straight" / "train_log.jsonl").read_text().splitlines()]
    ref_losses = {e["step"]: e["loss"] for e in ref if "loss" in e}
    for step in (4, 5, 6):
        assert math.isclose(losses[step], ref_losses[step], rel_tol=1e-5), (step, losses, ref_losses)
