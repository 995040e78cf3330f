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
    assert "data.sources[0].limt" in msg
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


# ---- cross-field rules and the path rule ------------------------------------------------------

def _write(tmp_path: Path, text: str, name: str = "p.yaml") -> Path:
    p = tmp_path / name
    p.write_text(text)
    return p


SAIGA = "    - {name: saiga/x, kind: saiga, path: s.jsonl}\n"
DOLLY = "    - {name: dolly, kind: dolly, path: d.jsonl}\n"


def test_non_commercial_source_in_a_commercial_run_fails_at_load(tmp_path):
    p = _write(tmp_path, "name: x\ndata:\n  sources:\n" + DOLLY + SAIGA)
    with pytest.raises(ConfigError) as e:
        load_config(p)
    line = next(x for x in str(e.value).splitlines() if "saiga/x" in x)
    assert line.strip().startswith("mix:") and "commercial_only" in line
    ok = _write(tmp_path, "name: x\ndata:\n  sources:\n" + DOLLY + SAIGA + "mix: {commercial_only: false}\n", "ok.yaml")
    assert [s.name for s in load_config(ok).data.sources] == ["dolly", "saiga/x"]


def test_mix_caps_and_ratios_must_name_configured_sources(tmp_path):
    for section in ("caps: {dolyy: 5}", "ratios: {dolyy: 0.5}"):
        p = _write(tmp_path, "name: x\ndata:\n  sources:\n" + DOLLY + f"mix: {{{section}}}\n")
        with pytest.raises(ConfigError, match=r"mix: .*'dolyy'"):
            load_config(p)


def test_translated_source_needs_a_translator_model(tmp_path):
    p = _write(tmp_path, "name: x\ndata:\n  sources:\n" + DOLLY + "translation: {model: ''}\n")
    with pytest.raises(ConfigError, match=r"translation: .*translation.model.*'dolly'"):
        load_config(p)
    untranslated = "    - {name: dolly, kind: dolly, path: d.jsonl, translate: false}\n"
    load_config(_write(tmp_path, "name: x\ndata:\n  sources:\n" + untranslated + "translation: {model: ''}\n"))


def test_config_built_in_python_is_checked_when_resolved(tmp_path):
    """model_copy skips validation: resolve_config (what every flow calls) validates again."""
    from ruinstruct.config import SourceConfig, resolve_config

    cfg = load_config(_write(tmp_path, "name: x\ndata:\n  sources:\n" + DOLLY))
    saiga = SourceConfig(name="saiga/x", kind="saiga", path=str(tmp_path / "s.jsonl"))
    bad = cfg.model_copy(update={"data": cfg.data.model_copy(update={"sources": [*cfg.data.sources, saiga]})})
    with pytest.raises(ConfigError, match="saiga/x"):
        resolve_config(bad)


def test_path_rule_profile_paths_vs_default_root(tmp_path, monkeypatch):
    """Paths in a profile are relative to the profile (an explicit root too); the default root,
    runs/<name>, is relative to the working directory; --output is relative to it as well."""
    from ruinstruct.config import resolve_config

    prof = tmp_path / "profiles"
    prof.mkdir()
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    rooted = load_config(_write(prof, "name: x\nroot: ../out\ndata:\n  sources:\n" + DOLLY
                                + "translation: {model: ./m, cache_dir: c}\n"))
    assert rooted.root == str(tmp_path / "out")
    assert rooted.data.sources[0].path == str(prof / "d.jsonl")
    assert rooted.translation.model == str(prof / "m") and rooted.translation.cache_dir == str(prof / "c")
    assert resolve_config(rooted).root == str(tmp_path / "out")
    hub = load_config(_write(prof, "name: y\ndata:\n  sources:\n" + DOLLY + "translation: {model: org/m}\n", "h.yaml"))
    assert hub.translation.model == "org/m" and hub.root is None
    assert resolve_config(hub).root == str(cwd / "runs/y")
    assert resolve_config(hub, output="elsewhere").root == str(cwd / "elsewhere")
    assert resolve_config(prof / "h.yaml").root == str(cwd / "runs/y")


def test_resolve_config_takes_a_model_a_dict_or_a_yaml_path(tmp_path, monkeypatch):
    """A deployment's `config` parameter: the model, its JSON (the API, the UI's form) or the
    path of a profile, relative to the working directory (the project folder of a flow run)."""
    from ruinstruct.config import resolve_config

    monkeypatch.chdir(REPO)
    by_path = resolve_config("configs/tiny.yaml")
    assert by_path.name == "tiny" and by_path.root == str(REPO / "runs/tiny")
    assert resolve_config(by_path.model_dump()) == by_path
    assert resolve_config(by_path, tmp_path / "out").root == str(tmp_path / "out")
    with pytest.raises(ConfigError, match="config file not found: nope.yaml"):
        resolve_config("nope.yaml")
    for empty in (None, "", "  "):
        with pytest.raises(ConfigError, match="^config: pass the run config"):
            resolve_config(empty)
    bad = {**by_path.model_dump(), "runner": {"kind": "spark"}}
    with pytest.raises(ConfigError, match=r"runner\.kind"):
        resolve_config(bad)


@pytest.mark.parametrize(
    ("section", "message"),
    [
        ({"runner": {"kind": "dusk"}}, r"runner\.kind: Input should be 'default' or 'dask'"),
        ({"runner": {"address": "tcp://h:8786"}}, r"runner\.address: is only used with kind: dask"),
        ({"runner": {"kind": "dask", "address": "h:8786"}}, r"runner\.address: 'h:8786' is not a scheduler address"),
        ({"runner": {"kind": "dask", "n_workers": 0}}, r"runner\.n_workers: Input should be greater than or equal to 1"),
        ({"runner": {"kind": "dask", "nworkers": 2}}, r"runner\.nworkers: Extra inputs are not permitted"),
        ({"faults": {"fail_shards_once": ["dolly-1"]}}, r"faults\.fail_shards_once: .*'dolly-1' is not source#index"),
        ({"faults": {"fail_shards_once": ["dolly#1", "saiga#0"]}},
         r"faults\.fail_shards_once\[1\]: 'saiga#0': no translated source of that name"),
    ],
)
def test_runner_and_faults_errors_name_the_field(tmp_path, section, message):
    import yaml

    raw = yaml.safe_load((REPO / "configs/tiny.yaml").read_text())
    raw.update(section)
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(raw))
    with pytest.raises(ConfigError, match=message):
        load_config(tmp_path / "c.yaml")


def test_runner_section_defaults_and_dask():
    from ruinstruct.config import RunnerConfig

    assert RunnerConfig() == RunnerConfig(kind="default", address=None, n_workers=2, threads_per_worker=1)
    assert RunnerConfig(kind="dask", address="tcp://10.0.0.5:8786").address == "tcp://10.0.0.5:8786"


def test_atomic_write_gives_the_mode_of_a_new_file(tmp_path):
    """mkstemp's 0600 must not reach the dataset: other users (a container's other uid) read it."""
    import os

    from ruinstruct.io import _UMASK, write_text

    p = write_text(tmp_path / "f.txt", "x")
    assert p.stat().st_mode & 0o777 == 0o666 & ~_UMASK
    assert os.umask(_UMASK) == _UMASK  # reading it at import left the process's umask as it was
