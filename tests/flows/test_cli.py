"""The CLI contracts: outputs where asked, rejects beside them with reasons, counts; expected errors in
one or two lines with exit code 2; help text as written; Prefect analytics off by default."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from ruinstruct.cli import app
from ruinstruct.io import read_dialogs, read_jsonl, write_jsonl
from ruinstruct.schema import make_dialog

REPO = Path(__file__).resolve().parents[2]
runner = CliRunner()


def invoke(*args: str):
    res = runner.invoke(app, [str(a) for a in args], catch_exceptions=False)
    return res


def last_json(output: str) -> dict:
    start = output.index("{")
    return json.loads(output[start : output.rindex("}") + 1])


def dialog(i: int, user: str, answer: str) -> dict:
    return make_dialog(id=f"local/t:{i}", source="local/t", license="MIT",
                       messages=[{"role": "user", "content": user}, {"role": "assistant", "content": answer}])


@pytest.fixture
def en_file(tmp_path):
    p = tmp_path / "en.jsonl"
    rows = [
        dialog(0, "How do I boil an egg?", "Put the egg in boiling water for ten minutes."),
        dialog(1, "Show me a loop.", "Here it is:\n```python\nfor i in range(3):\n    print(i)\n```"),
    ]
    write_jsonl(p, rows)
    with p.open("a") as f:
        f.write("{not json\n")
        f.write(json.dumps({"id": "local/t:9", "source": "local/t", "lang": "en", "license": "MIT",
                            "messages": [{"role": "user", "content": "only a question"}]}) + "\n")
    return p


def test_translate_writes_output_and_rejects(tmp_path, en_file, tiny_dir):
    out = tmp_path / "ru.jsonl"
    res = invoke("translate", "--model", tiny_dir / "translator", "--input", en_file, "--output", out,
                 "--cache", tmp_path / "cache")
    assert res.exit_code == 0, res.output
    summary = last_json(res.output)
    assert (summary["input"], summary["dialogs"], summary["rejected"]) == (4, 2, 2)
    assert summary["translated"] > 0 and summary["translator_calls"] > 0
    ru = read_dialogs(out)
    assert [d["id"] for d in ru] == ["local/t:0:ru", "local/t:1:ru"]
    assert "```python\nfor i in range(3):\n    print(i)\n```" in ru[1]["messages"][1]["content"]
    rejects = read_jsonl(tmp_path / "ru.rejects.jsonl")
    assert [r.get("where", "").rsplit(":", 1)[-1] for r in rejects] == ["3", "4"]
    assert rejects[0]["reasons"] == ["malformed JSON line"] and "raw" in rejects[0]  # io.read_dialog_records
    assert any("assistant" in r for r in rejects[1]["reasons"])
    # a second run is served by the paragraph cache
    res2 = invoke("translate", "--model", tiny_dir / "translator", "--input", en_file, "--output", out,
                  "--cache", tmp_path / "cache")
    s2 = last_json(res2.output)
    assert s2["dialogs"] == 2 and s2["translated"] == 0 and s2["translator_calls"] == 0
    assert s2["cache_hits"] == summary["translated"]


def test_filter_splits_kept_and_rejected_with_reasons(tmp_path, en_file):
    en = [json.loads(line) for line in en_file.read_text().splitlines()[:2]]
    good = dict(en[0], id=en[0]["id"] + ":ru", lang="ru", origin_id=en[0]["id"], messages=[
        {"role": "user", "content": "Как сварить яйцо?"},
        {"role": "assistant", "content": "Положите яйцо в кипящую воду на десять минут."}])
    bad = dict(en[1], id=en[1]["id"] + ":ru", lang="ru", origin_id=en[1]["id"], messages=[
        {"role": "user", "content": "Покажи мне цикл."},
        {"role": "assistant", "content": "Вот он:\n```python\nдля i в диапазоне(3):\n    печать(i)\n```"}])
    orphan = dict(good, id="local/t:7:ru", origin_id="local/t:7")
    ru = tmp_path / "ru.jsonl"
    write_jsonl(ru, [good, bad, orphan])
    kept, rejected = tmp_path / "kept.jsonl", tmp_path / "rejected.jsonl"
    res = invoke("filter", "--input", ru, "--originals", en_file, "--kept", kept, "--rejected", rejected)
    assert res.exit_code == 0, res.output
    s = last_json(res.output)
    assert (s["input"], s["kept"], s["rejected"]) == (3, 1, 2)
    assert [d["id"] for d in read_dialogs(kept)] == ["local/t:0:ru"]
    rows = {r["id"]: r for r in read_jsonl(rejected)}
    assert any(r.startswith("code") for r in rows["local/t:1:ru"]["reasons"])
    assert any("pairing" in r for r in rows["local/t:7:ru"]["reasons"])


def test_bad_config_is_a_clear_error(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("name: x\ndata:\n  sources: []\n")
    res = invoke("data", "--config", p)
    assert res.exit_code == 2
    assert "data.sources" in res.output


def cli(*args, env_home: Path) -> subprocess.CompletedProcess:
    """The real CLI in a subprocess (ephemeral Prefect). Not CliRunner: it swaps sys.stdout, and
    Prefect's log handlers would keep writing to the closed stream for the rest of the session."""
    env = {**os.environ, "PREFECT_HOME": str(env_home), "PREFECT_SERVER_ANALYTICS_ENABLED": "false"}
    env.pop("PREFECT_API_URL", None)
    return subprocess.run([sys.executable, "-m", "ruinstruct.cli", *map(str, args)], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=600)


