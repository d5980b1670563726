"""In real JupyterLab and Chromium, the side panel at its default width (~250 px), as a new user
first sees it: the run graph fits the panel with readable steps (top-down) and fits again when
the panel is widened; no button is clipped; a skipped step is neutral (no Error tab); a step's
Inputs tab shows the values it got; the runner status follows the embedded runner when it dies
(says so and what to do) and recovers by itself when the next run starts it again.
"""

from __future__ import annotations

import json
import os
import re
import signal
from pathlib import Path
from typing import Any

import nbformat
import pytest

from test_panel_browser import ARTIFACTS, _widen_left_sidebar

pytestmark = pytest.mark.slow

CELLS = [
    "import nbpipe",
    "@nbpipe.component\ndef prep(n: int) -> dict:\n    return {'n': n, 'label': 'prepared-by-prep'}",
    "@nbpipe.component\ndef divide(d: dict, by: int) -> float:\n    return d['n'] / by",
    "@nbpipe.component\ndef report(x: float) -> str:\n    return f'result {x}'",
    "@nbpipe.pipeline\ndef narrow(n: int = 4, by: int = 0):\n    report(divide(prep(n).output, by).output)",
]

# Buttons whose text is wider than their box, or that stick out of the panel (ids for the message).
CLIPPED = """(panel) => {
  const right = panel.getBoundingClientRect().right;
  return [...panel.querySelectorAll('button')].filter((b) => b.offsetParent !== null)
    .filter((b) => b.scrollWidth > b.clientWidth + 1 || b.getBoundingClientRect().right > right + 1)
    .map((b) => `${b.textContent.trim()} (${b.scrollWidth}/${b.clientWidth}, right ${b.getBoundingClientRect().right}/${right})`);
}"""

# Steps drawn outside the canvas horizontally (the graph does not fit the panel's width).
OUTSIDE = """(canvas) => {
  const c = canvas.getBoundingClientRect();
  return [...canvas.querySelectorAll('.rv-node')].map((n) => [n.dataset.step, n.getBoundingClientRect()])
    .filter(([, r]) => r.left < c.left - 1 || r.right > c.right + 1).map(([s]) => s);
}"""


