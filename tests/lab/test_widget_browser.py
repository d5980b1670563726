"""End to end in a real browser: the live run graph widget (``RunView``) inside a JupyterLab notebook.

``start_lab`` (conftest.py) runs a real ``jupyter lab`` with its own ``NBPIPE_HOME``; Debian's
Chromium (``lab_browser``, Playwright) opens a small notebook written here (``%load_ext nbpipe``,
three components, a pipeline, ``run = nbpipe.run(...); run``, then a cell that prints), runs all
cells from Lab's Run menu, and checks in the DOM that:

- the anywidget output renders the graph, one node per step, and every node ends succeeded;
- the kernel stayed free while the run was live: the print cell after the run cell answered
  while the first step (which sleeps) was still going, seen by the kernel and in the page;
- clicking a step opens its details pane with the step's log (fetched by the kernel side);
- "Rerun from here" on a node switches the widget to the new run (the step and the one after it
  run again, the first is reused), "Rerun" makes another, and the "previous runs" link goes back;
- no console error mentions the widget; a screenshot goes to ``test-artifacts/lab-widget.png``.
"""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[2]
SCREENSHOT = ROOT / "test-artifacts" / "lab-widget.png"
RERUN_SCREENSHOT = ROOT / "test-artifacts" / "lab-widget-rerun.png"
STEPS = ["make", "total", "describe"]
FREE = "kernel free while the run was"

pytestmark = pytest.mark.slow

CELLS = [
    "%load_ext nbpipe\nimport nbpipe",
    '''@nbpipe.component
def make(n: int) -> list:
    """Numbers 0..n-1, slowly: the run stays live while the next cells execute."""
    import time

    print(f"making {n} numbers", flush=True)
    time.sleep(3)
    return list(range(n))''',
    """@nbpipe.component
def total(xs: list) -> int:
    print("summing", len(xs), "numbers")
    return sum(xs)""",
    '''@nbpipe.component
def describe(x: int) -> str:
    print("describing", x)
    return f"the total is {x}"''',
    """@nbpipe.pipeline
def widget_demo(n: int = 4):
    describe(total(make(n)))""",
    "run = nbpipe.run(widget_demo, n=5)\nrun",
    f"print(f\"{FREE} {{run.snapshot()['state']}}\")",
]


def write_notebook(path: Path) -> Path:
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.cells = [nbformat.v4.new_code_cell(src) for src in CELLS]
    nbformat.write(nb, path)
    return path


# The print cell's text and, at that same moment, the widget's run state (null: not drawn yet).
_WHEN_FREE = """(free) => {
  const out = [...document.querySelectorAll(".jp-OutputArea-output")].find((o) => o.textContent.includes(free));
  if (!out) return null;
  const pill = document.querySelector(".jp-OutputArea .nbpipe-run-view .rv-header .rv-pill");
  return { text: out.textContent.trim(), pill: pill ? pill.className : null };
}"""