@pytest.mark.slow
def test_data_and_mix_honour_output(tmp_path, tiny_dir):
    raw = yaml.safe_load((REPO / "configs/tiny.yaml").read_text())
    for s in raw["data"]["sources"]:
        s["path"] = str((REPO / "configs" / s["path"]).resolve())
    raw["translation"]["model"] = str(tiny_dir / "translator")
    for m in raw["training"]["models"]:  # tiny-llama, tiny-xglm; a few steps are enough here
        m["hf_id"] = str(tiny_dir / m["family"])
    for method in ("lora", "full"):
        raw["training"][method].update(max_steps=2, logging_steps=1)
    ev = raw["evaluation"]  # the fixture sets, 2 questions a subject, the tiny judge
    for section, key in (("mt_bench", "questions"), ("mt_bench", "judge_prompts"), ("mmlu_en", "data"),
                         ("mmlu_ru", "data")):
        ev[section][key] = str((REPO / "configs" / ev[section][key]).resolve())
    ev["mt_bench"].update(judge=f"local:{tiny_dir / 'llama'}", max_new_tokens=4)
    ev["mmlu_en"]["limit"] = ev["mmlu_ru"]["limit"] = 2
    cfg = tmp_path / "tiny.yaml"
    cfg.write_text(yaml.safe_dump(raw))
    root = tmp_path / "elsewhere"
    home = tmp_path / "prefect"
    res = cli("data", "--config", cfg, "--output", root, env_home=home)
    assert res.returncode == 0, res.stdout + res.stderr
    assert f"dataset: {root.resolve()}/data/final" in res.stdout
    for name in ("dolly", "oasst1", "chip2", "filter", "mix"):
        assert (root / "data/rejects" / f"{name}.rejects.jsonl").exists(), name
    before = (root / "data/final/data/train-00000-of-00001.parquet").read_bytes()
    res = invoke("mix", "--config", cfg, "--output", root)
    assert res.exit_code == 0, res.output
    assert last_json(res.output)["splits"]["train"] > 0
    assert (root / "data/final/data/train-00000-of-00001.parquet").read_bytes() == before  # same inputs, same bytes
    res = cli("run", "--config", cfg, "--output", root, env_home=home)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "rejects:" in res.stdout and "report:" in res.stdout
    # then the training matrix on that dataset, and where each model is
    models = root.resolve() / "models"
    lines = res.stdout[res.stdout.index("\nmodels:\n"):].splitlines()
    assert lines[2].split() == ["tiny-llama-lora-ruinstruct", str(models / "tiny-llama-lora-ruinstruct")]
    assert lines[3].split() == ["tiny-xglm-full-ruinstruct", str(models / "tiny-xglm-full-ruinstruct")]
    assert (models / "tiny-llama-lora-ruinstruct" / "adapter_model.safetensors").is_file()
    assert (models / "tiny-xglm-full-ruinstruct" / "model.safetensors").is_file()
    # and it ends with the results table, the paper's figures beside (none for tiny models)
    table = (root / "results" / "table.md").read_text()
    assert res.stdout.endswith(table)
    assert [line.split(" | ")[:3] for line in table.splitlines()[-2:]] == [
        ["| tiny-llama", "LoRA", "ruinstruct"], ["| tiny-xglm", "full", "ruinstruct"]]
    assert all(line.count("(-)") == 5 for line in table.splitlines()[-2:])


