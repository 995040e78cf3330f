"""Mixing: dedup, caps, split, license refusal, dataset card, determinism."""

from __future__ import annotations

import json
import re

import pytest

from ruinstruct.config import MixConfig, SourceConfig
from ruinstruct.data_report import CountMismatch, build_report
from ruinstruct.io import read_dialogs, read_jsonl
from ruinstruct.mix import UNKNOWN_LICENSE, LicenseError, check_commercial, license_obligations, mix
from ruinstruct.paths import RunPaths
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
    assert "| a | Apache-2.0 | yes | 10 | 10 | 1 | 0 | local files `x` (chip2 format) | - |" in card


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
    r = rep["per_source"]["a"]
    assert (r["downloaded"], r["valid"], r["invalid"], r["excluded"], r["dialogs"]) == (10, 8, 1, 1, 8)
    assert list(rep["checks"]) == ["a: downloaded = valid + invalid + excluded"]
    assert rep["warnings"] == []


def test_split_keeps_original_and_translation_together(tmp_path):
    mix(groups(), MixConfig(seed=5, validation_fraction=0.3), tmp_path / "f", tmp_path / "r.jsonl")
    train = read_dialogs(tmp_path / "f/data/train-00000-of-00001.parquet")
    val = read_dialogs(tmp_path / "f/data/validation-00000-of-00001.parquet")
    key = {d["id"]: d.get("origin_id") or d["id"] for d in train + val}
    assert {key[d["id"]] for d in train}.isdisjoint({key[d["id"]] for d in val})
    assert any(d["lang"] == "ru" for d in val)  # translations do land in validation, with their originals
    assert 5 <= len(val) <= 9


HUB_DOLLY = SourceConfig(name="b", kind="dolly", hf_id="databricks/databricks-dolly-15k", revision="bfdf1f2")
HUB_CHIP2 = SourceConfig(name="a", kind="chip2", hf_id="laion/OIG", data_files="unified_chip2.jsonl")


def test_dataset_folder_holds_no_machine_paths(tmp_path):
    run = tmp_path / "runs" / "demo"
    src = SourceConfig(name="a", kind="chip2", path=str(tmp_path / "inputs" / "chip2.jsonl"))
    s = mix([(src, groups()[0][1]), (SRC_B, groups()[1][1])], MixConfig(), run / "data/final",
            run / "data/rejects/mix.rejects.jsonl", translator_id="translator@main#0123456789ab")
    # the run report still gets the paths
    assert s["output"] == str(run / "data/final") and s["rejects_file"] == str(run / "data/rejects/mix.rejects.jsonl")
    files = sorted(p for p in (run / "data/final").rglob("*") if p.is_file())
    assert [p.relative_to(run / "data/final").as_posix() for p in files] == [
        "README.md", "data/train-00000-of-00001.parquet", "data/validation-00000-of-00001.parquet", "stats.json"]
    for p in files:
        data = p.read_bytes()
        assert str(tmp_path).encode() not in data and b"/runs/" not in data, p
        if p.suffix in (".md", ".json"):
            assert not re.search(r"(^|[\s\"'`(])/[\w.-]+/", data.decode()), p  # no absolute path at all
    paths = RunPaths(run)
    assert [paths.final_card, paths.final_split("train"), paths.final_split("validation"), paths.final_stats] == files
    stats = json.loads(paths.final_stats.read_text())
    assert "output" not in stats and "rejects_file" not in stats
    assert stats["upstream"] == {"a": {"local": "chip2.jsonl"}, "b": {"local": "x"}}
    assert stats["translator_id"] == "translator@main#0123456789ab"


def test_card_names_translator_upstreams_and_license_obligations(tmp_path):
    a = [dlg("a", i, f"question {i}") for i in range(3)] + [dlg("a", 0, "вопрос 0", "ru")]
    b = [dlg("b", i, f"b question {i}") for i in range(2)]
    mix([(HUB_CHIP2, a), (HUB_DOLLY, b), (SAIGA, [dlg("saiga/x", 1, "привет", "ru")])],
        MixConfig(commercial_only=False), tmp_path / "f", tmp_path / "r.jsonl",
        translator_id="facebook/m2m100_418M@main#a1b2c3d4e5f6")
    card = (tmp_path / "f/README.md").read_text()
    assert "machine translations: translated paragraph by paragraph by `facebook/m2m100_418M@main#a1b2c3d4e5f6`" in card
    assert "WMT21" not in card
    assert ("| a | Apache-2.0 | yes | 3 | 1 | 0 | 0 | [laion/OIG](https://huggingface.co/datasets/laion/OIG) "
            "(unified_chip2.jsonl), split train | not pinned (the latest at download time; commit not recorded) |") in card
    assert ("| b | CC-BY-SA-3.0 | yes | 2 | 0 | 0 | 0 | [databricks/databricks-dolly-15k]"
            "(https://huggingface.co/datasets/databricks/databricks-dolly-15k), split train | `bfdf1f2` |") in card
    assert ("| saiga/x | CC-BY-4.0 (OpenAI-generated: non-commercial use only) | no | 0 | 1 | 0 | 0 "
            "| local files `x` (saiga format) | - |") in card
    rows = {line.split(" | ")[0][2:]: line for line in card.splitlines() if line.startswith("| ") and " | " in line}
    assert "Share-alike" in rows["CC-BY-SA-3.0"] and "must be shared under CC-BY-SA-3.0" in rows["CC-BY-SA-3.0"]
    assert "NOTICE" in rows["Apache-2.0"] and "state that the records were changed" in rows["Apache-2.0"]
    assert "Attribution" in rows["CC-BY-4.0 (OpenAI-generated: non-commercial use only)"]
    assert "Also: OpenAI-generated: non-commercial use only." in rows["CC-BY-4.0 (OpenAI-generated: non-commercial use only)"]
    assert license_obligations("WTFPL-ish") == UNKNOWN_LICENSE
    assert "/" + "tmp" not in card
    mix(groups(), MixConfig(), tmp_path / "g", tmp_path / "r2.jsonl")
    assert "no translator recorded" in (tmp_path / "g/README.md").read_text()


