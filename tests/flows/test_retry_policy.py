"""Downloads retry only on network trouble: a hub source under offline mode fails at once."""

from __future__ import annotations

from ruinstruct.config import RunConfig


def test_offline_hub_source_fails_without_retrying(prefect_harness, tiny_dir, tmp_path, monkeypatch):
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    from flows.data import data_flow

    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))  # nothing cached
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    cfg = RunConfig.model_validate({
        "name": "offline",
        "root": str(tmp_path / "run"),
        "data": {"hf_offline": True,
                 "sources": [{"name": "dolly", "kind": "dolly", "hf_id": "ruinstruct-tests/no-such-dataset"}]},
        "translation": {"model": str(tiny_dir / "translator")},
    })
    state = data_flow(config=cfg, return_state=True)
    assert state.is_failed()

    with get_client(sync_client=True) as client:
        fid = state.state_details.flow_run_id
        runs = client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[fid])))
        loads = [r for r in runs if r.name == "load-dolly"]
        assert len(loads) == 1
        history = [s.name for s in client.read_task_run_states(loads[0].id)]
    assert loads[0].state.name == "Failed"
    assert loads[0].run_count == 1
    assert "AwaitingRetry" not in history and "Retrying" not in history, history
    assert "OfflineModeIsEnabled" in loads[0].state.message or "Couldn't reach" in loads[0].state.message
