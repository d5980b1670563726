"""In real JupyterLab and Chromium: archive, restore and delete runs, as Kubeflow Pipelines' UI does.

A notebook loop makes a run per edit, and the Runs page only grew: the runner could archive and
delete runs, but the Lab had no way to. Now the Runs page has an "Active | Archived" switch (Kubeflow's
Runs and Archived tabs): tick runs, *Archive*; under Archived, *Restore* or *Delete* (asked first in a
Lab dialog that says it cannot be undone and that artifacts and the cache stay). Rows leave at once,
without a reload; a run still running is refused with the runner's message and fix. A run page has
*Archive* once its run has ended (not while it runs), then an "Archived" badge and *Restore*; a double
click archives once. Runs come from the panel and from the SDK against the Lab's own runner.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from test_archive_routes import load_pipelines

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
pytestmark = pytest.mark.slow

CELLS = [
    "import nbpipe",
    "@nbpipe.component\ndef double(x: int) -> int:\n    return 2 * x",
    "@nbpipe.pipeline\ndef twice(x: int = 1):\n    double(x=x)",
]

def until(check: Any, timeout: float = 30.0) -> None:
    """Poll ``check()`` (the runner's state) until it holds."""
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "the runner never got there"
        time.sleep(0.1)


def open_runs(page: Any, panel: Any) -> Any:
    from playwright.sync_api import expect

    panel.get_by_role("button", name="All runs ↗").click()
    runs = page.locator("#nbpipe-runs")
    expect(runs).to_be_visible(timeout=30_000)
    return runs


def test_archive_restore_and_delete_from_the_runs_list(start_lab: Any, lab_browser: Any, lab_notebook: Any,
                                                       lab_open_panel: Any, lab_run_from_panel: Any,
                                                       tmp_path: Path) -> None:
    from playwright.sync_api import expect

    from nbpipe import Client
    from nbpipe.errors import RunnerError

    lab = start_lab(lab_notebook("twice.ipynb", CELLS))
    pipes = load_pipelines(tmp_path)
    client = Client()  # the Lab's embedded runner (start_lab gave this process its NBPIPE_HOME)
    page = lab_browser.new_page(viewport={"width": 1500, "height": 1000})
    gate = tmp_path / "gate"
    try:
        panel = lab_open_panel(page, lab, "twice.ipynb", "twice")
        first = lab_run_from_panel(panel, x="3")
        second = client.submit(pipes.quick, {"x": 2}, name="second").wait(timeout=300).id
        third = client.submit(pipes.quick, {"x": 3}, name="third").wait(timeout=300).id
        live = client.submit(pipes.held, {"gate": str(gate)}, name="live run").id
        runs = open_runs(page, panel)
        rows = runs.locator("tr.nbp-runs-row")
        row = lambda run: runs.locator(f'tr.nbp-runs-row[data-run="{run}"]')  # noqa: E731
        expect(rows).to_have_count(4, timeout=30_000)
        expect(row(live)).to_have_attribute("data-state", "running", timeout=60_000)
        page.evaluate("window.nbpipeNotReloaded = true")
        selected = runs.locator('.nbp-storage-tab[aria-selected="true"]')
        expect(selected).to_have_text("Active")
        archive = runs.locator('.nbp-storage-button[data-action="archive"]')
        restore = runs.locator('.nbp-storage-button[data-action="unarchive"]')
        delete = runs.locator('.nbp-storage-button[data-action="delete"]')
        expect(archive).to_be_disabled()  # nothing ticked
        expect(restore).to_be_hidden()
        expect(delete).to_be_hidden()

        # Archive two runs: they leave Active at once, and Archived lists them.
        row(first).locator(".nbp-pick").check()
        row(second).locator(".nbp-pick").check()
        expect(archive).to_have_text("Archive 2")
        archive.click()
        expect(rows).to_have_count(2)
        expect(row(first)).to_have_count(0)
        expect(row(third)).to_have_count(1)
        expect(runs.locator(".nbp-storage-message")).to_contain_text("2 runs archived")
        assert {r["id"] for r in client.runs(archived=True)} == {first, second}
        runs.locator('.nbp-storage-tab[data-archived="true"]').click()
        expect(selected).to_have_text("Archived")
        expect(rows).to_have_count(2)
        assert {rows.nth(i).get_attribute("data-run") for i in range(2)} == {first, second}
        expect(archive).to_be_hidden()
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "lab-runs-archived.png"))

        # Restore one: back in Active.
        row(first).locator(".nbp-pick").check()
        restore.click()
        expect(rows).to_have_count(1)
        expect(row(second)).to_have_count(1)
        until(lambda: client.get_run(first)["archived_at"] is None)

        # Delete asks first; Keep keeps it.
        row(second).locator(".nbp-pick").check()
        delete.click()
        dialog = page.locator(".jp-Dialog")
        expect(dialog.locator(".jp-Dialog-header")).to_have_text("Delete run?")
        expect(dialog.locator(".jp-Dialog-body")).to_contain_text("cannot be undone")
        expect(dialog.locator(".jp-Dialog-body")).to_contain_text("artifacts and the step cache stay")
        expect(dialog.locator(".jp-Dialog-body")).to_contain_text(second)
        dialog.get_by_role("button", name="Keep").click()
        expect(dialog).to_have_count(0)
        expect(row(second)).to_have_count(1)
        assert client.get_run(second)["archived_at"]
        delete.click()
        dialog.get_by_role("button", name="Delete", exact=True).click()
        expect(rows).to_have_count(0)
        expect(runs.locator(".nbp-empty")).to_have_text("No archived runs.")
        with pytest.raises(RunnerError, match="No run"):
            client.get_run(second)

        runs.locator('.nbp-storage-tab[data-archived="false"]').click()
        expect(rows).to_have_count(3)
        expect(row(first)).to_have_count(1)

        # A run still running is refused, with the runner's words and the fix; it stays listed.
        row(live).locator(".nbp-pick").check()
        archive.click()
        alert = runs.locator(".nbp-storage-message .nbp-error")
        refusal = f"Run {live} is running: it cannot be archived"
        expect(alert.locator(".nbp-error-message")).to_contain_text(refusal)
        expect(alert.locator(".nbp-error-hint")).to_contain_text("Cancel it first")
        expect(rows).to_have_count(3)
        page.screenshot(path=str(ARTIFACTS / "lab-runs-archive-refused.png"))
        assert client.get_run(live)["archived_at"] is None
        assert page.evaluate("window.nbpipeNotReloaded") is True  # all of it without a reload
    finally:
        gate.write_text("go")
        page.close()


