"""Case 2: a run of the project's `ruinstruct-data/tiny` deployment with one translation shard
failing once (config `faults: {fail_shards_once: [dolly#1]}`) ends Failed naming the shard, the
other shards persisted; retried with `prefect flow-run retry` (the UI Retry button's state
change, from the CLI), the same flow run completes and only the failed shard is recomputed, the
others come back Cached. Real server, real process worker, the real prefect.yaml. The run is
started as the README shows it, `prefect deployment run 'ruinstruct-data/tiny' --param
config=<profile relative to the checkout> --param output=DIR`, from a folder that is not the
checkout: the flow run resolves the path in its working directory (when the checkout has its tiny
translator; otherwise through the API with an absolute profile)."""

from __future__ import annotations

import pytest

from tests.e2e.helpers import check_failed_attempt, check_retried, read_flow_run

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


def test_cli_retry_of_failed_deployment_run_recomputes_only_the_failed_shard(
    prefect_server, data_runs, faulty_data_runs, process_worker
):
    run, root = faulty_data_runs["retry-cli"]
    first, before, _ = check_failed_attempt(run.id, root, process_worker.logs)
    if data_runs.readme is not None:
        # the path as typed, not resolved by the CLI; nothing ran or was written where it was typed
        assert read_flow_run(run.id).parameters == {"config": data_runs.readme.config, "output": str(root)}
        assert list(data_runs.readme.cwd.iterdir()) == []
    else:
        print("the checkout has no .cache/tiny/translator: the run was started with an absolute profile")

    res = prefect_server.cli("flow-run", "retry", str(run.id))
    assert "scheduled for retry" in res.stdout, res.stdout
    state = read_flow_run(run.id).state
    retried_at = state.timestamp
    assert not state.is_failed(), state  # AwaitingRetry, or already picked up by the worker

    check_retried(run.id, root, first, before, retried_at, process_worker.logs)
