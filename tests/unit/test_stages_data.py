"""The data stages as plain functions: cache keys, shard jobs, translation of a file, filtering,
mixing from another working directory, the run summary, and the model registry."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from ruinstruct import runtime
from ruinstruct.config import TranslationConfig
from ruinstruct.io import read_dialogs, read_jsonl, write_dialogs, write_json, write_jsonl
from ruinstruct.paths import RunPaths, stats_sidecar
from ruinstruct.schema import make_dialog
from ruinstruct.stages import data as stages

REPO = Path(__file__).resolve().parents[2]
TRANSLATE_PKG = REPO / "src/ruinstruct/translate"


def dialog(i: int, user: str, answer: str, source: str = "local/t", **kw) -> dict:
    return make_dialog(id=f"{source}:{i}", source=source, license="MIT",
                       messages=[{"role": "user", "content": user}, {"role": "assistant", "content": answer}], **kw)


# ---- keys --------------------------------------------------------------------------------------

def test_code_version_follows_file_contents_not_only_names(tmp_path):
    pkg = tmp_path / "translate"
    shutil.copytree(TRANSLATE_PKG, pkg, ignore=shutil.ignore_patterns("__pycache__"))
    v0 = stages.code_version(pkg)
    assert v0 == stages.code_version(pkg)
    assert stages.code_version(TRANSLATE_PKG) == stages.CODE_VERSION == v0
    seg = pkg / "segment.py"
    seg.write_text(seg.read_text() + "\n# a fix in segmentation\n")  # same names, new contents
    v1 = stages.code_version(pkg)
    assert v1 != v0
    seg.rename(pkg / "segment2.py")  # same contents, a new name
    assert stages.code_version(pkg) not in (v0, v1)


def test_shard_key_depends_on_shard_translator_code_and_output():
    base = stages.shard_key("h1", "m@main#aaa", "/r/out.parquet", code="c1")
    assert base == stages.shard_key("h1", "m@main#aaa", "/r/out.parquet", code="c1")
    assert base != stages.shard_key("h2", "m@main#aaa", "/r/out.parquet", code="c1")
    assert base != stages.shard_key("h1", "m@main#bbb", "/r/out.parquet", code="c1")
    assert base != stages.shard_key("h1", "m@main#aaa", "/other/out.parquet", code="c1")
    assert base != stages.shard_key("h1", "m@main#aaa", "/r/out.parquet", code="c2")


def test_task_cache_key_reads_the_shard_hash_and_translator_id():
    from tasks.data import shard_cache_key

    params = {"ref": {"hash": "h1", "source": "s", "index": 0}, "translator_id": "m#a", "out_path": "/r/o"}
    key = shard_cache_key(None, params)
    assert key == stages.shard_key("h1", "m#a", "/r/o")
    assert key != shard_cache_key(None, {**params, "translator_id": "m#b"})
    assert key != shard_cache_key(None, {**params, "ref": {**params["ref"], "hash": "h2"}})


def test_shard_output_is_named_by_translator_and_shard(tmp_path):
    paths = RunPaths(tmp_path)
    ref = {"source": "saiga/x", "index": 3, "hash": "h1"}
    out = paths.shard_output(ref, "m#a")
    assert out.parent == paths.translated / "saiga__x" and out.name.startswith("00003-")
    assert out != paths.shard_output(ref, "m#b")
    assert out != paths.shard_output({**ref, "hash": "h2"}, "m#a")
    jobs = stages.shard_jobs([ref], paths, "m#a")
    assert [(j.out, j.refresh) for j in jobs] == [(str(out), True)]  # no output: compute
    write_dialogs(out, [])
    # an output without its stats sidecar was killed before it finished (or is being replaced)
    assert [j.refresh for j in stages.shard_jobs([ref], paths, "m#a")] == [True]
    write_json(stats_sidecar(out), {"dialogs": 0, "code": stages.CODE_VERSION})
    assert [j.refresh for j in stages.shard_jobs([ref], paths, "m#a")] == [False]
    # written by another code version: its Prefect record (if the code went back to that
    # version) must not be served for this file
    write_json(stats_sidecar(out), {"dialogs": 0, "code": "another-version"})
    assert [j.refresh for j in stages.shard_jobs([ref], paths, "m#a")] == [True]


def test_data_run_hashes_the_model_folder_once(tmp_path, monkeypatch):
    from ruinstruct import config as config_module
    from ruinstruct.config import load_config

    calls = []
    monkeypatch.setattr(config_module, "_model_identity", lambda model: calls.append(model) or "ident")
    tcfg = TranslationConfig(model=str(tmp_path), device="cpu", dtype="float32", max_input_tokens=100)
    run = stages.DataRun(config=load_config(REPO / "configs" / "tiny.yaml"), translation=tcfg)
    ids = {run.translator_id for _ in range(5)}
    assert ids == {tcfg.translator_id} and len(calls) == 2  # the run's once, the line above's once


class Upper:
    """A translator that counts the texts sent to it."""

    id = "fake-upper@main#0"

    def __init__(self):
        self.texts = 0

    def translate(self, texts):
        self.texts += len(texts)
        return [t.upper() for t in texts]


def test_a_new_code_version_translates_a_finished_shard_again(tmp_path, monkeypatch):
    from ruinstruct.translate.shards import plan_shards

    write_dialogs(tmp_path / "raw.parquet", [dialog(i, f"Question {i}?", f"Answer {i}.") for i in range(3)])
    (ref,) = plan_shards("local/t", tmp_path / "raw.parquet", 10, tmp_path / "shards")
    tr = Upper()
    monkeypatch.setattr(runtime, "get_translator", lambda cfg, tid=None: (tr, threading.Lock()))
    out, cache = tmp_path / "out.parquet", tmp_path / "cache"

    def translate():
        return stages.translate_shard(ref, out, TranslationConfig(), cache, tr.id)

    first = translate()
    assert (first.get("reused"), first["code"], tr.texts) == (None, stages.CODE_VERSION, 6)
    assert translate()["reused"] is True  # finished by this code: not redone

    # a change to the translation code: the shard is made again, in place (its units come
    # from the paragraph cache), and its stats name the new code
    out.write_bytes(b"stale output of the old code")
    monkeypatch.setattr(stages, "CODE_VERSION", "new-code")
    again = translate()
    assert (again.get("reused"), again["code"], tr.texts) == (None, "new-code", 6)
    assert [d["messages"][0]["content"] for d in read_dialogs(out)] == ["QUESTION 0?", "QUESTION 1?", "QUESTION 2?"]
    assert sorted(p.name for p in out.parent.glob("out*")) == ["out.parquet", stats_sidecar(out).name]
    assert translate()["reused"] is True

    # killed after the output of a third version is written, before its stats: finished for no
    # version (not for "new-code" either, whose Prefect record still exists), so it is redone
    from ruinstruct.translate import shards

    real = shards.translate_shard

    def killed(ref, out_path, *args, **kw):
        real(ref, out_path, *args, **kw)
        raise RuntimeError("killed")

    monkeypatch.setattr(shards, "translate_shard", killed)
    monkeypatch.setattr(stages, "CODE_VERSION", "newest-code")
    with pytest.raises(RuntimeError):
        translate()
    assert stages.finished_shard(out, "new-code") is None and stages.finished_shard(out, "newest-code") is None


# ---- the model registry ------------------------------------------------------------------------

def test_runtime_loads_once_and_releases_by_prefix():
    runtime.release_all()
    loads = []

    def loader(name):
        def load():
            loads.append(name)
            return object()
        return load

    a, lock_a = runtime.get("translator:a", loader("a"))
    a2, lock_a2 = runtime.get("translator:a", loader("a"))
    m, _ = runtime.get("model:m", loader("m"))
    assert a is a2 and lock_a is lock_a2 and isinstance(lock_a, type(threading.Lock()))
    assert loads == ["a", "m"]
    assert runtime.loaded() == ["model:m", "translator:a"]
    assert runtime.release_translators() == 1
    assert runtime.loaded() == ["model:m"]
    b, _ = runtime.get("translator:a", loader("a"))
    assert b is not a and loads == ["a", "m", "a"]
    assert runtime.release_all() == 2 and runtime.loaded() == []


def test_get_translator_is_keyed_by_translator_id(monkeypatch):
    from ruinstruct.translate import engine

    runtime.release_all()
    made = []
    monkeypatch.setattr(engine, "load_translator", lambda cfg: made.append(cfg.num_beams) or object())
    t1, _ = runtime.get_translator(TranslationConfig(num_beams=1))
    assert runtime.get_translator(TranslationConfig(num_beams=1))[0] is t1
    assert runtime.get_translator(TranslationConfig(num_beams=2))[0] is not t1
    assert made == [1, 2]
    assert runtime.loaded("translator:") == sorted(
        "translator:" + TranslationConfig(num_beams=n).translator_id for n in (1, 2))
    runtime.release_all()


# ---- translate ---------------------------------------------------------------------------------

@pytest.fixture
def en_file(tmp_path):
    p = tmp_path / "en.jsonl"
    write_jsonl(p, [dialog(0, "How do I boil an egg?", "Put the egg in boiling water for ten minutes."),
                    dialog(1, "Where is Paris?", "Paris is in France.")])
    return p


def test_translate_file_keys_its_cache_by_the_resolved_translator(tmp_path, en_file, tiny_dir):
    """device/dtype "auto" must not stay in the translator id: the cache entries are written
    under the id of cpu/float32 (this machine), which a GPU bf16 run never reads."""
    runtime.release_all()
    model = str(tiny_dir / "translator")
    auto = TranslationConfig(model=model, device="auto", dtype="auto", max_input_tokens=200)
    cache = tmp_path / "cache"
    out = tmp_path / "ru.jsonl"
    with en_file.open("a") as f:  # the user's reader: a second record with a seen id is a reject
        f.write(en_file.read_text().splitlines()[0] + "\n")
    summary = stages.translate_file(en_file, out, auto, cache)
    resolved = TranslationConfig(model=model, device="cpu", dtype="float32", max_input_tokens=200)
    assert summary["translator_id"] == resolved.translator_id != auto.translator_id
    assert (summary["input"], summary["rejected"], summary["dialogs"]) == (3, 1, 2)
    assert [r["reasons"] for r in read_jsonl(tmp_path / "ru.rejects.jsonl")] == [["duplicate id"]]
    assert [d["id"] for d in read_dialogs(out)] == ["local/t:0:ru", "local/t:1:ru"]
    from ruinstruct.translate.cache import ParagraphCache

    assert len(ParagraphCache(cache, resolved.translator_id)) == summary["translated"] > 0
    assert len(ParagraphCache(cache, auto.translator_id)) == 0
    bf16 = TranslationConfig(model=model, device="cuda", dtype="bfloat16", max_input_tokens=200)
    assert len(ParagraphCache(cache, bf16.translator_id)) == 0
    runtime.release_all()


def test_cli_translate_writes_its_cache_under_the_resolved_id(tmp_path, en_file, tiny_dir):
    from typer.testing import CliRunner

    from ruinstruct.cli import app
    from ruinstruct.translate.cache import ParagraphCache

    runtime.release_all()
    model = str(tiny_dir / "translator")
    res = CliRunner().invoke(app, ["translate", "--model", model, "--input", str(en_file),
                                   "--output", str(tmp_path / "ru.jsonl"), "--cache", str(tmp_path / "c")])
    assert res.exit_code == 0, res.output
    resolved = stages.resolve_translation(TranslationConfig(model=model))
    assert (resolved.device, resolved.dtype) == ("cpu", "float32")
    assert len(ParagraphCache(tmp_path / "c", resolved.translator_id)) > 0
    assert len(ParagraphCache(tmp_path / "c", TranslationConfig(model=model).translator_id)) == 0
    runtime.release_all()


def test_translate_file_without_a_valid_record_is_an_error(tmp_path, tiny_dir, monkeypatch):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"not": "a dialog"}\n{broken\n')
    out = tmp_path / "ru.jsonl"
    monkeypatch.setattr(runtime, "get_translator", lambda *a, **k: pytest.fail("nothing to translate"))
    with pytest.raises(stages.NoValidInput, match=str(bad)):
        stages.translate_file(bad, out, TranslationConfig(model=str(tiny_dir / "translator")))
    assert not out.exists()
    assert len(read_jsonl(tmp_path / "ru.rejects.jsonl")) == 2  # the reasons are kept


def test_cli_translate_without_a_valid_record_exits_non_zero(tmp_path, tiny_dir):
    from typer.testing import CliRunner

    from ruinstruct.cli import app

    bad = tmp_path / "bad.jsonl"
    bad.write_text('{broken\n')
    res = CliRunner().invoke(app, ["translate", "--model", str(tiny_dir / "translator"), "--input", str(bad),
                                   "--output", str(tmp_path / "ru.jsonl")])
    assert res.exit_code != 0
    assert str(bad) in res.output + str(res.exception)
    assert not (tmp_path / "ru.jsonl").exists()


def test_cli_filter_without_a_valid_record_is_one_line_and_exit_2(tmp_path):
    from typer.testing import CliRunner

    from ruinstruct.cli import app

    bad, en = tmp_path / "bad.jsonl", tmp_path / "en.jsonl"
    bad.write_text('{"not": "a dialog"}\n{broken\n')
    write_jsonl(en, [dialog(0, "Hi?", "Hello.")])
    res = CliRunner().invoke(app, ["filter", "--input", str(bad), "--originals", str(en), "--kept",
                                   str(tmp_path / "kept.jsonl"), "--rejected", str(tmp_path / "rej.jsonl")])
    assert res.exit_code == 2, res.output
    assert res.output.strip().count("\n") == 0 and str(bad) in res.output and "no valid dialog records" in res.output
    assert not (tmp_path / "kept.jsonl").exists()
    assert len(read_jsonl(tmp_path / "rej.jsonl")) == 2  # the reasons are kept


def test_missing_inputs_are_named(tmp_path, en_file, tiny_dir):
    missing = tmp_path / "nope.jsonl"
    with pytest.raises(FileNotFoundError, match=str(missing)):
        stages.translate_file(missing, tmp_path / "o.jsonl", TranslationConfig(model=str(tiny_dir / "translator")))
    with pytest.raises(FileNotFoundError, match=str(missing)):
        stages.filter_files([en_file], [missing], None, tmp_path / "k.jsonl", tmp_path / "r.jsonl")
    with pytest.raises(FileNotFoundError, match="translation.model.*/no/such/model"):
        stages.check_translator(TranslationConfig(model="/no/such/model"))
    stages.check_translator(TranslationConfig(model="org/hub-model"))  # a hub id is not checked


# ---- filter ------------------------------------------------------------------------------------

def test_filter_files_takes_run_parquet_and_user_jsonl_alike(tmp_path):
    en = [dialog(0, "How do I boil an egg?", "Put the egg in boiling water for ten minutes."),
          dialog(1, "Where is Paris?", "Paris is in France.")]
    ru = [dict(en[0], id="local/t:0:ru", lang="ru", origin_id="local/t:0", messages=[
              {"role": "user", "content": "Как сварить яйцо?"},
              {"role": "assistant", "content": "Положите яйцо в кипящую воду на десять минут."}]),
          dict(en[1], id="local/t:5:ru", lang="ru", origin_id="local/t:5", messages=[
              {"role": "user", "content": "Где Париж?"}, {"role": "assistant", "content": "Париж во Франции."}])]
    write_dialogs(tmp_path / "en.parquet", en)
    ru_file = tmp_path / "ru.jsonl"
    write_jsonl(ru_file, ru)
    with ru_file.open("a") as f:
        f.write("{broken\n")
    s = stages.filter_files([ru_file], [tmp_path / "en.parquet"], None, tmp_path / "kept.jsonl",
                            tmp_path / "rej.jsonl", tmp_path / "report.json")
    assert (s["translated"], s["kept"], s["rejected"], s["invalid_input"], s["invalid_originals"]) == (2, 1, 1, 1, 0)
    assert s["per_source"] == {"local/t": {"translated": 2, "kept": 1, "rejected": 1}}
    # every filter that ran is listed, at 0 when it dropped nothing (the report's by-filter table)
    from ruinstruct.filters.config import FILTER_NAMES

    assert s["report"]["per_source"]["local/t"]["per_filter"] == {"pairing": 1, **dict.fromkeys(FILTER_NAMES, 0)}
    assert s["report"]["per_filter"] == {"pairing": 1, **dict.fromkeys(FILTER_NAMES, 0)}
    assert [d["id"] for d in read_dialogs(tmp_path / "kept.jsonl")] == ["local/t:0:ru"]
    rows = read_jsonl(tmp_path / "rej.jsonl")
    assert len(rows) == 2 and "raw" in rows[0] and rows[1]["id"] == "local/t:5:ru"  # invalid lines first
    assert json.loads((tmp_path / "report.json").read_text())["kept"] == 1


# ---- load --------------------------------------------------------------------------------------

def test_empty_source_is_a_warning_and_no_source_at_all_an_error(tmp_path):
    from ruinstruct.config import SourceConfig

    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    src = SourceConfig(name="local/empty", kind="local", path=str(empty))
    ld = stages.load_source(src, RunPaths(tmp_path / "run"), "en")
    assert ld["counts"]["dialogs"] == 0
    assert len(ld["warnings"]) == 1 and "local/empty" in ld["warnings"][0] and str(empty) in ld["warnings"][0]
    with pytest.raises(stages.NoValidInput, match="local/empty"):
        stages.check_loads([ld])
    full = stages.load_source(SourceConfig(name="local/demo", kind="local", path=str(
        REPO / "src/ruinstruct/resources/fixtures/local/dialogs.jsonl")), RunPaths(tmp_path / "run"), "en")
    assert full["warnings"] == []
    stages.check_loads([ld, full])  # one empty source among others: a warning only


# ---- mix ---------------------------------------------------------------------------------------

def _profile(folder: Path, root: str | None) -> Path:
    folder.mkdir(parents=True)
    shutil.copy(REPO / "src/ruinstruct/resources/fixtures/local/dialogs.jsonl", folder / "dialogs.jsonl")
    text = ("name: mixtest\n" + (f"root: {root}\n" if root else "")
            + "data:\n  sources:\n    - {name: local/mine, kind: local, path: dialogs.jsonl, license: MIT, "
            "translate: false}\n")
    (folder / "p.yaml").write_text(text)
    return folder / "p.yaml"


def _mix_cli(profile: Path, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, "-m", "ruinstruct.cli", "mix", "--config", str(profile)],
                          cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


@pytest.mark.slow
def test_mix_with_an_absolute_profile_from_another_folder(tmp_path):
    from ruinstruct.config import load_config

    profile = _profile(tmp_path / "profiles", root="out")  # an explicit root: relative to the profile
    cwd = tmp_path / "elsewhere"
    cwd.mkdir()
    cfg = load_config(profile)
    assert cfg.root_path == tmp_path / "profiles/out"
    paths = RunPaths(cfg.root_path)
    stages.load_source(cfg.data.sources[0], paths, "en")
    res = _mix_cli(profile, cwd)
    assert res.returncode == 0, res.stdout + res.stderr
    assert paths.final_split("train").exists() and (paths.final / "README.md").exists()
    assert list(cwd.iterdir()) == []

    # no root: runs/<name> under the working directory; not there yet -> one line naming it
    bare = _profile(tmp_path / "bare", root=None)
    res = _mix_cli(bare, cwd)
    assert res.returncode != 0
    expected = RunPaths(cwd / "runs/mixtest").raw_file("local/mine")
    assert str(expected) in res.stderr and len(res.stderr.strip().splitlines()) <= 2, res.stderr


# ---- report ------------------------------------------------------------------------------------

def test_summary_lines_from_a_report():
    report = {
        "totals": {"downloaded": 120, "invalid": 7, "excluded": 3, "dialogs": 105, "translated": 90,
                   "filtered_out": 12, "final_en": 100, "final_ru": 78},
        "filtered_out_by_filter": {"dolly": {"code": 2, "repetition": 5}, "chip2": {"repetition": 4, "language": 0}},
        "splits": {"train": 170, "validation": 8},
        "warnings": ["source local/x yielded no valid dialogs"],
    }
    assert stages.summary_lines(report) == [
        "records read: 120, invalid: 7, excluded: 3, dialogs: 105",
        "translated: 90, filtered out: 12 (by filter, a dialog may fail several: repetition 9, code 2, language 0)",
        "final: en 100, ru 78 (train 170, validation 8)",
        "warning: source local/x yielded no valid dialogs",
    ]
