"""In real JupyterLab and Chromium: "Rerun from failed" after fixing the cell in the editor.

Run the notebook from the nbpipe panel → a step fails → fix that cell in the notebook editor (not
saved by hand) → "Rerun from failed" in the run graph's header: the panel saves the notebook, the
server exports it again, and the new run re-executes the fixed step (and the one after it) while
the step before it is reused from the failed run. Then the same loop on the failed run's page
(Open in a tab): its failed step's error, log and inputs, and its own "Rerun from failed".
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import nbformat
import pytest

from test_panel_browser import ARTIFACTS, _widen_left_sidebar

pytestmark = pytest.mark.slow

BUG = "    return d['n'] / by"
FIX = "    return d['n'] / (by or 1)"
CELLS = [
    "import nbpipe",
    "@nbpipe.component\ndef prep(n: int) -> dict:\n    import os\n    return {'n': n, 'pid': os.getpid()}",
    f"@nbpipe.component\ndef divide(d: dict, by: int) -> float:\n{BUG}",
    "@nbpipe.component\ndef report(x: float) -> str:\n    return f'result {x}'",
    "@nbpipe.pipeline\ndef fixme(n: int = 4, by: int = 0):\n    report(divide(prep(n).output, by).output)",
]


def edit_cell(page: Any, cell: Any, old: str, new: str) -> None:
    """Replace ``old`` at the end of ``cell`` with ``new``, typing in the editor (not saved)."""
    from playwright.sync_api import expect

    cell.locator(".cm-content").click()
    page.keyboard.press("Control+End")
    for _ in old:
        page.keyboard.press("Backspace")
    page.keyboard.type(new)
    expect(cell).to_contain_text(new)


def test_rerun_from_failed_in_the_panel_runs_the_cell_fixed_in_the_editor(
    start_lab: Any, lab_browser: Any, tmp_path: Path
) -> None:
    from playwright.sync_api import expect

    import nbpipe.client

    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.cells = [nbformat.v4.new_code_cell(c) for c in CELLS]
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
        _widen_left_sidebar(page, 720)
        expect(panel.locator(".nbp-pipeline-name")).to_have_text("fixme", timeout=120_000)
        panel.locator(".nbp-run-button").click()
        view = panel.locator(".nbpipe-run-view")
        pill = view.locator(".rv-header .rv-pill")
        expect(pill).to_have_class(re.compile(r"\brv-state-failed\b"), timeout=240_000)
        first_id = view.locator(".rv-subtitle").inner_text().split(" · ")[-1]
        expect(view.locator('.rv-node[data-step="divide"]')).to_have_class(re.compile(r"\brv-state-failed\b"))

        # Fix the divide cell in the editor (the file on disk still has the bug).
        cell = page.locator(".jp-NotebookPanel:visible .jp-Cell").nth(2)
        edit_cell(page, cell, "/ by", "/ (by or 1)")
        assert BUG in (lab["root"] / "fixme.ipynb").read_text().replace("\\n", "\n")

        view.locator(".rv-run-actions").get_by_role("button", name="Rerun from failed").click()
        expect(view.locator(".rv-subtitle")).not_to_contain_text(first_id, timeout=120_000)
        expect(pill).to_have_class(re.compile(r"\brv-state-succeeded\b"), timeout=240_000)
        expect(view.locator('.rv-node[data-step="prep"]')).to_have_class(re.compile(r"\brv-state-cached\b"))
        for step in ("divide", "report"):
            expect(view.locator(f'.rv-node[data-step="{step}"]')).to_have_class(re.compile(r"\brv-state-succeeded\b"))
        assert f"reused from run {first_id}" in view.locator('.rv-node[data-step="prep"]').get_attribute("title")
        assert FIX.strip() in (lab["root"] / "fixme.ipynb").read_text()  # the panel saved the fix first
        page.screenshot(path=str(ARTIFACTS / "lab-panel-rerun-failed.png"))

        # The run page: a new bug, Run → the failed run in a tab; its failed step shows the error,
        # the log and the inputs it received; fix the cell in the editor (not saved) → the page's
        # "Rerun from failed" runs the fix (it used to re-export the file as saved: the old bug).
        second_id = view.locator(".rv-subtitle").inner_text().split(" · ")[-1]
        edit_cell(page, cell, "(by or 1)", "(by * 1)")
        panel.locator(".nbp-run-button").click()
        expect(view.locator(".rv-subtitle")).not_to_contain_text(second_id, timeout=120_000)
        expect(pill).to_have_class(re.compile(r"\brv-state-failed\b"), timeout=240_000)
        failed_id = view.locator(".rv-subtitle").inner_text().split(" · ")[-1]
        panel.get_by_role("button", name="Open in a tab ↗").click()
        run_page = page.locator(f'.nbp-runpage[data-run="{failed_id}"]')
        run_page.locator('.rv-node[data-step="divide"]').click()
        details = run_page.locator(".rv-details")
        expect(details).to_contain_text("ZeroDivisionError")
        details.get_by_role("tab", name="Logs").click()
        expect(details).to_contain_text("ZeroDivisionError", timeout=60_000)
        details.get_by_role("tab", name="Inputs").click()
        expect(details.locator("tr", has=page.locator("th", has_text=re.compile(r"^by$")))).to_contain_text("by = 0")
        expect(details.locator("tr", has_text="prep.output")).to_be_visible()
        details.get_by_role("tab", name="Outputs").click()
        expect(details).to_contain_text("No outputs: the step failed")  # not "No outputs yet."
        page.locator(".lm-TabBar-tab", has_text="fixme.ipynb").click()
        edit_cell(page, cell, "(by * 1)", "(by or 2)")
        page.locator(f'.lm-TabBar-tab[data-id="nbpipe-run-{failed_id}"]').click()
        run_page.locator(".rv-run-actions").get_by_role("button", name="Rerun from failed").click()
        rerun_page = page.locator(".nbp-runpage:visible")
        expect(rerun_page).not_to_have_attribute("data-run", failed_id, timeout=120_000)
        expect(rerun_page.locator(".rv-header .rv-pill")).to_have_class(re.compile(r"\brv-state-succeeded\b"), timeout=240_000)
        expect(rerun_page.locator('.rv-node[data-step="prep"]')).to_have_class(re.compile(r"\brv-state-cached\b"))
        assert "(by or 2)" in (lab["root"] / "fixme.ipynb").read_text()
        assert nbpipe.client.attach(rerun_page.get_attribute("data-run")).output("divide") == 2.0
    finally:
        page.close()
    noisy = [m for m in errors if "nbpipe" in m.lower()]
    assert not noisy, noisy
