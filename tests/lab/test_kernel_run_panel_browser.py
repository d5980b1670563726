"""In real JupyterLab and Chromium, as a new user works: cells in the notebook, the panel open beside it.

The user writes the pipeline cell and runs it: the open panel shows the pipeline without a click on
↻. ``%nbpipe run fixme`` in the notebook → a step fails → fix that cell in the editor and run it →
the panel's run list "Re-run from failed" on that kernel run: the fix runs (the notebook as it is
now), the step before it is reused from the failed run.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import nbformat
import pytest

from test_panel_browser import ARTIFACTS, _widen_left_sidebar
from test_rerun_panel_browser import BUG, CELLS, FIX

pytestmark = pytest.mark.slow


def run_cell(page: Any, index: int) -> None:
    cell = page.locator(".jp-NotebookPanel:visible .jp-Cell").nth(index)
    cell.locator(".cm-content").click()
    page.keyboard.press("Shift+Enter")


def test_panel_follows_the_cells_and_reruns_a_kernel_run_with_the_fix(
    start_lab: Any, lab_browser: Any, lab_wait_for_kernel: Any, tmp_path: Path
) -> None:
    from playwright.sync_api import expect

    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.cells = [nbformat.v4.new_code_cell("%load_ext nbpipe\n" + CELLS[0])]
    nb.cells += [nbformat.v4.new_code_cell(c) for c in CELLS[1:4]] + [nbformat.v4.new_code_cell("")]
    nbformat.write(nb, tmp_path / "fixme.ipynb")
    lab = start_lab(tmp_path / "fixme.ipynb")
    ARTIFACTS.mkdir(exist_ok=True)
    page = lab_browser.new_page(viewport={"width": 1600, "height": 1000})
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    try:
        page.goto(f"{lab['url']}/lab/tree/fixme.ipynb?token={lab['token']}")
        page.locator(".jp-NotebookPanel").first.wait_for(timeout=90_000)
        page.locator('.lm-TabBar-tab[data-id="nbpipe-panel"]').click()
        panel = page.locator("#nbpipe-panel")
        expect(panel).to_be_visible()
        _widen_left_sidebar(page, 640)
        expect(panel.locator(".nbp-no-pipeline")).to_be_visible(timeout=120_000)  # components, no pipeline yet
        cells = page.locator(".jp-NotebookPanel:visible .jp-Cell")
        expect(page.locator(".jp-NotebookPanel:visible .jp-Notebook-ExecutionIndicator")).to_have_attribute(
            "data-status", "idle", timeout=90_000)
        lab_wait_for_kernel(page)  # the kernel is up (the indicator above says idle before there is one)
        for i in range(4):
            run_cell(page, i)
        expect(cells.nth(3).locator(".jp-InputPrompt")).to_have_text(re.compile(r"\[\d+\]"), timeout=120_000)

        # The user writes the pipeline cell and runs it: the panel shows it, no ↻ clicked.
        cells.nth(4).locator(".cm-content").click()
        page.keyboard.insert_text(CELLS[4])
        page.keyboard.press("Shift+Enter")
        expect(panel.locator(".nbp-pipeline-name")).to_have_text("fixme", timeout=120_000)

        page.keyboard.insert_text("%nbpipe run fixme")  # Shift+Enter made a new cell below
        page.keyboard.press("Shift+Enter")
        graph = cells.nth(5).locator(".nbpipe-run-view")
        expect(graph.locator(".rv-header .rv-pill")).to_have_class(re.compile(r"\brv-state-failed\b"), timeout=240_000)
        expect(graph.locator(".rv-run-reason")).to_contain_text("ZeroDivisionError")  # what failed, in the header
        failed_id = graph.locator(".rv-subtitle").inner_text().split(" · ")[-1]

        # Fix the divide cell in the editor and run it (not saved by hand).
        cells.nth(2).locator(".cm-content").click()
        page.keyboard.press("Control+End")
        for _ in range(len("by")):
            page.keyboard.press("Backspace")
        page.keyboard.type("(by or 1)")
        page.keyboard.press("Shift+Enter")

        item = panel.locator(f'.nbp-run[data-run="{failed_id}"]')  # the run list follows the runner live
        expect(item).to_be_visible(timeout=60_000)
        item.get_by_role("button", name="Re-run from failed").click()
        view = panel.locator(".nbpipe-run-view")
        expect(view.locator(".rv-subtitle")).not_to_contain_text(failed_id, timeout=120_000)
        expect(view.locator(".rv-header .rv-pill")).to_have_class(re.compile(r"\brv-state-succeeded\b"), timeout=240_000)
        expect(view.locator('.rv-node[data-step="prep"]')).to_have_class(re.compile(r"\brv-state-cached\b"))
        assert f"reused from run {failed_id}" in view.locator('.rv-node[data-step="prep"]').get_attribute("title")
        for step in ("divide", "report"):
            expect(view.locator(f'.rv-node[data-step="{step}"]')).to_have_class(re.compile(r"\brv-state-succeeded\b"))
        assert FIX.strip() in (lab["root"] / "fixme.ipynb").read_text() and BUG.strip() not in (
            lab["root"] / "fixme.ipynb").read_text()
    finally:
        page.screenshot(path=str(ARTIFACTS / "lab-panel-rerun-kernel-run.png"))
        page.close()
    noisy = [m for m in errors if "nbpipe" in m.lower()]
    assert not noisy, noisy


SLOW = [
    "%load_ext nbpipe\nimport nbpipe",
    "@nbpipe.component\ndef slow(n: int) -> int:\n    import time\n    time.sleep(600)\n    return n\n\n"
    "@nbpipe.pipeline\ndef slowp(n: int = 1):\n    slow(n=n)",
    "%nbpipe run slowp",
    "%nbpipe run slowp n=2",
]


def test_cancel_a_long_run_from_the_graph_and_from_the_panel(start_lab: Any, lab_browser: Any,
                                                             lab_wait_for_kernel: Any, tmp_path: Path) -> None:
    """Two long runs: one cancelled with the graph's Cancel; after a page reload the panel and the
    notebook's graph follow the other one again (the graph stayed a saved snapshot when the kernel
    connected after the output rendered), cancelled with the panel list's. Each ends cancelled, and
    no "Cancelling run …" note stays behind once it has."""
    from playwright.sync_api import expect

    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.cells = [nbformat.v4.new_code_cell(c) for c in SLOW]
    nbformat.write(nb, tmp_path / "slow.ipynb")
    lab = start_lab(tmp_path / "slow.ipynb")
    page = lab_browser.new_page(viewport={"width": 1600, "height": 1000})
    try:
        page.goto(f"{lab['url']}/lab/tree/slow.ipynb?token={lab['token']}")
        notebook = page.locator(".jp-NotebookPanel:visible")
        expect(notebook.locator(".jp-Notebook-ExecutionIndicator")).to_have_attribute("data-status", "idle", timeout=90_000)
        page.locator('.lm-TabBar-tab[data-id="nbpipe-panel"]').click()
        panel = page.locator("#nbpipe-panel")
        expect(panel).to_be_visible()
        # Lab may still ask which kernel (its session is being set up): the default one. A Run All
        # sent before the kernel is up is dropped by Lab, so wait for it, and run again until the
        # cells have run.
        lab_wait_for_kernel(page)
        for attempt in range(3):
            page.locator(".lm-MenuBar-item", has_text=re.compile(r"^Run$")).click()
            page.locator('.lm-Menu-item[data-command="runmenu:run-all"]').click()
            try:
                expect(notebook.locator(".jp-Cell").nth(3).locator(".jp-InputPrompt")).to_have_text(
                    re.compile(r"\[\d+\]"), timeout=60_000)
                break
            except AssertionError:
                if attempt == 2:
                    raise
        graphs = [notebook.locator(".jp-Cell").nth(i).locator(".nbpipe-run-view") for i in (2, 3)]
        for graph in graphs:
            expect(graph.locator('.rv-node[data-step="slow"]')).to_have_class(re.compile(r"\brv-state-running\b"), timeout=120_000)

        graphs[0].locator(".rv-header").get_by_role("button", name="Cancel", exact=True).click()
        expect(graphs[0].locator(".rv-header .rv-pill")).to_have_class(re.compile(r"\brv-state-cancelled\b"), timeout=120_000)
        expect(graphs[0].locator(".rv-notice")).to_be_hidden()

        second = graphs[1].locator(".rv-subtitle").inner_text().split(" · ")[-1]
        # A reload mid-run: the panel shows the notebook's live run again, following it (it used to
        # come back with no run shown until one was clicked in the list). Saved first, as Lab asks:
        # a reload drops unsaved outputs, the graph among them.
        notebook.locator(".jp-Cell").first.locator(".jp-InputPrompt").click()
        page.keyboard.press("Control+s")
        expect(page.locator(".lm-TabBar-tab.jp-mod-dirty")).to_have_count(0, timeout=30_000)
        page.reload()
        expect(panel).to_be_visible(timeout=90_000)
        view = panel.locator(".nbp-run-section .nbpipe-run-view")
        expect(view.locator(".rv-subtitle")).to_contain_text(second, timeout=60_000)
        expect(view.locator('.rv-node[data-step="slow"]')).to_have_class(re.compile(r"\brv-state-running\b"))
        expect(panel.locator(f'.nbp-run[data-run="{second}"]')).to_contain_text("· 1 step ·")  # not "1 steps"
        expect(panel.locator(".nbp-pipeline .nbp-muted")).to_have_text("1 step", timeout=60_000)
        # The notebook's graph comes back too (its kernel still holds it) and follows the run live.
        expect(graphs[1].locator('.rv-node[data-step="slow"]')).to_have_class(re.compile(r"\brv-state-running\b"),
                                                                          timeout=60_000)
        panel.locator(f'.nbp-run[data-run="{second}"] .nbp-run-actions').get_by_role("button", name="Cancel").click()
        page.locator(".jp-Dialog").get_by_role("button", name="Cancel run").click()  # Lab asks first
        expect(view.locator(".rv-header .rv-pill")).to_have_class(re.compile(r"\brv-state-cancelled\b"), timeout=120_000)
        expect(graphs[1].locator(".rv-header .rv-pill")).to_have_class(re.compile(r"\brv-state-cancelled\b"),
                                                                      timeout=60_000)
        expect(panel.locator(f'.nbp-run[data-run="{second}"]')).to_have_attribute("data-state", "cancelled", timeout=60_000)
        expect(panel.get_by_text(f"Cancelling run {second}")).to_have_count(0, timeout=60_000)
    finally:
        page.screenshot(path=str(ARTIFACTS / "lab-cancel-long-runs.png"))
        page.close()
