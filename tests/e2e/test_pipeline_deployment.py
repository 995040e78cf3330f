"""Case 1: the project's own prefect.yaml deployed with `prefect deploy --all` on a real server;
the pipeline deployment triggered from the CLI with parameters (`ruinstruct trigger ... --watch`)
runs on the process worker to Completed, and its artifacts read back through the API hold what
the run wrote."""

from __future__ import annotations

import json

import pytest

from ruinstruct.paths import RunPaths, model_folder
from tests.e2e.conftest import CPU_POOL, GPU_POOL
from tests.e2e.helpers import PIPE_LIMIT, TRAINED, assert_counts, read_artifacts, read_flow_run, subflow_runs

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

def flow_name(flow_id) -> str:
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        return client.read_flow(flow_id).name


FLOWS = ("ruinstruct-data", "ruinstruct-train", "ruinstruct-evaluate", "ruinstruct-pipeline")


def test_deploy_all_registers_the_projects_deployments(project_deployments):
    expected = {f"{f}/{d}" for f in FLOWS for d in ("tiny", "paper")}
    # the session's server is shared with the other e2e modules, which may add their own
    assert expected <= set(project_deployments), sorted(project_deployments)
    for name in sorted(expected):
        dep = project_deployments[name]
        tiny = name.endswith("/tiny")
        assert dep.work_pool_name == (CPU_POOL if tiny else GPU_POOL), name
        assert dep.parameters == {"config": "configs/tiny.yaml" if tiny else "configs/paper.yaml"}, name
        # only the paper pipeline has a schedule, and it starts switched off
        schedules = [(s.schedule.cron, s.active) for s in dep.schedules]
        assert schedules == ([("0 3 * * 1", False)] if name == "ruinstruct-pipeline/paper" else []), name


def test_pipeline_deployment_triggered_from_the_cli_completes_with_its_artifacts(pipeline_run):
    res, root = pipeline_run.res, pipeline_run.root
    print(f"pipeline run: {pipeline_run.seconds:.0f} s\n{res.stdout}")
    assert res.returncode == 0, f"exit {res.returncode}\n{res.stdout}\n{res.stderr}\n{pipeline_run.logs()}"
    assert pipeline_run.flow_run_id, res.stdout

    run = read_flow_run(pipeline_run.flow_run_id)
    assert run.state.is_completed(), run.state
    assert run.parameters == {"config": str(pipeline_run.profile), "output": str(root)}
    by_flow = {flow_name(r.flow_id): r for r in subflow_runs(run.id)}
    assert set(by_flow) == {"ruinstruct-data", "ruinstruct-train", "ruinstruct-evaluate"}, by_flow
    assert all(r.state.is_completed() for r in by_flow.values()), {k: r.state for k, r in by_flow.items()}

    arts = read_artifacts([run.id, *(r.id for r in by_flow.values())])
    keyed = {a.key: a for a in arts if a.key}
    model, method, data = TRAINED
    cell = model_folder(model, method, data)
    train_key = f"train-{cell}"
    assert {"data-report", "translation-progress", "filter-report", train_key, "results-table"} <= set(keyed), (
        sorted(keyed)
    )

    # data-report: the report the run wrote, whose counts add up, rendered as the artifact
    paths = RunPaths(root)
    report = json.loads(paths.report.read_text())
    assert_counts(report, paths, PIPE_LIMIT)
    md = keyed["data-report"].data
    assert "All counts add up: yes" in md, md
    assert str(report["totals"]["final"]) in md
    assert keyed["translation-progress"].data == 100.0
    assert keyed["filter-report"].data.strip()

    # the training cell's table names its output folder, which holds the trained adapter
    train = keyed[train_key]
    assert str(paths.model_dir(model, method, data)) in (train.description or ""), train.description
    rows = json.loads(train.data) if isinstance(train.data, str) else train.data
    assert rows, train

    # results-table: one row, the trained cell, its figures the ones in results/results.json
    table = keyed["results-table"]
    rows = json.loads(table.data) if isinstance(table.data, str) else table.data
    assert [(r["model"], r["data"]) for r in rows] == [(model, data)], rows
    assert rows[0]["method"] == "LoRA", rows
    (row,) = json.loads(paths.results_json.read_text())["rows"]
    assert (row["model"], row["method"], row["data"], row["failed"]) == (model, method, data, [])
    # 2 MMLU questions: 0, 50 or 100 %; the local judge rates 1..10
    assert row["mmlu"] in (0.0, 50.0, 100.0) and 1 <= row["mt_bench_average"] <= 10, row
    assert (rows[0]["MMLU"], rows[0]["average"]) == (f"{row['mmlu']:.2f}", f"{row['mt_bench_average']:.2f}"), rows