def test_run_page_archives_a_finished_run_and_restores_it(start_lab: Any, lab_browser: Any, lab_notebook: Any,
                                                          lab_open_panel: Any, tmp_path: Path) -> None:
    from playwright.sync_api import expect

    from nbpipe import Client

    lab = start_lab(lab_notebook("twice.ipynb", CELLS))
    pipes = load_pipelines(tmp_path)
    client = Client()
    done = client.submit(pipes.quick, {"x": 5}, name="finished").wait(timeout=300).id
    gate = tmp_path / "gate"
    live = client.submit(pipes.held, {"gate": str(gate)}, name="still going").id
    page = lab_browser.new_page(viewport={"width": 1500, "height": 1000})
    try:
        panel = lab_open_panel(page, lab, "twice.ipynb", "twice")
        runs = open_runs(page, panel)
        listed = runs.locator(f'tr.nbp-runs-row[data-run="{done}"]')
        expect(listed).to_have_count(1, timeout=30_000)
        listed.locator(".nbp-run-link").click()
        run_page = page.locator(f'.nbp-runpage[data-run="{done}"]')
        button = run_page.locator(".nbp-archive-button")
        badge = run_page.locator(".nbp-archived-badge")
        expect(button).to_have_text("Archive", timeout=30_000)
        expect(badge).to_be_hidden()

        # A double click archives once: it does not archive, then restore.
        button.dblclick()
        expect(badge).to_be_visible()
        expect(button).to_have_text("Restore")
        expect(run_page.locator(".rv-notice")).to_contain_text("Run archived")
        until(lambda: client.get_run(done)["archived_at"] is not None)
        expect(button).to_have_text("Restore")  # still, after every answer came back
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "lab-run-page-archived.png"))
        assert client.get_run(done)["archived_at"] is not None
        page.locator('.lm-TabBar-tab:has-text("Runs")').first.click()
        expect(listed).to_have_count(0)  # the open Runs page dropped it at once

        page.locator(f'.lm-TabBar-tab[data-id="nbpipe-run-{done}"]').click()
        button.click()
        expect(badge).to_be_hidden()
        expect(button).to_have_text("Archive")
        until(lambda: client.get_run(done)["archived_at"] is None)
        page.locator('.lm-TabBar-tab:has-text("Runs")').first.click()
        expect(listed).to_have_count(1)

        # A running run's page has no Archive until the run ends.
        live_row = runs.locator(f'tr.nbp-runs-row[data-run="{live}"]')
        expect(live_row).to_have_attribute("data-state", "running", timeout=60_000)
        live_row.locator(".nbp-run-link").click()
        live_page = page.locator(f'.nbp-runpage[data-run="{live}"]')
        pill = live_page.locator(".rv-header .rv-pill")
        expect(pill).to_have_class("rv-pill rv-state-running", timeout=30_000)
        expect(live_page.locator(".nbp-archive-button")).to_be_hidden()
        gate.write_text("go")
        expect(pill).to_have_class("rv-pill rv-state-succeeded", timeout=120_000)
        expect(live_page.locator(".nbp-archive-button")).to_have_text("Archive")
        expect(live_page.locator(".nbp-archive-button")).to_be_visible()
    finally:
        gate.write_text("go")
        page.close()


