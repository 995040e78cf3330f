"""Run config validation and atomic dialog IO."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from ruinstruct.config import ConfigError, RunConfig, TranslationConfig, load_config
from ruinstruct.io import atomic_path, read_dialogs, rejects_path, write_dialogs
from ruinstruct.schema import make_dialog, validate

REPO = Path(__file__).resolve().parents[2]


def test_profiles_validate():
    for name in ("tiny.yaml", "paper.yaml", "paper-saiga.yaml"):
        cfg = load_config(REPO / "configs" / name)
        assert isinstance(cfg, RunConfig)
    tiny = load_config(REPO / "configs" / "tiny.yaml")
    # relative paths resolve against the YAML's folder, not the working directory
    assert all(os.path.isabs(s.path) for s in tiny.data.sources)
    assert Path(tiny.translation.model).is_absolute()


def test_bad_config_names_the_field(tmp_path):
    p = tmp_path / "bad.yaml"
    p.write_text(
        "name: x\ndata:\n  sources:\n    - {name: d, kind: dolly, path: a.jsonl, limt: 3}\n"
        "translation: {num_beams: 0}\n"
    )
    with pytest.raises(ConfigError) as e:
        load_config(p)
    msg = str(e.value)
    assert "data.sources.0.limt" in msg
    assert "translation.num_beams" in msg


def test_source_needs_a_location(tmp_path):
    p = tmp_path / "bad.yaml"
    p.write_text("name: x\ndata:\n  sources:\n    - {name: d, kind: dolly}\n")
    with pytest.raises(ConfigError, match="set `path`"):
        load_config(p)


def test_translator_id_tracks_generation_settings_only():
    base = TranslationConfig()
    assert base.translator_id == TranslationConfig(max_batch_size=3, shard_size=7, device="cpu").translator_id
    assert base.translator_id != TranslationConfig(num_beams=4).translator_id
    assert base.translator_id != TranslationConfig(revision="abc").translator_id


def test_local_translator_id_follows_content_not_path(tmp_path):
    a, b = tmp_path / "a" / "m", tmp_path / "b" / "m"
    for d in (a, b):
        d.mkdir(parents=True)
        (d / "config.json").write_text("{}")
    assert TranslationConfig(model=str(a)).translator_id == TranslationConfig(model=str(b)).translator_id
    (b / "config.json").write_text('{"x": 1}')
    assert TranslationConfig(model=str(a)).translator_id != TranslationConfig(model=str(b)).translator_id


def test_validate_rules():
    ok = make_dialog(id="s:1", source="s", license="MIT", messages=[
        {"role": "system", "content": "sys"}, {"role": "user", "content": "u"}, {"role": "assistant", "content": "a"}])
    assert validate(ok) == []
    bad = dict(ok, messages=[{"role": "user", "content": "u"}, {"role": "user", "content": "u2"},
                             {"role": "assistant", "content": " "}])
    reasons = validate(bad)
    assert any("empty content" in r for r in reasons)
    assert validate(dict(ok, messages=[{"role": "user", "content": "u"}, {"role": "user", "content": "v"}]))
    assert validate("nope") == ["not an object: str"]


@pytest.mark.parametrize("suffix", [".parquet", ".jsonl"])
def test_dialog_round_trip(tmp_path, suffix):
    ds = [
        make_dialog(id=f"s:{i}", source="s", license="MIT", meta={"k": i, "nested": {"a": [1, 2]}},
                    messages=[{"role": "user", "content": f"q{i}\n\n  x"}, {"role": "assistant", "content": "ответ"}])
        for i in range(3)
    ]
    p = tmp_path / f"d{suffix}"
    assert write_dialogs(p, ds) == 3
    assert read_dialogs(p) == ds


def test_atomic_write_leaves_old_file_on_error(tmp_path):
    p = tmp_path / "f.txt"
    p.write_text("old")
    with pytest.raises(RuntimeError), atomic_path(p) as tmp:
        tmp.write_text("half")
        raise RuntimeError("killed")
    assert p.read_text() == "old"
    assert [f.name for f in tmp_path.iterdir()] == ["f.txt"]


def test_rejects_path():
    assert rejects_path("out/ru.jsonl") == Path("out/ru.rejects.jsonl")
    assert json.dumps(str(rejects_path(Path("a/b.parquet")))) == '"a/b.rejects.jsonl"'