@pytest.mark.slow
def test_make_tiny_layout(tmp_path):
    res = invoke("make-tiny", "--out", tmp_path / "t", "--epochs", "1")
    assert res.exit_code == 0, res.output
    for sub in ("translator", "llama", "xglm", "gpt2"):
        assert (tmp_path / "t" / sub / "config.json").exists(), sub
    assert (tmp_path / "t/.done").exists()


# ---- expected errors: one or two lines naming the option or field, exit 2 --------------------

def run_cli(*args, cwd: Path, env: dict | None = None) -> subprocess.CompletedProcess:
    """The CLI's entry point (main) in a subprocess, as a user runs it."""
    env = {**os.environ, **(env or {})}
    return subprocess.run([sys.executable, "-m", "ruinstruct.cli", *map(str, args)], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300)


@pytest.fixture
def user_dir(tmp_path, tiny_dir):
    """A working folder with one valid dialog file and a profile with a typo in a field name."""
    write_jsonl(tmp_path / "ok.jsonl", [dialog(0, "How do I boil an egg?", "Ten minutes in boiling water.")])
    raw = yaml.safe_load((REPO / "configs/tiny.yaml").read_text())
    for s in raw["data"]["sources"]:
        s["path"] = str((REPO / "configs" / s["path"]).resolve())
    raw["translation"]["num_beam"] = 2  # num_beams
    (tmp_path / "typo.yaml").write_text(yaml.safe_dump(raw))
    del raw["translation"]["num_beam"]
    raw["translation"]["model"] = str(tiny_dir / "translator")
    raw["data"]["sources"][1]["path"] = "./no-such-oasst.jsonl"
    (tmp_path / "missing_source.yaml").write_text(yaml.safe_dump(raw))
    (tmp_path / "all_bad.jsonl").write_text('{"id": "x"}\n{not json\n')
    return tmp_path


ERROR_CASES = {
    "wrong model path": (["translate", "--model", "./no-such-model", "--input", "ok.jsonl", "--output", "o.jsonl"],
                         "--model ./no-such-model: not a model folder or hub id"),
    "missing input": (["translate", "--model", "./no-such-model", "--input", "./no-such-file.jsonl", "--output",
                       "o.jsonl"], "--input ./no-such-file.jsonl: "),
    "missing filter input": (["filter", "--input", "ru.jsonl", "--originals", "ok.jsonl", "--kept", "k.jsonl",
                              "--rejected", "r.jsonl"], "ru.jsonl"),
    "config field typo": (["data", "--config", "typo.yaml"], "translation.num_beam"),
    "missing config": (["mix", "--config", "./nowhere/profile.yaml"], "nowhere/profile.yaml"),
    "runner typo": (["data", "--config", "typo.yaml", "--runner", "dusk"], "--runner: 'dusk' is not one of: default, dask"),
    # checked before Prefect starts: no task traceback in the log
    "missing source file": (["data", "--config", "missing_source.yaml", "--output", "run"],
                            "data.sources[1].path (oasst1) not found"),
    "no valid input": (["translate", "--model", "./no-such-model", "--input", "all_bad.jsonl", "--output",
                        "o.jsonl"], "all_bad.jsonl: no valid dialog records (2 rejected"),
}


@pytest.mark.parametrize("case", sorted(ERROR_CASES))
def test_expected_errors_are_short_with_exit_code_2(user_dir, case):
    args, named = ERROR_CASES[case]
    res = run_cli(*args, cwd=user_dir)
    lines = [line for line in res.stderr.splitlines() if line.strip()]
    assert res.returncode == 2, res.stdout + res.stderr
    assert "Traceback" not in res.stderr + res.stdout
    assert 1 <= len(lines) <= 2, res.stderr
    assert named in res.stderr, res.stderr