COMMIT = "0123456789abcdef0123456789abcdef01234567"


def test_card_and_stats_name_the_commit_the_records_were_read_from(tmp_path):
    """The loader records the hub commit in each record's meta; the mix (maybe another process,
    later) names it in the card and stats.json, with the revision it was resolved from."""
    def hub(src, i, text, commit=COMMIT, lang="en"):
        d = dlg(src, i, text, lang)
        return {**d, "meta": {"category": "x", "upstream_revision": commit}}

    a = [hub("a", i, f"question {i}") for i in range(2)] + [hub("a", 0, "вопрос 0", lang="ru")]
    b = [hub("b", 0, "b question", commit="f" * 40)]
    pinned = SourceConfig(name="c", kind="dolly", hf_id="org/c", revision=COMMIT)
    s = mix([(HUB_CHIP2, a), (HUB_DOLLY, b), (pinned, [hub("c", 0, "c question")]), (SRC_B.model_copy(
        update={"name": "d"}), [dlg("d", 0, "d question")])], MixConfig(), tmp_path / "f", tmp_path / "r.jsonl")
    card = (tmp_path / "f/README.md").read_text()
    assert "split train | `0123456789abcdef0123456789abcdef01234567` (resolved from main) |" in card
    assert f"split train | `{'f' * 40}` (resolved from bfdf1f2) |" in card
    assert "[org/c](https://huggingface.co/datasets/org/c), split train | `0123456789abcdef0123456789abcdef01234567` |" in card
    assert "| local files `x` (dolly format) | - |" in card
    stats = json.loads((tmp_path / "f/stats.json").read_text())
    assert stats["upstream"] == s["upstream"] == {
        "a": {"hf_id": "laion/OIG", "revision": None, "commit": COMMIT, "split": "train",
              "data_files": "unified_chip2.jsonl"},
        "b": {"hf_id": "databricks/databricks-dolly-15k", "revision": "bfdf1f2", "commit": "f" * 40, "split": "train"},
        "c": {"hf_id": "org/c", "revision": COMMIT, "commit": COMMIT, "split": "train"},
        "d": {"local": "x"},
    }


def test_card_record_fields_describe_the_meta_keys_the_records_carry(tmp_path):
    """The translation stage's meta keys (translate.dialogs: translator, mt_logprob) are described
    when translations are in the dataset; upstream keys are named; nothing is listed that is absent."""
    en = [{**dlg("a", i, f"question {i}"), "meta": {"category": "qa"}} for i in range(3)]
    ru = [{**dlg("a", i, f"вопрос {i}", "ru"), "meta": {"category": "qa", "translator": "t@main#0123456789ab",
                                                        "mt_logprob": [[-0.25], [-0.5, None]]}} for i in range(3)]
    mix([(SRC_A, en + ru)], MixConfig(), tmp_path / "f", tmp_path / "r.jsonl")
    fields = (tmp_path / "f/README.md").read_text().split("## Record fields\n", 1)[1]
    lines = [line for line in fields.splitlines() if line.startswith("- ")]
    assert [line.split(":")[0] for line in lines] == ["- `meta.mt_logprob`", "- `meta.translator`",
                                                       "- other `meta` keys, as the upstream records state them"]
    assert "translator's confidence, one list per message" in lines[0] and "each translated unit" in lines[0]
    assert lines[2].endswith(": category.")
    assert 'json.loads(record["meta"])' in fields

    mix([(SRC_A, en)], MixConfig(), tmp_path / "g", tmp_path / "r2.jsonl")
    fields = (tmp_path / "g/README.md").read_text().split("## Record fields\n", 1)[1]
    assert "mt_logprob" not in fields and "meta.translator" not in fields and "category" in fields


def test_card_load_snippet_loads_the_folder(tmp_path):
    """The card's own instructions, run as written (with this folder's path), give the splits."""
    s = mix(groups(), MixConfig(validation_fraction=0.2), tmp_path / "final", tmp_path / "r.jsonl")
    card = (tmp_path / "final/README.md").read_text()
    code = card.split("```python\n", 1)[1].split("```", 1)[0]
    assert 'load_dataset("path/to/final")' in code
    scope: dict = {}
    exec(code.replace("path/to/final", str(tmp_path / "final")).replace("print(", "(lambda *a: None)("), scope)
    ds = scope["ds"]
    assert {k: ds[k].num_rows for k in ds} == s["splits"] == {"train": 20, "validation": 5}


def test_empty_source_is_listed_with_zeros(tmp_path):
    s = mix([*groups(), (SourceConfig(name="c", kind="dolly", path="y"), [])], MixConfig(), tmp_path / "f",
            tmp_path / "r.jsonl")
    assert s["per_source"]["c"] == {}
    assert "| c | CC-BY-SA-3.0 | yes | 0 | 0 | 0 | 0 | local files `y` (dolly format) | - |" in (tmp_path / "f/README.md").read_text()
