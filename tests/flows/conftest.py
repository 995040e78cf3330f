"""Flow tests: one Prefect test harness per session, the tiny translator, a spy on translation."""

from __future__ import annotations

import os
from pathlib import Path
from types import SimpleNamespace

import pytest

from ruinstruct.config import RunConfig, load_config

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def prefect_harness(tmp_path_factory):
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield


def tiny_run_config(tiny_dir: Path, root: Path, **translation) -> RunConfig:
    cfg = load_config(REPO / "configs" / "tiny.yaml")
    tr = cfg.translation.model_copy(update={"model": str(tiny_dir / "translator"), **translation})
    return cfg.model_copy(update={"root": str(root), "translation": tr})


class SpyTranslator:
    """Wraps the real translator and counts what is sent to it."""

    def __init__(self, inner, state):
        self.inner, self.state = inner, state

    @property
    def id(self):
        return self.inner.id

    def translate(self, texts):
        self.state.calls += 1
        self.state.texts += len(texts)
        return self.inner.translate(texts)

    def translate_scored(self, texts):
        self.state.calls += 1
        self.state.texts += len(texts)
        return self.inner.translate_scored(texts)


@pytest.fixture
def spy(monkeypatch):
    """Counts translator loads, translate() calls and texts, and shard translations."""
    from ruinstruct import runtime
    from ruinstruct.translate import engine, shards

    state = SimpleNamespace(loads=0, calls=0, texts=0, shards=[], fail_shard=None)
    real_load, real_shard = engine.load_translator, shards.translate_shard

    def load(cfg):
        state.loads += 1
        return SpyTranslator(real_load(cfg), state)

    def shard(ref, out_path, translator, cache, **kw):
        state.shards.append((ref["source"], ref["index"]))
        if state.fail_shard == (ref["source"], ref["index"]):
            raise RuntimeError(f"injected fault in shard {ref['source']}#{ref['index']}")
        return real_shard(ref, out_path, translator, cache, **kw)

    monkeypatch.setattr(engine, "load_translator", load)
    monkeypatch.setattr(shards, "translate_shard", shard)
    runtime.release_all()
    yield state
    runtime.release_all()


def task_states(flow_state) -> dict[str, str]:
    """Task run name -> final state name ("Completed", "Cached", "Failed") of a flow run."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    fid = flow_state.state_details.flow_run_id
    with get_client(sync_client=True) as client:
        runs = client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[fid])))
    return {r.name: r.state.name for r in runs}
