"""The dashboard in a real JupyterLab in Debian's Chromium: Runs page, run pages, Compare, Lineage.

Runs are submitted with the SDK to the Lab's own embedded runner (``start_lab`` gives the test
process the same ``NBPIPE_HOME``). Then, as a user: open the Runs page from the command palette
and watch a run appear, run (its duration ticking) and finish without any refresh; search; tick
three runs and compare them; open a run page, and from a cached step's model artifact its lineage
across the two runs; open a second run page side by side; reload and find the pages restored;
the same pages in the dark theme. Waits are on states in the page, never on time. Screenshots go
to ``test-artifacts/``.
"""

from __future__ import annotations

import re
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "test-artifacts"

pytestmark = pytest.mark.slow

PIPELINE = textwrap.dedent('''
    import os, time
    from nbpipe import Input, Metrics, Model, Output, component, pipeline

    @component
    def prepare(n: int) -> list:
        return list(range(n))

    @component
    def train(data: list, model: Output[Model], lr: float = 0.1) -> None:
        with open(model.path, "w") as fh:
            fh.write(f"weights {sum(data) * lr}")

    @component
    def evaluate(model: Input[Model], metrics: Output[Metrics], threshold: float = 0.0) -> float:
        with open(model.path) as fh:
            w = float(fh.read().split()[1])
        metrics.log_metric("accuracy", min(1.0, w / 10))
        metrics.log_metric("loss", abs(w - threshold) / 10)
        return w - threshold

    @pipeline
    def digits_lite(n: int = 5, lr: float = 0.5, threshold: float = 0.0):
        m = train(data=prepare(n=n).output, lr=lr)
        evaluate(model=m.outputs["model"], threshold=threshold)

    @component(cache=False)
    def gated(gate: str) -> int:
        print("waiting for", gate, flush=True)
        while not os.path.exists(gate):
            time.sleep(0.05)
        return 1

    @pipeline
    def gated_run(gate: str = ""):
        gated(gate=gate)
''')


