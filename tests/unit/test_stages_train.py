"""Planning the training matrix, its cache key, and running a cell as a subprocess (with a stand-in
training process: the real one is tested in test_train.py and the flow tests)."""

from __future__ import annotations

import json
import shutil
import sys
import textwrap
import time
from pathlib import Path

import psutil
import pytest
import yaml

from ruinstruct.config import load_config, resolve_config
from ruinstruct.io import write_dialogs
from ruinstruct.mix import split_file
from ruinstruct.paths import TRAIN_KEY, TRAIN_SUMMARY
from ruinstruct.stages import train as st


def dialog(i: int, answer: str = "Four.") -> dict:
    return {"id": f"t:{i}", "source": "t", "lang": "en", "origin_id": None, "license": "MIT", "meta": {},
            "messages": [{"role": "user", "content": f"What is {i} plus {i}?"}, {"role": "assistant", "content": answer}]}


def write_dataset(folder: Path, n: int = 4) -> Path:
    write_dialogs(split_file(folder, "train"), [dialog(i) for i in range(n)])
    write_dialogs(split_file(folder, "validation"), [dialog(99)])
    (folder / "README.md").write_text("card\n")
    return folder


@pytest.fixture
def run(tmp_path, tiny_dir):
    """A run root with its own dataset (data/final), a tiny model copied beside the profile, and
    a profile training it with LoRA and full fine-tuning."""
    shutil.copytree(tiny_dir / "llama", tmp_path / "llama")
    write_dataset(tmp_path / "root" / "data" / "final")
    write_dataset(tmp_path / "other")
    (tmp_path / "ds.json").write_text('{"zero_optimization": {"stage": 3}}')
    profile = tmp_path / "p.yaml"
    profile.write_text(yaml.safe_dump({
        "name": "p", "root": "root", "data": {"sources": [{"name": "d", "kind": "dolly", "path": "d.jsonl"}]},
        "training": {
            "models": [{"name": "tl", "hf_id": "./llama", "family": "llama"}],
            "datasets": {"other": "other"},
            "deepspeed": "ds.json",
            "lora": {"max_steps": 2},
            "runs": [{"model": "tl", "method": ["lora", "full"], "data": ["ruinstruct", "other"]},
                     {"model": "llama-7b", "method": "lora", "data": "other", "num_processes": 2}],
        },
    }))
    return tmp_path, profile


def plan(profile: Path):
    return st.plan_jobs(resolve_config(load_config(profile)))


def test_plan_names_each_cell_its_folder_data_and_settings(run):
    tmp, profile = run
    jobs, failed = plan(profile)
    assert failed == []
    root = tmp / "root"
    assert [(j.name, Path(j.request.out_dir), Path(j.request.data_dir)) for j in jobs] == [
        ("tl-lora-ruinstruct", root / "models/tl-lora-ruinstruct", root / "data/final"),
        ("tl-lora-other", root / "models/tl-lora-other", tmp / "other"),
        ("tl-full-ruinstruct", root / "models/tl-full-ruinstruct", root / "data/final"),
        ("tl-full-other", root / "models/tl-full-other", tmp / "other"),
        ("llama-7b-lora-other", root / "models/llama-7b-lora-other", tmp / "other"),
    ]
    by = {j.name: j.request for j in jobs}
    assert by["tl-lora-ruinstruct"].settings.max_steps == 2 and by["tl-full-ruinstruct"].settings.max_steps == -1
    assert by["tl-lora-other"].settings.deepspeed is None
    assert by["tl-full-other"].settings.deepspeed == str(tmp / "ds.json")
    assert [r.num_processes for r in by.values()] == [1, 1, 1, 1, 2]
    assert {r.data_name for r in by.values()} == {"ruinstruct", "other"}
    assert all(r.settings.dataset_name == r.data_name for r in by.values())
    assert by["tl-lora-other"].model.hf_id == str(tmp / "llama") and by["llama-7b-lora-other"].model.family == "llama"
    assert all(j.refresh for j in jobs)  # nothing trained yet
    assert len({j.key for j in jobs}) == 5