def test_runs_archived_or_deleted_elsewhere_leave_an_open_runs_page(start_lab: Any, lab_browser: Any, lab_notebook: Any,
                                                                    lab_open_panel: Any, tmp_path: Path) -> None:
    """From a notebook (run.archive(), run.delete()) or the CLI, not this page: the runner's RunStorage event
    reaches the open Runs page, which drops the rows without a reload and lists the archived one under Archived."""
    from playwright.sync_api import expect

    from nbpipe import Client

    lab = start_lab(lab_notebook("twice.ipynb", CELLS))
    pipes = load_pipelines(tmp_path)
    client = Client()
    page = lab_browser.new_page(viewport={"width": 1500, "height": 1000})
    try:
        panel = lab_open_panel(page, lab, "twice.ipynb", "twice")
        kept, archived, deleted = (client.submit(pipes.quick, {"x": x}, name=f"run {x}").wait(timeout=300)
                                   for x in (1, 2, 3))
        runs = open_runs(page, panel)
        row = lambda run: runs.locator(f'tr.nbp-runs-row[data-run="{run}"]')  # noqa: E731
        for r in (kept, archived, deleted):
            expect(row(r.id)).to_have_count(1, timeout=30_000)
        page.evaluate("window.nbpipeNotReloaded = true")
        archived.archive()
        deleted.delete()
        expect(row(archived.id)).to_have_count(0, timeout=30_000)
        expect(row(deleted.id)).to_have_count(0, timeout=30_000)
        expect(row(kept.id)).to_have_count(1)
        runs.locator(".nbp-storage-tab", has_text="Archived").click()
        expect(row(archived.id)).to_have_count(1, timeout=30_000)
        archived.unarchive()  # restored elsewhere: it leaves the Archived list too
        expect(row(archived.id)).to_have_count(0, timeout=30_000)
        assert page.evaluate("window.nbpipeNotReloaded") is True
    finally:
        page.close()
