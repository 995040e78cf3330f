"""The `training:` section: the experiment matrix expands exactly, and every mistake is an error
that names its field (a typo'd model, a bad method, an unknown dataset, a duplicate cell, an
unknown key, a bad setting)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from ruinstruct.config import ConfigError, load_config

REPO = Path(__file__).resolve().parents[2]
DATA = {"sources": [{"name": "d", "kind": "dolly", "path": "d.jsonl"}]}


def profile(tmp_path: Path, training) -> Path:
    p = tmp_path / "profiles" / "p.yaml"
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(yaml.safe_dump({"name": "p", "data": DATA, "training": training}))
    return p


def error_lines(tmp_path: Path, training) -> list[str]:
    with pytest.raises(ConfigError) as e:
        load_config(profile(tmp_path, training))
    lines = str(e.value).splitlines()
    assert lines[0].endswith("p.yaml: invalid config")
    return [line.strip() for line in lines[1:]]


def test_a_config_without_training_is_data_only(tmp_path):
    p = tmp_path / "p.yaml"
    p.write_text(yaml.safe_dump({"name": "p", "data": DATA}))
    assert load_config(p).training is None


def test_matrix_expands_as_a_product_in_the_order_written(tmp_path):
    cfg = load_config(profile(tmp_path, {
        "datasets": {"saiga": "s"},
        "runs": [{"model": ["llama-7b", "xglm-4.5b"], "method": ["lora", "full"], "data": ["saiga", "ruinstruct"]},
                 {"model": "llama2-7b", "method": "lora"}],
    }))
    assert cfg.training.cells() == [
        (0, "llama-7b", "lora", "saiga"), (0, "llama-7b", "lora", "ruinstruct"),
        (0, "llama-7b", "full", "saiga"), (0, "llama-7b", "full", "ruinstruct"),
        (0, "xglm-4.5b", "lora", "saiga"), (0, "xglm-4.5b", "lora", "ruinstruct"),
        (0, "xglm-4.5b", "full", "saiga"), (0, "xglm-4.5b", "full", "ruinstruct"),
        (1, "llama2-7b", "lora", "ruinstruct"),  # data defaults to this run's own dataset
    ]


def test_paper_profile_holds_table_1(tmp_path):
    cfg = load_config(REPO / "configs" / "paper.yaml")
    cells = {(m, k, d) for _, m, k, d in cfg.training.cells()}
    lora = {"llama-7b", "llama2-7b", "llama2-13b", "xglm-4.5b", "rugpt3.5-13b"}
    assert cells == {(m, "lora", d) for m in lora for d in ("saiga", "ruinstruct")} | {
        ("xglm-4.5b", "full", "ruinstruct")}
    assert cfg.training.datasets["saiga"] == str((REPO / "runs/paper-saiga/data/final").resolve())


def test_tiny_profile_trains_llama_lora_and_xglm_full():
    cfg = load_config(REPO / "configs" / "tiny.yaml")
    assert [c[1:] for c in cfg.training.cells()] == [("tiny-llama", "lora", "ruinstruct"),
                                                       ("tiny-xglm", "full", "ruinstruct")]
    assert {m.name: (m.family, m.hf_id) for m in cfg.training.models} == {
        "tiny-llama": ("llama", str(REPO / ".cache/tiny/llama")), "tiny-xglm": ("xglm", str(REPO / ".cache/tiny/xglm"))}


def test_paths_resolve_against_the_profile_and_hub_ids_stay(tmp_path):
    cfg = load_config(profile(tmp_path, {
        "models": [{"name": "mine", "hf_id": "../models/m", "family": "llama"},
                   {"name": "hub", "hf_id": "org/model", "family": "gpt2", "revision": "abc"}],
        "datasets": {"other": "../other/final", "abs": "/data/x"},
        "deepspeed": "ds.json",
        "runs": [{"model": ["mine", "hub"], "method": "lora", "data": ["other", "abs"]}],
    }))
    t = cfg.training
    assert [m.hf_id for m in t.models] == [str(tmp_path / "models/m"), "org/model"]
    assert t.datasets == {"other": str(tmp_path / "other/final"), "abs": "/data/x"}
    assert t.deepspeed == str(tmp_path / "profiles/ds.json")


def test_settings_layer_paper_defaults_method_section_and_entry(tmp_path):
    cfg = load_config(profile(tmp_path, {
        "lora": {"max_steps": 7, "lora_r": 8},
        "runs": [{"model": "llama-7b", "method": "lora", "settings": {"lora_r": 4, "learning_rate": 1e-3}},
                 {"model": "llama2-7b", "method": ["lora", "full"]}],
    }))
    t = cfg.training
    first = t.settings_for("lora", t.runs[0])
    assert (first.method, first.max_steps, first.lora_r, first.lr(), first.grad_accum) == ("lora", 7, 4, 1e-3, 16)
    second = t.settings_for("lora", t.runs[1])
    assert (second.max_steps, second.lora_r, second.lr()) == (7, 8, 3e-4)
    full = t.settings_for("full", t.runs[1])
    assert (full.method, full.max_steps, full.lr(), full.deepspeed) == ("full", -1, 3e-6, None)


@pytest.mark.parametrize(
    ("training", "expected"),
    [
        ({"runs": [{"model": "llama-7b", "method": "lora"}, {"model": "llama-7", "method": "lora"}]},
         "training.runs[1].model: 'llama-7' is not a registered model"),
        ({"runs": [{"model": "llama-7b", "method": ["lora", "ful"]}]},
         "training.runs[0].method: unknown method 'ful': expected full or lora"),
        ({"runs": [{"model": "llama-7b", "method": "lora", "data": "saiga"}]},
         "training.runs[0].data: unknown dataset 'saiga': expected ruinstruct or a training.datasets name"),
        ({"runs": [{"model": ["llama-7b", "xglm-4.5b"], "method": "lora"}, {"model": "xglm-4.5b", "method": "lora"}]},
         "training.runs[1]: cell xglm-4.5b-lora-ruinstruct (model-method-data) is also in runs[0]"),
        ({"runs": [{"modle": "llama-7b", "method": "lora"}]}, "training.runs[0].modle: Extra inputs are not permitted"),
        ({"lora": {"lr": 1e-4}, "runs": [{"model": "llama-7b", "method": "lora"}]},
         "training.lora.lr: Extra inputs are not permitted"),
        ({"runs": [{"model": "llama-7b", "method": "lora", "settings": {"lora_rank": 8}}]},
         "training.runs[0].settings.lora_rank: not a training setting"),
        ({"runs": [{"model": "llama-7b", "method": "lora", "settings": {"learning_rate": -1}}]},
         "training.runs[0].settings.learning_rate: Input should be greater than 0"),
        ({"runs": [{"model": "llama-7b", "method": "lora", "settings": {"deepspeed": "x.json"}}]},
         "training.runs[0].settings.deepspeed: not a training setting"),
        ({"models": [{"name": "llama-7b", "hf_id": "x/y", "family": "llama"}], "runs": [{"model": "llama-7b",
                                                                                          "method": "lora"}]},
         "training.models[0].name: 'llama-7b' is a registered model"),
        ({"models": [{"name": "m", "hf_id": "x/y", "family": "bert"}], "runs": [{"model": "m", "method": "lora"}]},
         "training.models[0].family: Input should be 'llama', 'xglm' or 'gpt2'"),
        ({"datasets": {"ruinstruct": "x"}, "runs": [{"model": "llama-7b", "method": "lora"}]},
         "training.datasets.ruinstruct: ruinstruct is this run's own data/final"),
        ({"runs": []}, "training.runs: List should have at least 1 item"),
        ({"runs": [{"model": "llama-7b", "method": "lora", "num_processes": 0}]},
         "training.runs[0].num_processes: Input should be greater than or equal to 1"),
    ],
    ids=["typo-model", "bad-method", "unknown-dataset", "duplicate-cell", "unknown-key", "unknown-setting",
         "unknown-override", "bad-override", "deepspeed-per-entry", "registry-name-reused", "bad-family",
         "own-dataset-redefined", "no-runs", "zero-processes"],
)
def test_mistakes_name_the_field(tmp_path, training, expected):
    lines = error_lines(tmp_path, training)
    assert any(line.startswith(expected) for line in lines), lines


def test_a_config_model_is_known_to_the_matrix(tmp_path):
    cfg = load_config(profile(tmp_path, {
        "models": [{"name": "mine", "hf_id": "./m", "family": "llama", "lora_targets": ["q_proj"]}],
        "runs": [{"model": ["mine", "llama-7b"], "method": "lora"}],
    }))
    assert [c[1] for c in cfg.training.cells()] == ["mine", "llama-7b"]
    assert cfg.training.models[0].lora_targets == ["q_proj"]


def test_deepspeed_can_be_switched_off(tmp_path):
    cfg = load_config(profile(tmp_path, {"deepspeed": False, "runs": [{"model": "xglm-4.5b", "method": "full"}]}))
    assert cfg.training.deepspeed is False
