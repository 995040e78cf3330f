"""Case 3: `ruinstruct-pipeline/paper` carries prefect.yaml's weekly cron, switched off. Switched on
(`prefect deployment schedule resume`, what the UI's toggle does), the server's scheduler lists
its upcoming runs as Scheduled flow runs at the cron's times; they never start (the GPU pool is a
docker pool with no worker here). Switched off again, they are gone."""

from __future__ import annotations

import time
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
import yaml

from tests.e2e.conftest import GPU_POOL, REPO, SCHEDULER_LOOP_S

pytestmark = [pytest.mark.e2e]

DEPLOYMENT = "ruinstruct-pipeline/paper"
SCHEDULE_S = 60  # bound on the scheduler's first pass after the resume (it loops every 2 s here)


def yaml_schedule() -> dict:
    spec = yaml.safe_load((REPO / "prefect.yaml").read_text())
    (dep,) = [d for d in spec["deployments"] if d["name"] == "paper" and d["entrypoint"].startswith("flows/pipeline.py")]
    (schedule,) = dep["schedules"]
    return schedule


def weekly_times(cron: str, tz: str, after: datetime, n: int) -> list[datetime]:
    """The next n times of a weekly cron "M H * * D" after `after`, computed here (not by
    Prefect's cron library): the first such weekday and time, then every 7 days."""
    minute, hour, dom, month, dow = cron.split()
    assert dom == month == "*" and minute.isdigit() and hour.isdigit() and dow.isdigit(), f"not weekly: {cron}"
    local = after.astimezone(ZoneInfo(tz))
    weekday = (int(dow) - 1) % 7  # cron: 0 = Sunday; Python: 0 = Monday
    first = local.replace(hour=int(hour), minute=int(minute), second=0, microsecond=0)
    first += timedelta(days=(weekday - first.weekday()) % 7)
    if first <= local:
        first += timedelta(days=7)
    return [first + timedelta(days=7 * k) for k in range(n)]


def scheduled_runs(deployment_id) -> list:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterId
    from prefect.client.schemas.sorting import FlowRunSort

    with get_client(sync_client=True) as client:
        return client.read_flow_runs(
            deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[deployment_id])),
            sort=FlowRunSort.EXPECTED_START_TIME_ASC,
        )


def test_weekly_schedule_of_the_paper_pipeline_lists_its_upcoming_runs_once_resumed(
    prefect_server, project_deployments
):
    from prefect.client.orchestration import get_client

    dep = project_deployments[DEPLOYMENT]
    spec = yaml_schedule()
    (sched,) = dep.schedules
    assert (sched.schedule.cron, sched.schedule.timezone, sched.active) == (
        spec["cron"], spec.get("timezone", "UTC"), False
    )
    # switched off: the scheduler (2 passes at least) made no run
    time.sleep(2 * SCHEDULER_LOOP_S + 1)
    assert scheduled_runs(dep.id) == []

    resumed_at = datetime.now(ZoneInfo("UTC"))
    prefect_server.cli("deployment", "schedule", "resume", DEPLOYMENT, str(sched.id))
    try:
        deadline = time.monotonic() + SCHEDULE_S
        while len(runs := scheduled_runs(dep.id)) < 3:  # the scheduler makes at least 3 (min_runs)
            assert time.monotonic() < deadline, f"{len(runs)} runs after {SCHEDULE_S}s\n{prefect_server.log.read_text()[-3000:]}"
            time.sleep(1)
        time.sleep(SCHEDULER_LOOP_S + 1)  # one more pass adds nothing: the upcoming runs are all there
        runs = scheduled_runs(dep.id)
        print("\n".join(f"  {r.name} {r.state.name} {r.expected_start_time.isoformat()}" for r in runs))
        expected = weekly_times(sched.schedule.cron, sched.schedule.timezone, resumed_at, len(runs))
        assert [r.expected_start_time for r in runs] == expected
        # Prefect's horizon: at least 3 runs, at most 100 days ahead
        assert 3 <= len(runs) and runs[-1].expected_start_time - resumed_at <= timedelta(days=100)
        assert all(r.state.name == "Scheduled" and r.run_count == 0 for r in runs), [r.state for r in runs]
        assert {(r.work_pool_name, r.auto_scheduled) for r in runs} == {(GPU_POOL, True)}
        assert {r.parameters["config"] for r in runs} == {"configs/paper.yaml"}
        with get_client(sync_client=True) as client:
            assert client.read_workers_for_work_pool(GPU_POOL) == []  # nothing could ever start them
            # what `prefect deployment schedule ls` shows: the schedule, now active
            (now,) = client.read_deployment_schedules(dep.id)
            assert (now.id, now.schedule.cron, now.active) == (sched.id, spec["cron"], True)
    finally:
        # back off for the shared server's other tests (the API call `schedule pause` makes)
        with get_client(sync_client=True) as client:
            client.update_deployment_schedule(dep.id, sched.id, active=False)
    # switched off again: its scheduled runs are deleted, none ever ran
    deadline = time.monotonic() + 30
    while remaining := scheduled_runs(dep.id):
        assert time.monotonic() < deadline, [(r.name, r.state.name) for r in remaining]
        time.sleep(1)
