"""Mixing: dedup, caps, split, license refusal, dataset card, determinism."""

from __future__ import annotations

import pytest

from ruinstruct.config import MixConfig, SourceConfig
from ruinstruct.data_report import CountMismatch, build_report
from ruinstruct.io import read_dialogs, read_jsonl
from ruinstruct.mix import LicenseError, check_commercial, mix
from ruinstruct.schema import make_dialog


def dlg(src, i, text, lang="en"):
    return make_dialog(
        id=f"{src}:{i}" + (":ru" if lang == "ru" else ""), source=src, lang=lang, license="Apache-2.0",
        origin_id=f"{src}:{i}" if lang == "ru" else None,
        messages=[{"role": "user", "content": text}, {"role": "assistant", "content": "answer " + text}],
    )


SRC_A = SourceConfig(name="a", kind="chip2", path="x")
SRC_B = SourceConfig(name="b", kind="dolly", path="x")
SAIGA = SourceConfig(name="saiga/x", kind="saiga", path="x")


def groups():
    a = [dlg("a", i, f"question {i}") for i in range(10)] + [dlg("a", i, f"вопрос {i}", "ru") for i in range(10)]
    a.append(dlg("a", 99, "Question  0"))  # duplicate of a:0 after normalisation
    b = [dlg("b", i, f"b question {i}") for i in range(5)]
    return [(SRC_A, a), (SRC_B, b)]


def test_mix_counts_add_up_and_dedup(tmp_path):
    s = mix(groups(), MixConfig(seed=1, validation_fraction=0.2), tmp_path / "final", tmp_path / "mix.rejects.jsonl")
    assert s["splits"] == {"train": 20, "validation": 5}
    assert s["per_source"]["a"]["in_en"] == 11
    assert s["per_source"]["a"]["duplicate_en"] == 1
    rejects = read_jsonl(tmp_path / "mix.rejects.jsonl")
    assert [r["id"] for r in rejects] == ["a:99"]
    assert "duplicate" in rejects[0]["reasons"][0] and "a:0" in rejects[0]["reasons"][0]
    train = read_dialogs(tmp_path / "final/data/train-00000-of-00001.parquet")
    val = read_dialogs(tmp_path / "final/data/validation-00000-of-00001.parquet")
    ids = [d["id"] for d in train + val]
    assert len(ids) == len(set(ids)) == 25
    card = (tmp_path / "final/README.md").read_text()
    assert "license:\n- apache-2.0\n- cc-by-sa-3.0\n" in card and "CC-BY-SA-3.0" in card  # dolly as stated
    assert "| a | Apache-2.0 | yes | 10 | 10 | 1 | 0 |" in card


def test_mix_is_deterministic_and_seed_matters(tmp_path):
    for name, seed in (("x", 3), ("y", 3), ("z", 4)):
        mix(groups(), MixConfig(seed=seed), tmp_path / name, tmp_path / f"{name}.rej.jsonl")
    x = (tmp_path / "x/data/train-00000-of-00001.parquet").read_bytes()
    assert x == (tmp_path / "y/data/train-00000-of-00001.parquet").read_bytes()
    assert x != (tmp_path / "z/data/train-00000-of-00001.parquet").read_bytes()


def test_caps_and_ratios(tmp_path):
    s = mix(groups(), MixConfig(caps={"a": 4}, ratios={"b": 0.4}, validation_fraction=0), tmp_path / "f",
            tmp_path / "r.jsonl")
    a, b = s["per_source"]["a"], s["per_source"]["b"]
    assert a["train_en"] + a["train_ru"] == 4
    assert a["capped_en"] + a["capped_ru"] == 20 - 4
    assert b["train_en"] == 2 and b["capped_en"] == 3
    with pytest.raises(ValueError, match="nope"):
        mix(groups(), MixConfig(caps={"nope": 1}), tmp_path / "g", tmp_path / "r2.jsonl")


def test_commercial_only_refuses_saiga(tmp_path):
    with pytest.raises(LicenseError, match="saiga/x"):
        check_commercial([SRC_A, SAIGA], MixConfig())
    check_commercial([SRC_A, SAIGA], MixConfig(commercial_only=False))
    s = mix([(SAIGA, [dlg("saiga/x", 1, "привет", "ru")])], MixConfig(commercial_only=False), tmp_path / "f",
            tmp_path / "r.jsonl")
    assert s["commercial"] is False
    assert "NOT for commercial use" in (tmp_path / "f/README.md").read_text()


def test_dataset_folder_loads_with_datasets(tmp_path):
    import datasets

    mix(groups(), MixConfig(validation_fraction=0.2), tmp_path / "final", tmp_path / "r.jsonl")
    ds = datasets.load_dataset(str(tmp_path / "final"))
    assert ds["train"].num_rows == 20 and ds["validation"].num_rows == 5
    assert set(ds["train"].column_names) == {"id", "source", "lang", "messages", "origin_id", "license", "meta"}


def test_report_detects_counts_that_do_not_add_up():
    loads = [{"source": "a", "counts": {"read": 10, "kept": 8, "rejected": 1}}]  # one record lost
    with pytest.raises(CountMismatch, match="downloaded = valid"):
        build_report(loads, [], None, None)
    loads[0]["counts"]["excluded"] = 1
    rep = build_report(loads, [], None, None)
    assert all(rep["checks"].values())


def test_split_keeps_original_and_translation_together(tmp_path):
    mix(groups(), MixConfig(seed=5, validation_fraction=0.3), tmp_path / "f", tmp_path / "r.jsonl")
    train = read_dialogs(tmp_path / "f/data/train-00000-of-00001.parquet")
    val = read_dialogs(tmp_path / "f/data/validation-00000-of-00001.parquet")
    key = {d["id"]: d.get("origin_id") or d["id"] for d in train + val}
    assert {key[d["id"]] for d in train}.isdisjoint({key[d["id"]] for d in val})
    assert any(d["lang"] == "ru" for d in val)  # translations do land in validation, with their originals
    assert 5 <= len(val) <= 9
