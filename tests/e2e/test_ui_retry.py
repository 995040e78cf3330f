"""The Prefect UI in a real browser: Debian's headless Chromium driven by Playwright (the system
browser's executable; no browser is ever downloaded). A data deployment run with one injected
shard fault is opened in the local UI, retried with its Retry button as a user would; the run
completes with only the failed shard recomputed. Then the pipeline run's results-table artifact
page is photographed, kept in $RUINSTRUCT_E2E_OUT (default .cache/e2e/ of the checkout)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.e2e.conftest import REPO
from tests.e2e.helpers import (
    check_failed_attempt,
    check_retried,
    read_artifacts,
    read_flow_run,
    subflow_runs,
)

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

os.environ.setdefault("PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD", "1")
UI_S = 30_000  # ms: bound on any one page action (the UI loads in ~2 s here)


def system_chromium() -> str | None:
    for name in ("chromium", "chromium-browser"):
        if path := shutil.which(name):
            return path
    return next((p for p in ("/usr/bin/chromium", "/usr/lib/chromium/chromium") if os.access(p, os.X_OK)), None)


@pytest.fixture
def chromium() -> str:
    exe = system_chromium()
    if exe is None:
        pytest.skip("no chromium executable on PATH or in /usr/bin (Debian package `chromium`, `make browser`): "
                    "the UI test needs the system browser and never downloads one")
    return exe


@contextmanager
def open_browser(exe: str):
    """Headless system Chromium. Opened only after the Prefect calls that need no browser:
    Prefect's sync-compatible helpers (run_deployment) do not mix with Playwright's event loop."""
    from playwright.sync_api import sync_playwright

    version = subprocess.run([exe, "--version"], capture_output=True, text=True, timeout=30).stdout
    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=exe, headless=True)
        try:
            assert b.version in version, f"launched {b.version}, the system browser is {version!r}"
            yield b
        finally:
            b.close()


def state_history(flow_run_id) -> list:
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        return client.read_flow_run_states(flow_run_id)


def test_retry_button_in_the_ui_recomputes_only_the_failed_shard(
    prefect_server, chromium, faulty_data_runs, process_worker, tmp_path
):
    run, root = faulty_data_runs["retry-ui"]
    first, before, _ = check_failed_attempt(run.id, root, process_worker.logs)

    with open_browser(chromium) as browser:
        retry_in_the_ui(browser, prefect_server.ui, run, tmp_path)

    # the UI's retry: the same flow run set to Scheduled/AwaitingRetry, then run again by the worker
    deadline = time.monotonic() + 10
    while not (retry := [s for s in state_history(run.id) if s.name == "AwaitingRetry"]):
        assert time.monotonic() < deadline, [(s.name, s.message) for s in state_history(run.id)]
        time.sleep(0.5)
    assert len(retry) == 1 and retry[0].message == "Retry from the UI", [(s.name, s.message) for s in retry]
    check_retried(run.id, root, first, before, retry[0].timestamp, process_worker.logs)
    assert read_flow_run(run.id).run_count == 2


def retry_in_the_ui(browser, ui: str, run, tmp_path: Path) -> None:
    """Open the failed flow run's page, click Retry, confirm the dialog."""
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.set_default_timeout(UI_S)
    page.goto(f"{ui}/runs/flow-run/{run.id}")
    page.get_by_text(run.name).first.wait_for()
    page.get_by_text("Failed", exact=True).first.wait_for()
    page.screenshot(path=str(tmp_path / "failed-run.png"))
    page.get_by_role("button", name="Retry").first.click()  # the flow run page's header button
    dialog = page.get_by_role("dialog")
    dialog.wait_for()
    assert f"Retry {run.name}?" in dialog.inner_text(), dialog.inner_text()
    dialog.get_by_role("button", name="Retry").click()  # confirm
    dialog.wait_for(state="hidden")
    page.close()


def test_results_table_artifact_page_shows_the_pipelines_table(prefect_server, pipeline_run, chromium, tmp_path):
    assert pipeline_run.res.returncode == 0, pipeline_run.res.stdout + pipeline_run.res.stderr
    ids = [pipeline_run.flow_run_id, *(r.id for r in subflow_runs(pipeline_run.flow_run_id))]
    (art,) = read_artifacts(ids, "results-table")
    rows = art.data if isinstance(art.data, list) else json.loads(art.data)
    (row,) = rows

    shot = Path(tmp_path) / "results-table.png"
    with open_browser(chromium) as browser:
        page = browser.new_page(viewport={"width": 2200, "height": 900})
        page.set_default_timeout(UI_S)
        page.goto(f"{prefect_server.ui}/artifacts/artifact/{art.id}")
        table = page.locator("table")
        table.get_by_text(row["model"], exact=True).wait_for()
        page.screenshot(path=str(shot), full_page=True)
        text = table.inner_text()
    # tmp_path is pruned after a few sessions: a copy where a person or CI can pick it up
    kept = Path(os.environ.get("RUINSTRUCT_E2E_OUT") or REPO / ".cache" / "e2e") / "results-table.png"
    kept.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(shot, kept)
    print(f"results-table artifact page: {kept} (and {shot})")
    # the table as the UI renders it: the artifact's headers and the trained model's row
    for key in ("model", "method", "data", "MMLU"):
        assert key in text, text
    for value in (row["model"], row["method"], row["MMLU"], row["average"]):
        assert value in text, (value, text)
    assert shot.stat().st_size > 10_000