def palette(page: Any, text: str, command: str, tries: int = 5) -> None:
    """Run ``command`` from the command palette, found by typing ``text``. The palette is modal: a
    focus change while Lab restores its layout (after a reload, on a busy machine) may close it
    between the typing and the click, so the whole of it is tried again, each step waiting on state."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout
    from playwright.sync_api import expect

    box = page.locator(".lm-CommandPalette-input")
    item = page.locator(f'.lm-CommandPalette-item[data-command="{command}"]').first
    for attempt in range(tries):
        try:
            if not box.is_visible():
                page.keyboard.press("Control+Shift+C")
            expect(box).to_be_visible(timeout=10_000)
            box.fill(text, timeout=10_000)
            expect(item).to_be_visible(timeout=15_000)
            item.click(timeout=10_000)
            return
        except (AssertionError, PlaywrightTimeout):
            if attempt == tries - 1:
                raise


def test_dashboard_end_to_end(start_lab: Any, lab_browser: Any, tmp_path: Path) -> None:
    from playwright.sync_api import expect

    from nbpipe import Client

    ARTIFACTS.mkdir(exist_ok=True)
    lab = start_lab(Path(__file__).parent / "notebooks" / "tiny.ipynb")
    (tmp_path / "dash_browser_pipes.py").write_text(PIPELINE)
    sys.path.insert(0, str(tmp_path))
    try:
        import dash_browser_pipes as pipes
    finally:
        sys.path.remove(str(tmp_path))
    client = Client()  # the Lab's embedded runner (same NBPIPE_HOME)
    r1 = client.submit(pipes.digits_lite, {"threshold": 0.0}, experiment="digits", name="baseline").wait(timeout=300)
    r2 = client.submit(pipes.digits_lite, {"threshold": 1.0}, experiment="digits", name="higher threshold").wait(timeout=300)
    r3 = client.submit(pipes.digits_lite, {"threshold": 0.5, "lr": 0.8}, experiment="digits", name="faster lr").wait(timeout=300)
    assert r2.steps["train"]["state"] == "cached" and r3.steps["train"]["state"] == "succeeded"

    page = lab_browser.new_page(viewport={"width": 1600, "height": 1000})
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(f"{lab['url']}/lab?token={lab['token']}")
    page.locator(".jp-Launcher").first.wait_for(timeout=90_000)  # Lab has restored its layout

    # ---- Runs page: from the palette, live, with filters ----
    palette(page, "nbpipe: Runs", "nbpipe:open-runs")
    runs = page.locator("#nbpipe-runs")
    expect(runs).to_be_visible(timeout=30_000)
    rows = runs.locator("tr.nbp-runs-row")
    expect(rows).to_have_count(3, timeout=30_000)
    expect(rows.first).to_have_attribute("data-run", r3.id)
    expect(runs.locator(".nbp-live")).to_have_class("nbp-live nbp-live-on", timeout=30_000)
    # a float parameter keeps its .0 in the rows, as on the run page (JSON made 1.0 the number 1)
    float_shown = re.compile(r"threshold=1\.0(,|$)")
    expect(runs.locator(f'tr[data-run="{r2.id}"] .nbp-col-params')).to_have_text(float_shown)

    gate = tmp_path / "gate"
    live = client.submit(pipes.gated_run, {"gate": str(gate)}, experiment="adhoc", name="live run")
    row = runs.locator(f'tr.nbp-runs-row[data-run="{live.id}"]')
    expect(row).to_have_attribute("data-state", "running", timeout=60_000)  # no refresh: the event stream
    duration = row.locator(".nbp-duration")
    expect(duration).not_to_have_text("", timeout=30_000)
    first = duration.inner_text()
    expect(duration).not_to_have_text(first, timeout=30_000)  # it ticks
    page.screenshot(path=str(ARTIFACTS / "lab-dashboard-runs-live.png"))
    # The side panel's short list follows the same stream, with a ticking duration too.
    page.locator('.lm-TabBar-tab[data-id="nbpipe-panel"]').click()
    expect(page.locator(f'#nbpipe-panel .nbp-run[data-run="{r2.id}"] .nbp-run-params')).to_have_text(float_shown)
    side = page.locator(f'#nbpipe-panel .nbp-run[data-run="{live.id}"]')
    expect(side).to_have_attribute("data-state", "running", timeout=60_000)
    side_duration = side.locator(".nbp-run-duration")
    expect(side_duration).not_to_have_text("", timeout=30_000)
    expect(side_duration).not_to_have_text(side_duration.inner_text(), timeout=30_000)
    gate.write_text("go")
    expect(row).to_have_attribute("data-state", "succeeded", timeout=120_000)
    expect(side).to_have_attribute("data-state", "succeeded", timeout=60_000)
    # From the panel's run view to a page of its own, then back to how things were.
    side.locator(".nbp-run-open").click()
    page.locator("#nbpipe-panel .nbp-open-tab").click()
    live_tab = page.locator(f'.lm-TabBar-tab[data-id="nbpipe-run-{live.id}"]')
    expect(page.locator(f'.nbp-runpage[data-run="{live.id}"] .rv-node')).to_have_count(1, timeout=30_000)
    live_tab.locator(".lm-TabBar-tabCloseIcon").click()
    expect(live_tab).to_have_count(0)
    page.locator('.lm-TabBar-tab[data-id="nbpipe-panel"]').click()  # close the sidebar again
    page.locator('.lm-TabBar-tab:has-text("Runs")').first.click()
    expect(row.locator(".nbp-stepbar .nbp-seg")).to_have_count(1)
    expect(rows).to_have_count(4)

    runs.locator(".nbp-runs-search").fill("threshold")
    expect(rows).to_have_count(1, timeout=30_000)
    expect(rows.first).to_have_attribute("data-run", r2.id)
    runs.locator(".nbp-runs-search").fill("")
    expect(rows).to_have_count(4, timeout=30_000)
    runs.locator('select[data-filter="experiment"]').select_option("adhoc")
    expect(rows).to_have_count(1, timeout=30_000)
    runs.locator('select[data-filter="experiment"]').select_option("")
    expect(rows).to_have_count(4, timeout=30_000)

    # ---- Compare three runs ----
    for r in (r1, r2, r3):
        runs.locator(f'tr[data-run="{r.id}"] .nbp-pick').check()
    expect(runs.locator(".nbp-compare-button")).to_have_text("Compare 3")
    page.screenshot(path=str(ARTIFACTS / "lab-dashboard-runs.png"))
    runs.locator(".nbp-compare-button").click()
    cmp = page.locator(".nbp-compare-page:visible")
    expect(cmp.locator(".nbp-compare-params")).to_be_visible(timeout=30_000)
    expect(cmp.locator('.nbp-compare-params tr[data-param="threshold"]')).to_have_class("nbp-differs")
    expect(cmp.locator('.nbp-compare-params tr[data-param="n"]')).not_to_have_class("nbp-differs")
    expect(cmp.locator('.nbp-compare-metrics tr[data-metric="evaluate.metrics.accuracy"] td')).to_have_count(3)
    expect(cmp.locator(".nbp-chart")).to_have_count(3)  # accuracy, loss, evaluate.output
    expect(cmp.locator('.nbp-compare-metrics tr[data-metric="evaluate.output"] td.nbp-best')).to_have_count(1)
    page.screenshot(path=str(ARTIFACTS / "lab-dashboard-compare.png"))
    # "Open side by side": each compared run's page, split across the main area
    cmp.locator("button:has-text('Open side by side')").click()
    for r in (r1, r2, r3):
        expect(page.locator(f'.nbp-runpage[data-run="{r.id}"]')).to_be_visible(timeout=30_000)
    boxes = [page.locator(f'.nbp-runpage[data-run="{r.id}"]').bounding_box() for r in (r2, r3)]
    assert boxes[0] and boxes[1] and boxes[0]["x"] + boxes[0]["width"] <= boxes[1]["x"] + 1, boxes
    page.screenshot(path=str(ARTIFACTS / "lab-dashboard-compare-side-by-side.png"))
    for r in (r1, r2, r3):  # close them again; the run page below is opened from the Runs page
        page.locator(f'.lm-TabBar-tab[data-id="nbpipe-run-{r.id}"] .lm-TabBar-tabCloseIcon').click()
    expect(page.locator(".nbp-runpage")).to_have_count(0)

    # ---- A run page, and the lineage of a cached model across two runs ----
    page.locator('.lm-TabBar-tab:has-text("Runs")').first.click()
    runs.locator(f'tr[data-run="{r2.id}"] .nbp-run-link').click()
    run_page = page.locator(f'.nbp-runpage[data-run="{r2.id}"]')
    expect(run_page).to_be_visible(timeout=30_000)
    view = run_page.locator(".nbpipe-run-view")
    expect(view.locator(".rv-pill")).to_have_class("rv-pill rv-state-succeeded", timeout=30_000)
    expect(view.locator('.rv-node[data-step="train"]')).to_have_class(re.compile(r"\brv-state-cached\b"))
    canvas = view.locator(".rv-canvas")
    cbox, nbox = canvas.bounding_box(), view.locator('.rv-node[data-step="evaluate"]').bounding_box()
    assert cbox and nbox and cbox["height"] > 600, cbox  # the graph has the page, not a sidebar strip
    assert cbox["x"] <= nbox["x"] and nbox["x"] + nbox["width"] <= cbox["x"] + cbox["width"]
    assert float(canvas.get_attribute("data-zoom") or 0) >= 0.9  # fitted at full size, not a sliver
    timeline = run_page.locator(".nbp-timeline .nbp-tl-row")
    expect(timeline).to_have_count(3)
    expect(run_page.locator('.nbp-tl-row[data-step="train"] .nbp-tl-mark')).to_have_count(1)  # cached: never ran
    expect(run_page.locator('.nbp-tl-row[data-step="evaluate"] .nbp-tl-bar.nbp-tl-succeeded')).to_have_count(1)
    page.screenshot(path=str(ARTIFACTS / "lab-dashboard-runpage.png"))
    view.locator('.rv-node[data-step="train"]').click()
    # Cached is honest: which run it was reused from, its outputs, and no Error tab.
    expect(view.locator(".rv-details-meta")).to_contain_text(f"reused from run {r1.id}")
    expect(view.locator('.rv-details .rv-tab[data-tab="error"]')).to_be_hidden()
    view.locator('.rv-tab[data-tab="outputs"]').click()
    view.locator('.rv-output[data-output="model"] .rv-lineage').click()
    lin = page.locator(".nbp-lineage-page:visible")
    try:
        expect(lin.locator(".nbp-lnode-producer")).to_be_visible(timeout=30_000)
    except AssertionError:
        page.screenshot(path=str(ARTIFACTS / "lab-dashboard-lineage-failed.png"))
        raise
    expect(lin.locator(".nbp-lnode-producer .nbp-run-chip")).to_contain_text(r1.id)
    expect(lin.locator(".nbp-lineage-facts")).to_contain_text(f"run {r2.id} reused it from the cache")
    expect(lin.locator(".nbp-lnode-artifact")).to_have_count(2)
    expect(lin.locator(".nbp-lnode-artifact.nbp-lnode-cached")).to_have_count(1)
    consumers = lin.locator(".nbp-lnode-consumer")
    expect(consumers).to_have_count(2)
    expect(lin.locator('.nbp-lnode-input[data-node="in:data"]')).to_contain_text("prepare.output")
    expect(lin.locator("path.nbp-ledge")).to_have_count(2 + 2 + 2)  # inputs→step, step→copies, copies→users
    page.screenshot(path=str(ARTIFACTS / "lab-dashboard-lineage.png"))
    # walk up: the input artifact's own lineage, then back
    lin.locator('.nbp-lnode-input[data-node="in:data"] .nbp-link-button').click()
    expect(lin.locator(".nbp-page-title code")).to_have_text("prepare.output", timeout=30_000)
    lin.locator("button:has-text('Back')").click()
    expect(lin.locator(".nbp-page-title code")).to_have_text("train.model", timeout=30_000)

    # ---- a second run page side by side (command palette with a run id) ----
    palette(page, "nbpipe: Open Run", "nbpipe:open-run")
    page.locator(".jp-Dialog input").fill(r1.id)
    page.keyboard.press("Enter")
    expect(page.locator(f'.nbp-runpage[data-run="{r1.id}"]')).to_be_visible(timeout=30_000)
    page.locator(f'.lm-TabBar-tab[data-id="nbpipe-run-{r2.id}"]').click()
    tab = page.locator(f'.lm-TabBar-tab[data-id="nbpipe-run-{r1.id}"]')
    tbox, dock = tab.bounding_box(), page.locator("#jp-main-dock-panel").bounding_box()
    assert tbox and dock
    page.mouse.move(tbox["x"] + 20, tbox["y"] + tbox["height"] / 2)
    page.mouse.down()
    page.mouse.move(dock["x"] + dock["width"] - 40, dock["y"] + dock["height"] / 2, steps=12)
    page.mouse.up()
    expect(page.locator(f'.nbp-runpage[data-run="{r1.id}"]')).to_be_visible()
    expect(page.locator(f'.nbp-runpage[data-run="{r2.id}"]')).to_be_visible()
    page.screenshot(path=str(ARTIFACTS / "lab-dashboard-side-by-side.png"))

    # ---- reload: the run pages (and the other pages) come back ----
    def saved_layout() -> str:  # Lab saves the workspace after a layout change: wait for that state
        resp = page.request.get(f"{lab['url']}/lab/api/workspaces/default?token={lab['token']}")
        return resp.text() if resp.ok else ""

    for _ in range(600):
        text = saved_layout()
        if f"nbpipe-run:{r1.id}" in text and f"nbpipe-run:{r2.id}" in text and "nbpipe-lineage:" in text:
            break
        page.wait_for_timeout(100)
    else:
        raise AssertionError(f"the workspace never saved the run pages: {saved_layout()[:2000]}")
    page.reload()
    expect(page.locator(f'.nbp-runpage[data-run="{r1.id}"]')).to_be_visible(timeout=90_000)
    expect(page.locator(f'.lm-TabBar-tab[data-id="nbpipe-run-{r2.id}"]')).to_have_count(1)
    page.locator(f'.lm-TabBar-tab[data-id="nbpipe-run-{r2.id}"]').click()
    expect(page.locator(f'.nbp-runpage[data-run="{r2.id}"] .rv-node[data-step="train"]')).to_be_visible(timeout=30_000)
    expect(page.locator(f'.nbp-runpage[data-run="{r1.id}"] .rv-node[data-step="train"]')).to_be_visible()
    expect(page.locator(".lm-TabBar-tab:has-text('Lineage · train.model')")).to_have_count(1)
    page.screenshot(path=str(ARTIFACTS / "lab-dashboard-restored.png"))

    # ---- dark theme ----
    palette(page, "JupyterLab Dark", "apputils:change-theme")
    expect(page.locator("body")).to_have_attribute("data-jp-theme-light", "false", timeout=30_000)
    page.locator(".lm-TabBar-tab:has-text('Lineage · train.model')").first.click()
    expect(page.locator(".nbp-lineage-page:visible .nbp-lnode-producer")).to_be_visible(timeout=30_000)
    page.screenshot(path=str(ARTIFACTS / "lab-dashboard-lineage-dark.png"))
    page.locator('.lm-TabBar-tab:has-text("Compare 3 runs")').first.click()
    expect(page.locator(".nbp-compare-page:visible .nbp-chart")).to_have_count(3, timeout=30_000)
    page.screenshot(path=str(ARTIFACTS / "lab-dashboard-compare-dark.png"))

    # ---- Rerun from a run page opens the new run's page, which follows it to the end ----
    page.locator(f'.lm-TabBar-tab[data-id="nbpipe-run-{r1.id}"]').click()
    r1_page = page.locator(f'.nbp-runpage[data-run="{r1.id}"]')
    r1_page.locator(".rv-run-actions button", has_text=re.compile(r"^Rerun$")).click()
    new_page = page.locator(f'.nbp-runpage:visible:not([data-run="{r1.id}"])')
    expect(new_page.locator(".rv-pill").first).to_have_class(re.compile(r"\brv-state-succeeded\b"), timeout=120_000)
    new_id = new_page.get_attribute("data-run")
    assert new_id and new_id not in (r1.id, r2.id, r3.id)
    assert client.get_run(new_id)["params"] == r1.snapshot()["params"]

    # ---- a run submitted from tiny.ipynb's kernel (%nbpipe run / nbpipe.run) is one of its runs ----
    kernel_run = client.submit(pipes.digits_lite, {"threshold": 2.0}, experiment="digits", name="from the kernel",
                               labels={"kernel_notebook": str(Path(lab["root"]) / "tiny.ipynb")}).wait(timeout=300)
    page.locator('.lm-TabBar-tab:has-text("Runs")').first.click()
    expect(runs.locator(f'tr.nbp-runs-row[data-run="{kernel_run.id}"]')).to_have_count(1, timeout=60_000)
    notebook_filter = runs.locator('select[data-filter="notebook"]')
    expect(notebook_filter.locator('option[value="tiny.ipynb"]')).to_have_count(1, timeout=30_000)
    notebook_filter.select_option("tiny.ipynb")
    expect(rows).to_have_count(1, timeout=30_000)
    expect(rows.first).to_have_attribute("data-run", kernel_run.id)
    expect(rows.first.locator(".nbp-col-source")).to_have_text("tiny.ipynb")
    assert not errors, errors


WIDGET_CELLS = [
    "import nbpipe",
    "@nbpipe.component\ndef double(x: int) -> int:\n    return 2 * x\n\n"
    "@nbpipe.pipeline\ndef doubled(x: int = 3):\n    double(x=double(x=x).output)",
    "run = nbpipe.run(doubled, x=4)\nrun",
]


def test_a_notebook_widgets_run_opens_in_a_tab(start_lab: Any, lab_browser: Any, lab_run_all: Any,
                                               tmp_path: Path) -> None:
    """Right-click the run graph widget in a notebook → "Open Run in a Tab" opens its run page."""
    import nbformat
    from playwright.sync_api import expect

    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.cells = [nbformat.v4.new_code_cell(src) for src in WIDGET_CELLS]
    nbformat.write(nb, tmp_path / "widget_tab.ipynb")
    lab = start_lab(tmp_path / "widget_tab.ipynb")
    page = lab_browser.new_page(viewport={"width": 1400, "height": 1000})
    page.goto(f"{lab['url']}/lab/tree/widget_tab.ipynb?token={lab['token']}")
    notebook = page.locator(".jp-NotebookPanel:visible")
    expect(notebook.locator(".jp-Cell")).to_have_count(len(WIDGET_CELLS), timeout=90_000)
    expect(notebook.locator(".jp-Notebook-ExecutionIndicator")).to_have_attribute("data-status", "idle", timeout=90_000)
    lab_run_all(page, notebook)
    view = notebook.locator(".jp-OutputArea .nbpipe-run-view")
    expect(view.locator(".rv-header .rv-pill")).to_have_class(re.compile(r"\brv-state-succeeded\b"), timeout=180_000)
    run_id = view.get_attribute("data-run")
    assert run_id and run_id in view.locator(".rv-subtitle").inner_text()

    view.locator(".rv-canvas").click(button="right", position={"x": 20, "y": 20})
    item = page.locator('.lm-Menu-item[data-command="nbpipe:open-widget-run"]')
    expect(item).to_contain_text("Open Run in a Tab")
    item.click()
    run_page = page.locator(f'.nbp-runpage[data-run="{run_id}"]')
    expect(run_page).to_be_visible(timeout=30_000)
    expect(run_page.locator(".rv-node")).to_have_count(2, timeout=30_000)
    expect(run_page.locator(".rv-pill").first).to_have_class(re.compile(r"\brv-state-succeeded\b"))
    expect(notebook).to_be_visible()  # split beside the notebook, not instead of it
    page.screenshot(path=str(ARTIFACTS / "lab-dashboard-widget-to-tab.png"))