def test_run_graph_widget_in_a_lab_notebook(start_lab: Any, lab_browser: Any, lab_run_all: Any,
                                           tmp_path: Path) -> None:
    from playwright.sync_api import expect

    lab = start_lab(write_notebook(tmp_path / "widget.ipynb"))
    SCREENSHOT.parent.mkdir(exist_ok=True)
    page = lab_browser.new_page(viewport={"width": 1400, "height": 1000})
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(f"pageerror: {e}"))
    started = time.monotonic()
    try:
        page.goto(f"{lab['url']}/lab/tree/widget.ipynb?token={lab['token']}")
        notebook = page.locator(".jp-NotebookPanel:visible")
        expect(notebook.locator(".jp-Cell")).to_have_count(len(CELLS), timeout=90_000)
        # The kernel is up before Run All (its status shows in the notebook toolbar).
        expect(notebook.locator(".jp-Notebook-ExecutionIndicator")).to_have_attribute(
            "data-status", "idle", timeout=90_000
        )

        # Run > Run All Cells, from Lab's own menu (again if Lab's kernel dialog swallowed it).
        lab_run_all(page, notebook)

        # The cell after the run cell answers while the run is live.
        free = page.wait_for_function(_WHEN_FREE, arg=FREE, polling=100, timeout=120_000).json_value()
        kernel_state = free["text"].removeprefix(FREE).strip()
        assert kernel_state in ("queued", "running"), free
        assert free["pill"] is None or "rv-state-succeeded" not in free["pill"], free

        view = notebook.locator(".jp-OutputArea .nbpipe-run-view")
        expect(view).to_have_count(1, timeout=60_000)
        nodes = view.locator(".rv-node")
        expect(nodes).to_have_count(len(STEPS), timeout=60_000)
        assert sorted(nodes.evaluate_all("els => els.map(e => e.dataset.step)")) == sorted(STEPS)
        pill = view.locator(".rv-header .rv-pill")
        expect(pill).to_have_class(re.compile(r"\brv-state-succeeded\b"), timeout=120_000)
        for step in STEPS:
            expect(view.locator(f'.rv-node[data-step="{step}"]')).to_have_class(
                re.compile(r"\brv-state-succeeded\b"), timeout=30_000
            )
        expect(view.locator(".rv-counts")).to_contain_text("3 succeeded")
        expect(view.locator(".rv-params")).to_contain_text("n= 5")

        # A step's details pane, with its log streamed from the kernel side of the widget.
        view.locator('.rv-node[data-step="make"]').click()
        details = view.locator(".rv-details")
        expect(details).to_be_visible()
        expect(details.locator("h3")).to_have_text("make")
        expect(details.locator(".rv-details-head .rv-pill")).to_have_class(
            re.compile(r"\brv-state-succeeded\b")
        )
        expect(details.locator('.rv-tab[data-tab="logs"]')).to_have_attribute("aria-selected", "true")
        expect(details.locator(".rv-log")).to_contain_text("making 5 numbers", timeout=30_000)
        expect(view.locator('.rv-node[data-step="make"]')).to_have_class(re.compile(r"\brv-selected\b"))

        view.scroll_into_view_if_needed()
        page.wait_for_timeout(300)
        page.screenshot(path=str(SCREENSHOT))

        # "Rerun from here" on a node: the widget switches to the new run, which re-executes that
        # step and the one after it and reuses the first; the old run stays one click away.
        first_id = view.locator(".rv-subtitle").inner_text().split(" · ")[-1]
        view.locator('.rv-node[data-step="total"]').click()
        expect(details.locator("h3")).to_have_text("total")
        details.get_by_role("button", name="Rerun from here").click()
        expect(view.locator(".rv-notice")).to_contain_text(f"Re-running run {first_id} from step 'total'",
                                                           timeout=60_000)
        expect(view.locator(".rv-previous .rv-link")).to_have_text(re.compile(rf"^{first_id}"))
        expect(view.locator(".rv-subtitle")).not_to_contain_text(first_id)
        expect(pill).to_have_class(re.compile(r"\brv-state-succeeded\b"), timeout=120_000)
        second_id = view.locator(".rv-subtitle").inner_text().split(" · ")[-1]
        expect(view.locator('.rv-node[data-step="make"]')).to_have_class(re.compile(r"\brv-state-cached\b"))
        for step in ("total", "describe"):
            expect(view.locator(f'.rv-node[data-step="{step}"]')).to_have_class(
                re.compile(r"\brv-state-succeeded\b"))
        assert "reused from run " + first_id in view.locator('.rv-node[data-step="make"]').get_attribute("title")
        page.screenshot(path=str(RERUN_SCREENSHOT))

        # "Rerun": same parameters, a new run in the same place; then back to the first run.
        view.locator(".rv-run-actions").get_by_role("button", name="Rerun", exact=True).click()
        expect(view.locator(".rv-previous .rv-link")).to_have_count(2, timeout=60_000)
        expect(pill).to_have_class(re.compile(r"\brv-state-(succeeded|cached)\b"), timeout=120_000)
        expect(view.locator(".rv-subtitle")).not_to_contain_text(second_id)
        view.locator(".rv-previous .rv-link", has_text=first_id).click()
        expect(view.locator(".rv-subtitle")).to_contain_text(first_id, timeout=60_000)
        expect(view.locator('.rv-node[data-step="make"]')).to_have_class(re.compile(r"\brv-state-succeeded\b"))
    finally:
        page.close()
    seconds = time.monotonic() - started
    noisy = [m for m in errors if re.search(r"nbpipe|anywidget|widget|run_view|pageerror", m, re.IGNORECASE)]
    assert not noisy, noisy
    print(f"widget in Lab: {seconds:.1f} s in the browser; when the next cell ran: {free}")
