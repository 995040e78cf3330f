"""The data flow on the tiny profile with `translation.backend: ctranslate2`: it completes, a rerun
is all Cached, and a change of compute type or of backend translates every shard again."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ruinstruct.paths import RunPaths
from tests.flows.conftest import task_states, tiny_run_config

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("prefect_harness")]


def run(cfg):
    from flows.data import data_flow

    return data_flow(config=cfg, return_state=True)


def shard_states(state) -> dict[str, str]:
    assert state.is_completed(), state.message
    return {k: v for k, v in task_states(state).items() if k.startswith("translate-")}


def test_ctranslate2_backend_runs_caches_and_keys_the_shards(tmp_path, tiny_dir, spy):
    from ruinstruct.io import read_dialogs
    from ruinstruct.translate import ct2
    from ruinstruct.translate.engine import resolve_config

    ct2_dir = tmp_path / "ct2"
    cfg = tiny_run_config(tiny_dir, tmp_path / "run", backend="ctranslate2", compute_type="float32",
                          ct2_dir=str(ct2_dir))
    paths = RunPaths(Path(cfg.root))
    tid = resolve_config(cfg.translation).translator_id

    first = shard_states(run(cfg))
    assert first and set(first.values()) == {"Completed"}
    assert spy.loads == 1 and len(spy.shards) == len(first)
    assert [p.name for p in ct2_dir.iterdir() if ct2.is_converted(p)] == [ct2.model_key(cfg.translation, "float32")]
    report = json.loads(paths.report.read_text())
    t = report["totals"]
    assert t["translated"] > 0 and t["ru_kept"] >= 0.6 * t["translated"]  # the CT2 translations pass the filters
    outputs = sorted(paths.translated.rglob("*.parquet"))
    assert len(outputs) == len(first)
    meta = [json.loads(d["meta"]) if isinstance(d["meta"], str) else d["meta"] for f in outputs for d in read_dialogs(f)]
    assert meta and {m["translator"] for m in meta} == {tid}
    scores = [s for m in meta for msg in m["mt_logprob"] for s in msg]
    assert all(s is None or s <= 0 for s in scores) and any(s is not None for s in scores)  # return_scores' means

    spy.shards.clear()
    again = shard_states(run(cfg))
    assert set(again.values()) == {"Cached"} and again.keys() == first.keys()
    assert spy.shards == [] and spy.loads == 1  # nothing translated, no translator loaded

    for change in ({"compute_type": "int8"}, {"backend": "transformers"}):
        spy.shards.clear()
        changed = cfg.model_copy(update={"translation": cfg.translation.model_copy(update=change)})
        states = shard_states(run(changed))
        assert set(states.values()) == {"Completed"} and states.keys() == first.keys(), change
        assert len(spy.shards) == len(first), change
        assert resolve_config(changed.translation).translator_id != tid
    assert ct2.is_converted(ct2_dir / ct2.model_key(cfg.translation, "int8"))
