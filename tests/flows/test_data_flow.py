"""The data flow end to end on the tiny profile: states, caching, faults, counts, determinism."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ruinstruct.paths import RunPaths
from tests.flows.conftest import REPO, task_states, tiny_run_config

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("prefect_harness")]


def run(cfg):
    from flows.data import data_flow

    return data_flow(config=cfg, return_state=True)


def final_rows(paths: RunPaths) -> list[dict]:
    from ruinstruct.io import read_dialogs

    return [d for split in ("train", "validation") for d in read_dialogs(paths.final_split(split))]


def shard_states(states: dict[str, str]) -> dict[str, str]:
    return {k: v for k, v in states.items() if k.startswith("translate-")}


def rerun_recomputes_only_dolly_1(cfg, spy) -> None:
    """A rerun of `cfg` after shard dolly#1 failed: it completes, that shard alone is translated
    (Completed), every other comes back Cached."""
    state = run(cfg)
    assert state.is_completed(), state.message
    states = shard_states(task_states(state))
    assert {k for k, v in states.items() if v != "Cached"} == {"translate-dolly-1"}
    assert states["translate-dolly-1"] == "Completed"
    assert spy.shards == [("dolly", 1)]


@pytest.fixture(scope="module")
def first_run(tmp_path_factory, tiny_dir, prefect_harness):
    """One complete run (shared by the tests that only read its outputs)."""
    from ruinstruct import runtime

    runtime.release_all()
    root = tmp_path_factory.mktemp("first") / "run"
    cfg = tiny_run_config(tiny_dir, root)
    state = run(cfg)
    return cfg, state


def test_first_run_completes_and_counts_add_up(first_run):
    """The report's counts against the files themselves (check_counts already raised if the
    report disagreed with itself): the raw files, the shard outputs, the kept and rejects files
    of the filter stage, and the dataset rows."""
    from collections import Counter

    from ruinstruct.io import read_dialogs, read_jsonl

    cfg, state = first_run
    assert state.is_completed(), state.message
    paths = RunPaths(Path(cfg.root))
    report = json.loads(paths.report.read_text())
    assert set(report["per_source"]) == {"dolly", "oasst1", "chip2"}
    rows = final_rows(paths)
    translated = Counter(d["source"] for f in paths.translated.rglob("*.parquet") for d in read_dialogs(f))
    kept = Counter(d["source"] for d in read_dialogs(paths.kept))
    filtered_out = Counter(r["source"] for r in read_jsonl(paths.filter_rejects))
    final = Counter((d["source"], d["lang"]) for d in rows)
    for src, r in report["per_source"].items():
        raw = read_dialogs(paths.raw_file(src))
        assert r["dialogs"] == len(raw), src
        assert r["to_translate"] == sum(d["lang"] == "en" for d in raw) > 0, src
        assert r["translated"] == translated[src], src
        assert r["ru_kept"] == kept[src], src
        assert r["filtered_out"] == filtered_out[src], src
        assert (r["final_en"], r["final_ru"]) == (final[src, "en"], final[src, "ru"]), src
        assert r["final"] == final[src, "en"] + final[src, "ru"], src
        # rejects files hold exactly the counted records
        assert sum(1 for _ in paths.raw_rejects(src).open()) == r["invalid"], src
    t = report["totals"]
    assert report["splits"]["train"] + report["splits"]["validation"] == t["final"] == len(rows)
    states = shard_states(task_states(state))
    assert states and set(states.values()) == {"Completed"}
    # the tiny translator is trained: most translations survive the filters
    assert t["ru_kept"] >= 0.6 * t["translated"]


def test_dataset_loads_and_carries_licenses(first_run):
    import datasets

    cfg, _ = first_run
    final = RunPaths(Path(cfg.root)).final
    ds = datasets.load_dataset(str(final))
    rows = ds["train"].to_list() + ds["validation"].to_list()
    assert {r["lang"] for r in rows} == {"en", "ru"}
    lic = {r["source"]: r["license"] for r in rows}
    assert lic == {"dolly": "CC-BY-SA-3.0", "oasst1": "Apache-2.0", "chip2": "Apache-2.0"}
    card = (final / "README.md").read_text()
    for src, license_ in lic.items():
        assert f"| {src} | {license_} |" in card
    ru = [r for r in rows if r["lang"] == "ru"]
    assert all(r["origin_id"] and r["id"] == r["origin_id"] + ":ru" for r in ru)


def test_second_run_is_all_cached_and_translates_nothing(first_run, spy):
    cfg, _ = first_run
    train = RunPaths(Path(cfg.root)).final_split("train")
    before = train.read_bytes()
    state = run(cfg)
    assert state.is_completed(), state.message
    states = shard_states(task_states(state))
    assert states and set(states.values()) == {"Cached"}
    assert spy.shards == [] and spy.calls == 0 and spy.loads == 0
    assert train.read_bytes() == before


def test_fault_in_one_shard_fails_alone_and_retry_recomputes_only_it(tmp_path, tiny_dir, spy):
    cfg = tiny_run_config(tiny_dir, tmp_path / "run")
    paths = RunPaths(tmp_path / "run")
    spy.fail_shard = ("dolly", 1)
    state = run(cfg)
    assert state.is_failed()
    assert "dolly#1" in state.message
    states = shard_states(task_states(state))
    failed = {k for k, v in states.items() if v == "Failed"}
    assert failed == {"translate-dolly-1"}
    assert set(states.values()) == {"Completed", "Failed"}
    # the others are persisted, the report names the failed shard, no final dataset yet
    translated = list(paths.translated.rglob("*.parquet"))
    assert len(translated) == len(states) - 1
    report = json.loads(paths.report.read_text())
    assert [(f["source"], f["index"]) for f in report["failed_shards"]] == [("dolly", 1)]
    assert not paths.final.exists()

    # retry (a rerun of the same config): only the failed shard is computed
    spy.fail_shard = None
    spy.shards.clear()
    rerun_recomputes_only_dolly_1(cfg, spy)


def test_same_config_gives_same_dataset_bytes(first_run, tmp_path, tiny_dir):
    from ruinstruct import runtime

    runtime.release_all()
    cfg, _ = first_run
    other = tiny_run_config(tiny_dir, tmp_path / "again")
    assert run(other).is_completed()
    for split in ("train", "validation"):
        a = RunPaths(Path(cfg.root)).final_split(split).read_bytes()
        b = RunPaths(tmp_path / "again").final_split(split).read_bytes()
        assert a == b, split


def test_commercial_only_refuses_saiga_before_any_work(tmp_path, tiny_dir):
    from ruinstruct.config import SourceConfig

    cfg = tiny_run_config(tiny_dir, tmp_path / "run")
    saiga = SourceConfig(name="saiga/ru_turbo_saiga", kind="saiga", path=str(tmp_path / "none.jsonl"))
    cfg = cfg.model_copy(update={"data": cfg.data.model_copy(update={"sources": [*cfg.data.sources, saiga]})})
    state = run(cfg)
    assert state.is_failed()
    assert "saiga/ru_turbo_saiga" in state.message and "commercial" in state.message
    assert not RunPaths(tmp_path / "run").data.exists()


def test_artifacts_are_published(first_run):
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

    _, state = first_run
    fid = state.state_details.flow_run_id
    with get_client(sync_client=True) as client:
        arts = client.read_artifacts(artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[fid])))
    by_key = {a.key: a for a in arts}
    assert {"data-report", "filter-report", "translation-progress"} <= set(by_key)
    assert "| TOTAL |" in by_key["data-report"].data and "All counts add up: yes" in by_key["data-report"].data
    assert "| filter | rejected |" in by_key["filter-report"].data
    assert by_key["translation-progress"].type == "progress"
    assert float(by_key["translation-progress"].data) == 100.0


def test_local_source_keeps_its_name_and_passes_russian_through(tmp_path, tiny_dir):
    """A local file's records belong to the configured source; a Russian record is not
    translated again, and the counts still add up at every stage."""
    from ruinstruct.config import SourceConfig

    fixture = REPO / "src/ruinstruct/resources/fixtures/local/dialogs.jsonl"
    cfg = tiny_run_config(tiny_dir, tmp_path / "run")
    local = SourceConfig(name="local/mine", kind="local", path=str(fixture), license="MIT")
    cfg = cfg.model_copy(update={"data": cfg.data.model_copy(update={"sources": [local]})})
    state = run(cfg)
    assert state.is_completed(), state.message
    paths = RunPaths(tmp_path / "run")
    report = json.loads(paths.report.read_text())
    r = report["per_source"]["local/mine"]
    assert r["to_translate"] == r["translated"] < r["dialogs"]  # the Russian record is not translated
    assert r["translated"] == r["ru_kept"] + r["filtered_out"]
    assert r["mix_in"] == r["dialogs"] + r["ru_kept"]
    final = final_rows(paths)
    assert len(final) == r["final"] == r["mix_in"] - r["duplicates"] - r["capped"]
    assert {d["source"] for d in final} == {"local/mine"}
    assert {d["license"] for d in final} == {"MIT"}
    native_ru = [d for d in final if d["lang"] == "ru" and "translator" not in d["meta"]]
    assert len(native_ru) == r["dialogs"] - r["to_translate"]


def test_changed_license_is_not_served_from_an_old_shard(tmp_path, tiny_dir):
    from ruinstruct import runtime
    from ruinstruct.io import read_dialogs

    cfg = tiny_run_config(tiny_dir, tmp_path / "run")
    assert run(cfg).is_completed()
    sources = [s.model_copy(update={"license": "CC-BY-SA-3.0-relicensed"}) if s.name == "chip2" else s
               for s in cfg.data.sources]
    cfg2 = cfg.model_copy(update={"data": cfg.data.model_copy(update={"sources": sources})})
    runtime.release_all()
    state = run(cfg2)
    assert state.is_completed()
    states = shard_states(task_states(state))
    assert {k for k, v in states.items() if v != "Cached"} == {k for k in states if "chip2" in k}
    final = read_dialogs(RunPaths(tmp_path / "run").final_split("train"))
    assert {d["license"] for d in final if d["source"] == "chip2"} == {"CC-BY-SA-3.0-relicensed"}
    # results are persisted under the run root, beside their cache records
    assert list(RunPaths(tmp_path / "run").prefect_results.iterdir())


def test_empty_source_is_a_warning_and_no_valid_input_at_all_fails(tmp_path, tiny_dir):
    from ruinstruct.config import SourceConfig

    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n")
    fixture = REPO / "src/ruinstruct/resources/fixtures/local/dialogs.jsonl"
    cfg = tiny_run_config(tiny_dir, tmp_path / "run")
    nothing = SourceConfig(name="local/empty", kind="local", path=str(empty), license="MIT")
    mine = SourceConfig(name="local/mine", kind="local", path=str(fixture), license="MIT")
    with_empty = cfg.model_copy(update={"data": cfg.data.model_copy(update={"sources": [mine, nothing]})})
    state = run(with_empty)
    assert state.is_completed(), state.message
    report = json.loads(RunPaths(tmp_path / "run").report.read_text())
    assert [w for w in report["warnings"] if "local/empty" in w] and report["per_source"]["local/empty"]["final"] == 0
    assert report["per_source"]["local/mine"]["final"] > 0

    only_empty = cfg.model_copy(update={"root": str(tmp_path / "run2"),
                                        "data": cfg.data.model_copy(update={"sources": [nothing]})})
    state = run(only_empty)
    assert state.is_failed()
    assert "no valid dialogs" in state.message and "local/empty" in state.message
    assert not RunPaths(tmp_path / "run2").final.exists()


def test_injected_fault_fails_once_then_the_rerun_recomputes_only_it(tmp_path, tiny_dir, spy):
    """The config's faults.fail_shards_once (what the e2e retry tests inject): the shard fails
    the first time in this root, is not retried by the task itself, and passes the next time."""
    from ruinstruct.config import FaultsConfig

    base = tiny_run_config(tiny_dir, tmp_path / "run")
    cfg = base.model_copy(update={"faults": FaultsConfig(fail_shards_once=["dolly#1"])})
    paths = RunPaths(tmp_path / "run")
    state = run(cfg)
    assert state.is_failed()
    # the shard's own error is in the flow's message, so the CLI's last line says why
    assert state.message.startswith(f"1 of {len(shard_states(task_states(state)))} translation shards failed: dolly#1; dolly#1: ")
    assert state.message.endswith("injected fault (faults.fail_shards_once): shard dolly#1")
    states = shard_states(task_states(state))
    assert {k for k, v in states.items() if v == "Failed"} == {"translate-dolly-1"}
    assert set(states.values()) == {"Completed", "Failed"}
    assert ("dolly", 1) not in spy.shards  # failed before any translation, and not retried at once
    assert paths.fault_marker("dolly", 1).read_text() == "dolly#1\n"
    assert len(list(paths.translated.rglob("*.parquet"))) == len(states) - 1

    spy.shards.clear()
    rerun_recomputes_only_dolly_1(cfg, spy)


def test_dask_runner_gives_the_same_dataset_bytes(first_run, tmp_path, tiny_dir, spy):
    """runner: dask on a real LocalCluster of 2 worker processes: the shards are translated in
    the workers (this process's spy sees no translator load and no shard), every shard task run
    is reported to this flow's server (not to a server of the worker's own), and the dataset is
    the default runner's, byte for byte (every file of the dataset folder)."""
    from ruinstruct import runtime
    from ruinstruct.config import RunnerConfig

    runtime.release_all()
    cfg, _ = first_run
    other = tiny_run_config(tiny_dir, tmp_path / "dask").model_copy(
        update={"runner": RunnerConfig(kind="dask", n_workers=2)}
    )
    state = run(other)
    assert state.is_completed(), state.message
    assert spy.loads == 0 and spy.shards == [] and spy.calls == 0
    default_states = shard_states(task_states(first_run[1]))
    states = shard_states(task_states(state))
    assert set(states) == set(default_states) and set(states.values()) == {"Completed"}
    a_root, b_root = RunPaths(Path(cfg.root)).final, RunPaths(tmp_path / "dask").final
    a = {p.relative_to(a_root): p.read_bytes() for p in sorted(a_root.rglob("*")) if p.is_file()}
    b = {p.relative_to(b_root): p.read_bytes() for p in sorted(b_root.rglob("*")) if p.is_file()}
    assert set(a) == set(b) and len(a) >= 4
    assert [k for k in a if a[k] != b[k]] == []