def test_narrow_panel_graph_buttons_states_inputs_and_runner_status(
    start_lab: Any, lab_browser: Any, tmp_path: Path
) -> None:
    from playwright.sync_api import expect

    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.cells = [nbformat.v4.new_code_cell(c) for c in CELLS]
    nbformat.write(nb, tmp_path / "narrow.ipynb")
    lab = start_lab(tmp_path / "narrow.ipynb")
    ARTIFACTS.mkdir(exist_ok=True)
    page = lab_browser.new_page(viewport={"width": 1400, "height": 1000})
    try:
        page.goto(f"{lab['url']}/lab/tree/narrow.ipynb?token={lab['token']}")
        page.locator(".jp-NotebookPanel").first.wait_for(timeout=90_000)
        page.locator('.lm-TabBar-tab[data-id="nbpipe-panel"]').click()
        panel = page.locator("#nbpipe-panel")
        expect(panel).to_be_visible()
        assert panel.bounding_box()["width"] < 320  # Lab's default sidebar width: nothing widened
        expect(panel.locator(".nbp-pipeline-name")).to_have_text("narrow", timeout=120_000)
        panel.locator(".nbp-run-button").click()
        view = panel.locator(".nbpipe-run-view")
        expect(view.locator(".rv-header .rv-pill")).to_have_class(re.compile(r"\brv-state-failed\b"), timeout=240_000)
        expect(view.locator('.rv-node[data-step="report"]')).to_have_class(re.compile(r"\brv-state-(skipped|cancelled)\b"))

        # The graph fits the panel's width, top-down, with steps large enough to read.
        canvas = view.locator(".rv-canvas")
        expect(canvas).to_have_attribute("data-direction", "down")
        assert float(canvas.get_attribute("data-zoom")) >= 0.5, canvas.get_attribute("data-zoom")
        assert canvas.evaluate(OUTSIDE) == []
        expect(view.locator('.rv-node[data-step="divide"] .rv-node-title')).to_be_visible()
        assert view.locator('.rv-node[data-step="divide"]').bounding_box()["width"] >= 100
        # "Rerun from failed" (header), the run list's buttons, Export KFP: none clipped.
        expect(view.get_by_role("button", name=re.compile("from failed", re.I)).first).to_be_visible()
        expect(panel.locator(".nbp-runs .nbp-run").first).to_have_attribute("data-state", "failed", timeout=30_000)
        assert panel.evaluate(CLIPPED) == []
        canvas.scroll_into_view_if_needed()
        page.screenshot(path=str(ARTIFACTS / "lab-panel-narrow-graph.png"))

        # A skipped (or cancelled) step is neutral: its reason in the meta line, no Error tab.
        view.locator('.rv-node[data-step="report"]').click()
        details = view.locator(".rv-details")
        expect(details.locator(".rv-pill")).to_have_class(re.compile(r"\brv-state-(skipped|cancelled)\b"))
        expect(details.locator('.rv-tab[data-tab="error"]')).to_be_hidden()
        expect(details.locator(".rv-details-meta")).not_to_contain_text(" ms")  # it never ran: no "0 ms"
        # The failed step's inputs: the value prep gave it (previewed), not only "from prep.output".
        view.locator('.rv-node[data-step="divide"]').click()
        expect(details.locator('.rv-tab[data-tab="error"]')).to_be_visible()
        details.locator('.rv-tab[data-tab="inputs"]').click()
        inputs = details.locator(".rv-inputs")
        expect(inputs).to_contain_text("prep.output")
        expect(inputs.locator(".rv-input-value .rv-output-body")).to_contain_text("prepared-by-prep", timeout=30_000)
        expect(inputs).to_contain_text("by = 0")
        assert panel.evaluate(CLIPPED) == []
        details.scroll_into_view_if_needed()
        page.screenshot(path=str(ARTIFACTS / "lab-panel-narrow-inputs.png"))
        details.locator(".rv-close").click()

        # Widened, the graph fits again (larger, up to its natural size) by itself.
        narrow_zoom = float(canvas.get_attribute("data-zoom"))
        assert narrow_zoom < 0.95, narrow_zoom
        _widen_left_sidebar(page, 720)
        page.wait_for_function(
            "([el, z]) => parseFloat(el.dataset.zoom) > z + 0.05", arg=[canvas.element_handle(), narrow_zoom],
            timeout=30_000)
        assert canvas.evaluate(OUTSIDE) == []
        _widen_left_sidebar(page, 260)
        page.wait_for_function(
            "([el, z]) => Math.abs(parseFloat(el.dataset.zoom) - z) < 0.05 && el.dataset.direction === 'down'",
            arg=[canvas.element_handle(), narrow_zoom], timeout=30_000)

        # The embedded runner dies: the status says so and what to do, then follows it back.
        status = panel.locator(".nbp-status")
        expect(status).to_contain_text("127.0.0.1")
        info = json.loads((Path(lab["root"]).parent / "nbpipe-home" / "runner.json").read_text())
        os.kill(info["pid"], signal.SIGKILL)
        # Either the status poll sees it down first (it says so and what to do), or another request of
        # the panel (runs list, run view) already started it again on a new port (the Lab's client
        # restarts a killed embedded runner): both are right, which one comes first is a race.
        old_url = info["url"].split("//", 1)[1].rstrip("/")
        down = panel.locator(".nbp-runner-down")
        page.wait_for_function(
            "([el, old]) => el.textContent.includes('Embedded runner stopped')"
            " || (el.textContent.includes('127.0.0.1') && !el.textContent.includes(old))",
            arg=[status.element_handle(), old_url], timeout=30_000)
        if "stopped" in status.inner_text():
            expect(down).to_contain_text("starts it again")
            page.screenshot(path=str(ARTIFACTS / "lab-panel-runner-down.png"))
        panel.locator(".nbp-run-button").click()
        expect(status).not_to_contain_text("stopped", timeout=120_000)
        expect(status).to_contain_text("127.0.0.1")
        expect(status).not_to_contain_text(old_url)
        expect(down).to_be_hidden()
        expect(view.locator(".rv-header .rv-pill")).to_have_class(re.compile(r"\brv-state-failed\b"), timeout=240_000)
        expect(panel.locator(".nbp-runs .nbp-run")).to_have_count(2, timeout=30_000)
    finally:
        page.close()