def test_default_deepspeed_is_the_repos_zero3_and_false_turns_it_off(run):
    tmp, profile = run
    raw = yaml.safe_load(profile.read_text())
    del raw["training"]["deepspeed"]
    profile.write_text(yaml.safe_dump(raw))
    full = [j for j in plan(profile)[0] if j.request.settings.method == "full"]
    assert {j.request.settings.deepspeed for j in full} == {str(st.DEFAULT_DEEPSPEED)}
    assert st.DEFAULT_DEEPSPEED.is_file()
    raw["training"]["deepspeed"] = False
    profile.write_text(yaml.safe_dump(raw))
    assert {j.request.settings.deepspeed for j in plan(profile)[0]} == {None}


def test_a_cell_whose_dataset_is_missing_fails_alone(run):
    tmp, profile = run
    shutil.rmtree(tmp / "other")
    jobs, failed = plan(profile)
    assert [j.name for j in jobs] == ["tl-lora-ruinstruct", "tl-full-ruinstruct"]
    assert [f["cell"] for f in failed] == ["tl-lora-other", "tl-full-other", "llama-7b-lora-other"]
    assert failed[0]["error"] == f"training.datasets.other: dataset folder not found: {tmp / 'other'}"


def test_artifact_keys_are_lowercase_with_dashes():
    assert st.artifact_key("rugpt3.5-13b-lora-ruinstruct") == "train-rugpt3-5-13b-lora-ruinstruct"
    assert st.artifact_key("Tiny_Llama-full-saiga") == "train-tiny-llama-full-saiga"


# ---- the cache key -------------------------------------------------------------------------------


@pytest.fixture
def keyed(run):
    tmp, profile = run
    job = plan(profile)[0][0]
    return tmp, profile, job.request, st.dataset_fingerprint(job.request.data_dir), job.key


def test_key_is_stable_and_is_what_the_plan_uses(keyed):
    tmp, profile, req, fp, key = keyed
    assert st.train_key(req, fp) == key == plan(profile)[0][0].key
    assert st.train_key(req, fp, code=st.train_code_version()) == key


@pytest.mark.parametrize(("field", "value"), [
    ("learning_rate", 1e-4), ("lora_r", 8), ("lora_alpha", 32), ("max_steps", 3), ("grad_accum", 4),
    ("micro_batch_size", 2), ("seed", 1), ("packing", True), ("quantization", "nf4"), ("max_length", 64),
])
def test_key_changes_with_each_hyperparameter(keyed, field, value):
    _, _, req, fp, key = keyed
    assert getattr(req.settings, field) != value
    changed = req.model_copy(update={"settings": req.settings.model_copy(update={field: value})})
    assert st.train_key(changed, fp) != key


def test_key_changes_with_method_processes_and_code(keyed):
    _, _, req, fp, key = keyed
    full = req.model_copy(update={"settings": req.settings.model_copy(update={"method": "full"})})
    assert st.train_key(full, fp) != key
    assert st.train_key(req.model_copy(update={"num_processes": 2}), fp) != key
    assert st.train_key(req, fp, code="another-code-version") != key


def test_key_follows_dataset_content_not_its_card(keyed):
    tmp, profile, req, fp, key = keyed
    final = Path(req.data_dir)
    (final / "README.md").write_text("a reworded card\n")
    assert plan(profile)[0][0].key == key
    write_dialogs(split_file(final, "train"), [dialog(i) for i in range(4)] + [dialog(7, "Fourteen.")])
    assert st.dataset_fingerprint(final) != fp
    assert plan(profile)[0][0].key != key


