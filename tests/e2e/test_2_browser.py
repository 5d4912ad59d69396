"""What a person sees: Debian's chromium, headless with a fresh profile, starts a custom run of the pipeline
deployment through its run form in the Prefect UI, then the flow-run page shows Completed, the subflows and the
artifacts. Screenshots go to docs/screenshots/ (the README shows them).

Needs /usr/bin/chromium (scripts/setup.sh installs it as root) and the playwright package driving it through
``executable_path`` (no browser download); skips with the reason otherwise.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import pytest

from tests.e2e.conftest import REPO, tiny

pytestmark = [pytest.mark.server, pytest.mark.slow]

SHOTS = REPO / "docs" / "screenshots"


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.skip("Debian's chromium is not installed (scripts/setup.sh installs it when run as root with apt)")
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed in the venv")
    profile = tmp_path_factory.mktemp("chromium-profile")
    with sync_api.sync_playwright() as p:
        context = p.chromium.launch_persistent_context(str(profile), executable_path=chromium, headless=True,
                                                       viewport={"width": 1400, "height": 1000},
                                                       args=["--no-sandbox", "--disable-gpu"])
        try:
            yield context
        finally:
            context.close()


def run_ids(served, deployment_id: str) -> list[str]:
    found = served.client.post("/flow_runs/filter", json={"flow_runs": {"deployment_id": {"any_": [deployment_id]}}})
    assert found.status_code == 200, found.text
    return [r["id"] for r in found.json()]


def test_a_custom_run_from_the_deployment_form_completes_with_subflows_and_artifacts(served, browser):
    deployment = served.deployment("pipeline/pipeline")
    # the deployment's form defaults: the tiny preset on the corpus slice (an operator's edit of the defaults)
    patched = served.client.patch(f"/deployments/{deployment['id']}", json={"parameters": tiny(served)})
    assert patched.status_code == 204, patched.text
    ui = served.api.removesuffix("/api")
    SHOTS.mkdir(parents=True, exist_ok=True)
    page = browser.new_page()
    page.goto(f"{ui}/deployments/deployment/{deployment['id']}", wait_until="networkidle")
    page.get_by_text("pipeline", exact=False).first.wait_for(timeout=60_000)
    page.screenshot(path=str(SHOTS / "deployment.png"))
    page.goto(f"{ui}/deployments/deployment/{deployment['id']}/run", wait_until="networkidle")
    submit = page.get_by_role("button", name="Submit")
    submit.wait_for(timeout=60_000)
    # the form is ready when it shows the deployment's defaults (the corpus path is the patched one) and the
    # page has stopped loading: under a loaded CI machine a click before that was once lost
    page.wait_for_function("path => [...document.querySelectorAll('input, textarea')].some(e => e.value === path)",
                           arg=str(served.corpus), timeout=60_000)
    page.wait_for_load_state("networkidle")
    page.screenshot(path=str(SHOTS / "custom-run-form.png"), full_page=True)
    before = set(run_ids(served, deployment["id"]))
    submit.click()
    # the UI then shows the deployment's runs (or the new run's page, depending on its version): the run the
    # form created is the deployment's one new flow run. One more click only if, 30 s on, the page is still
    # the form and the server has no new run (so no request can be in flight that would make a second run).
    deadline, clicked_again = time.monotonic() + 120, False
    while not (new := set(run_ids(served, deployment["id"])) - before):
        if time.monotonic() > deadline:
            alerts = page.locator('[role="alert"], .p-message, .p-toast').all_inner_texts()
            raise AssertionError(f"the form's Submit created no flow run; the page is at {page.url}; "
                                 f"messages on it: {alerts}")
        if not clicked_again and time.monotonic() > deadline - 90 and page.url.rstrip("/").endswith("/run"):
            page.wait_for_load_state("networkidle")
            if not set(run_ids(served, deployment["id"])) - before:
                submit.click()
                clicked_again = True
        time.sleep(1.0)
    time.sleep(2.0)
    new = set(run_ids(served, deployment["id"])) - before
    assert len(new) == 1, f"the form made {len(new)} flow runs, not one"
    (run_id,) = new
    run = served.wait(run_id, timeout=600)
    served.assert_completed(run)
    page.goto(f"{ui}/runs/flow-run/{run_id}", wait_until="networkidle")
    page.get_by_text("Completed").first.wait_for(timeout=60_000)
    time.sleep(2)
    page.screenshot(path=str(SHOTS / "flow-run.png"), full_page=True)
    body = page.inner_text("body")
    assert "Completed" in body
    for tab in ("Subflow", "Artifacts"):
        assert tab in body, f"no {tab} tab on the flow-run page"
    page.get_by_role("tab", name="Subflow Runs").or_(page.get_by_text("Subflow Runs")).first.click()
    page.get_by_text("pretrain-tiny-tiny").first.wait_for(timeout=60_000)
    body = page.inner_text("body")
    for name in ("ingest-tiny", "vocab-tiny", "examples-tiny", "pretrain-tiny-tiny", "finetune-tiny_demo_topics"):
        assert name in body, f"subflow {name} not shown"
    page.screenshot(path=str(SHOTS / "flow-run-subflows.png"), full_page=True)
    page.get_by_text("Artifacts").first.click()
    page.get_by_text("pipeline-tiny").first.wait_for(timeout=60_000)
    page.screenshot(path=str(SHOTS / "flow-run-artifacts.png"), full_page=True)
    assert "pipeline-tiny-overview" in page.inner_text("body")
    assert Path(SHOTS / "flow-run.png").stat().st_size > 10_000