def test_debug_shows_the_traceback(user_dir):
    args, named = ERROR_CASES["wrong model path"]
    for res in (run_cli("--debug", *args, cwd=user_dir), run_cli(*args, cwd=user_dir, env={"RUINSTRUCT_DEBUG": "1"})):
        assert res.returncode == 2
        assert "Traceback (most recent call last)" in res.stderr
        assert res.stderr.rstrip().splitlines()[-1].endswith(named.split(": ", 1)[1] + " (no such folder)")


def test_usage_errors_stay_typers(user_dir):
    res = run_cli("translate", "--input", "ok.jsonl", cwd=user_dir)
    assert res.returncode == 2
    assert "Missing option '--model'" in res.stderr and "Traceback" not in res.stderr


# ---- help text and environment defaults -------------------------------------------------------

def test_help_keeps_literal_brackets_and_stands_alone():
    res = runner.invoke(app, ["filter", "--help"], terminal_width=200)
    assert res.exit_code == 0
    assert '"reasons": [str]' in res.output
    for args in (["--help"], *([c, "--help"] for c in ("run", "data", "translate", "filter", "mix", "make-tiny",
                                                               "train"))):
        out = runner.invoke(app, args, terminal_width=200).output
        assert "DESIGN.md" not in out, args
    assert "README" in runner.invoke(app, ["--help"], terminal_width=200).output


def test_prefect_analytics_off_unless_the_user_set_them():
    probe = ("import ruinstruct.cli, os; from prefect.settings import get_current_settings; "
             "print(os.environ['DO_NOT_TRACK'], get_current_settings().server.analytics_enabled)")
    env = {k: v for k, v in os.environ.items() if k not in ("PREFECT_SERVER_ANALYTICS_ENABLED", "DO_NOT_TRACK")}
    res = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True, timeout=120)
    assert res.stdout.split() == ["1", "False"], res.stderr
    env |= {"PREFECT_SERVER_ANALYTICS_ENABLED": "true", "DO_NOT_TRACK": "0"}
    res = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True, timeout=120)
    assert res.stdout.split() == ["0", "True"], res.stderr


def test_runner_option_overrides_the_profile(tmp_path):
    """--runner dask keeps the profile's Dask settings; --runner default also drops its address
    (valid only with dask), so the run does not fail later on it."""
    from ruinstruct.cli import _config
    from ruinstruct.config import RunnerConfig, resolve_config

    raw = yaml.safe_load((REPO / "configs/tiny.yaml").read_text())
    raw["runner"] = {"kind": "dask", "address": "tcp://10.0.0.5:8786", "n_workers": 3}
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(raw))
    assert _config(tmp_path / "c.yaml", None, "dask").runner == RunnerConfig(
        kind="dask", address="tcp://10.0.0.5:8786", n_workers=3)
    default = resolve_config(_config(tmp_path / "c.yaml", None, "default"))
    assert default.runner == RunnerConfig(kind="default", n_workers=3)


def test_dask_runner_without_the_extra_is_a_one_line_error(monkeypatch):
    import importlib.util

    from ruinstruct.config import RunnerConfig, load_config
    from ruinstruct.errors import UserError
    from ruinstruct.stages.data import preflight

    cfg = load_config(REPO / "configs/tiny.yaml")
    cfg = cfg.model_copy(update={"runner": RunnerConfig(kind="dask"), "data": cfg.data})
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "prefect_dask" else real(name, *a))
    with pytest.raises(UserError, match=r"^runner\.kind: dask needs prefect_dask: pip install '\.\[dask\]'"):
        preflight(cfg)


def test_unwritable_ct2_dir_is_refused_before_any_work(tmp_path):
    """A ct2_dir that cannot be created fails in preflight, in one line naming the field, and
    not as six failed shards."""
    from ruinstruct.config import load_config
    from ruinstruct.errors import UserError
    from ruinstruct.stages.data import preflight

    (tmp_path / "file").write_text("x")
    cfg = load_config(REPO / "configs/tiny.yaml")
    translation = cfg.translation.model_copy(update={"backend": "ctranslate2", "ct2_dir": str(tmp_path / "file" / "ct2")})
    cfg = cfg.model_copy(update={"translation": translation})
    with pytest.raises(UserError, match=r"^translation\.ct2_dir: cannot write converted models to "):
        preflight(cfg)