def test_key_follows_model_content_not_its_path(keyed):
    tmp, profile, req, fp, key = keyed
    moved = tmp / "elsewhere" / "llama"
    shutil.copytree(tmp / "llama", moved)
    same = req.model_copy(update={"model": req.model.model_copy(update={"hf_id": str(moved)})})
    assert st.train_key(same, fp) == key
    cfg = json.loads((moved / "config.json").read_text())
    (moved / "config.json").write_text(json.dumps({**cfg, "rms_norm_eps": 1e-5}))
    assert st.train_key(same, fp) != key
    targets = req.model_copy(update={"model": req.model.model_copy(update={"lora_targets": ("q_proj",)})})
    assert st.train_key(targets, fp) != key
    hub = req.model_copy(update={"model": req.model.model_copy(update={"hf_id": "org/m"})})
    rev = req.model_copy(update={"model": req.model.model_copy(update={"hf_id": "org/m", "revision": "v2"})})
    assert len({st.train_key(hub, fp), st.train_key(rev, fp), key}) == 3


def test_key_follows_the_deepspeed_files_content(run):
    tmp, profile = run
    job = next(j for j in plan(profile)[0] if j.request.settings.method == "full")
    fp = st.dataset_fingerprint(job.request.data_dir)
    copy = tmp / "copy.json"
    shutil.copy(tmp / "ds.json", copy)
    moved = job.request.model_copy(update={"settings": job.request.settings.model_copy(update={"deepspeed": str(copy)})})
    assert st.train_key(moved, fp) == job.key
    copy.write_text('{"zero_optimization": {"stage": 2}}')
    assert st.train_key(moved, fp) != job.key


# ---- running a cell ------------------------------------------------------------------------------

# Stands in for `python -m ruinstruct.train.launch FILE`; FAKE_TRAIN picks what it does.
FAKE = textwrap.dedent("""
    import json, os, pathlib, sys
    req = json.loads(pathlib.Path(sys.argv[1]).read_text())
    out = pathlib.Path(req["out_dir"])
    mode = os.environ["FAKE_TRAIN"]
    with open(out / "launches.txt", "a") as f:
        f.write("launch\\n")
    if mode == "ok":
        print("step 1/2 loss 2.0000", flush=True)
        print("step 2/2 loss 1.0000", flush=True)
        summary = {"output": str(out), "steps": 2, "wall_s": 1.5, "tokens_per_s": 123.456, "peak_memory_mb": 512.0, "real_token_fraction": 0.987654,
                   "peak_memory_kind": "cpu_max_rss", "metrics": {"final_train_loss": 1.0, "final_eval_loss": 1.25}}
        (out / "train_summary.json").write_text(json.dumps(summary))
    elif mode == "usererror":
        print("loading", flush=True)
        print("models.tl.lora_targets: 'nope' matches no module", file=sys.stderr, flush=True)
        sys.exit(2)
    elif mode == "crash":
        for i in range(30):
            print(f"line {i}", flush=True)
        raise RuntimeError("boom")
""")


@pytest.fixture
def fake(monkeypatch, tmp_path):
    script = tmp_path / "fake_launch.py"
    script.write_text(FAKE)
    monkeypatch.setattr(st, "launch_command", lambda req, request_file: [sys.executable, str(script), str(request_file)])
    monkeypatch.setenv("FAKE_TRAIN", "ok")
    return monkeypatch


def launches(job) -> int:
    f = Path(job.request.out_dir) / "launches.txt"
    return len(f.read_text().splitlines()) if f.exists() else 0


def test_run_job_streams_the_log_and_records_a_finished_run(run, fake):
    tmp, profile = run
    job = plan(profile)[0][0]
    lines: list[str] = []
    summary = st.run_job(job, lines.append)
    assert lines == ["step 1/2 loss 2.0000", "step 2/2 loss 1.0000"]
    assert summary["steps"] == 2 and launches(job) == 1
    out = Path(job.request.out_dir)
    assert json.loads((out / "train_request.json").read_text())["out_dir"] == str(out)
    assert json.loads((out / TRAIN_KEY).read_text()) == {"key": job.key, "cell": job.name, "finished": True}
    assert st.summary_rows(summary) == [
        {"metric": "steps", "value": 2}, {"metric": "final train loss", "value": 1.0},
        {"metric": "final validation loss", "value": 1.25}, {"metric": "tokens/s", "value": 123.5},
        {"metric": "real-token fraction of batches", "value": 0.9877}, {"metric": "peak memory (MiB, cpu_max_rss)", "value": 512.0}, {"metric": "wall time (s)", "value": 1.5},
        {"metric": "output", "value": str(out)},
    ]
    # planned again: finished, so a cached result may stand; its folder deleted: recomputed
    assert plan(profile)[0][0].refresh is False
    shutil.rmtree(out)
    assert plan(profile)[0][0].refresh is True


def test_a_finished_run_is_not_launched_again(run, fake):
    _, profile = run
    job = plan(profile)[0][0]
    st.run_job(job, lambda line: None)
    fake.setenv("FAKE_TRAIN", "crash")  # would fail if it were started
    lines: list[str] = []
    again = st.run_job(job, lines.append)
    assert again["reused"] is True and launches(job) == 1
    assert lines == [f"{job.name}: already trained in {job.request.out_dir} (same inputs)"]


def test_a_folder_of_other_inputs_is_emptied_first(run, fake):
    _, profile = run
    job = plan(profile)[0][0]
    out = Path(job.request.out_dir)
    (out / "checkpoints" / "checkpoint-5").mkdir(parents=True)
    (out / TRAIN_KEY).write_text(json.dumps({"key": "train-old", "finished": True}))
    (out / TRAIN_SUMMARY).write_text("{}")
    st.run_job(job, lambda line: None)
    assert not (out / "checkpoints").exists() and launches(job) == 1


def test_a_killed_run_of_the_same_key_keeps_its_checkpoints(run, fake):
    _, profile = run
    job = plan(profile)[0][0]
    out = Path(job.request.out_dir)
    (out / "checkpoints" / "checkpoint-1").mkdir(parents=True)
    (out / TRAIN_KEY).write_text(json.dumps({"key": job.key, "cell": job.name, "finished": False}))
    st.run_job(job, lambda line: None)
    assert (out / "checkpoints" / "checkpoint-1").is_dir()  # the training process resumes from it


def test_an_expected_error_is_one_line_naming_the_cell(run, fake):
    _, profile = run
    job = plan(profile)[0][0]
    fake.setenv("FAKE_TRAIN", "usererror")
    lines: list[str] = []
    with pytest.raises(st.TrainProcessError) as e:
        st.run_job(job, lines.append)
    assert str(e.value) == f"train {job.name}: models.tl.lora_targets: 'nope' matches no module"
    assert e.value.returncode == 2 and lines == ["loading", "models.tl.lora_targets: 'nope' matches no module"]
    assert json.loads((Path(job.request.out_dir) / TRAIN_KEY).read_text())["finished"] is False
    assert plan(profile)[0][0].refresh is True


def test_a_crash_comes_with_the_last_lines_of_its_output(run, fake):
    _, profile = run
    job = plan(profile)[0][0]
    fake.setenv("FAKE_TRAIN", "crash")
    with pytest.raises(st.TrainProcessError) as e:
        st.run_job(job, lambda line: None)
    msg = str(e.value).splitlines()
    assert msg[0] == f"train {job.name}: the training process failed (exit code 1); the last lines of its output:"
    assert len(msg) == 1 + st.TAIL_LINES and msg[-1] == "RuntimeError: boom" and "line 29" in msg


def test_an_interrupted_stream_leaves_no_process_behind(tmp_path):
    script = tmp_path / "hang.py"
    script.write_text(textwrap.dedent("""
        import os, subprocess, sys, time
        child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
        print(f"pids {os.getpid()} {child.pid}", flush=True)
        time.sleep(120)
    """))
    pids: list[int] = []

    def on_line(line: str) -> None:
        pids.extend(int(p) for p in line.split()[1:])
        raise KeyboardInterrupt  # as Ctrl-C or the CLI's SIGTERM handler raise it

    with pytest.raises(KeyboardInterrupt):
        st.run_process([sys.executable, str(script)], on_line)
    assert len(pids) == 2
    deadline = time.monotonic() + 5
    alive = pids
    while alive and time.monotonic() < deadline:
        alive = [p for p in pids if psutil.pid_exists(p) and psutil.Process(p).status() != psutil.STATUS_ZOMBIE]
        time.sleep(0.05)
    assert alive == []
