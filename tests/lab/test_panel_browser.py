"""End to end in a real browser: JupyterLab with the nbpipe extension runs the quickstart notebook.

Starts ``jupyter lab`` on 127.0.0.1 (``start_lab`` in conftest.py: own port, ``port_retries=0``,
its PID recorded and stopped, its own ``NBPIPE_HOME``, config, runtime, settings and workspace
folders); drives Debian's Chromium with Playwright (``lab_browser``): open ``notebooks/quickstart.ipynb``, open the nbpipe panel, set a
parameter, Run Pipeline, wait until every step has succeeded, open a step's logs, take a
screenshot into ``test-artifacts/``.
"""

from __future__ import annotations

import sys
import zipfile
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "test-artifacts"

pytestmark = pytest.mark.slow


@pytest.fixture
def lab(start_lab: Any) -> dict[str, Any]:
    """A real ``jupyter lab`` (``start_lab`` in conftest.py) serving the quickstart and a broken notebook."""
    return start_lab(
        ROOT / "notebooks" / "quickstart.ipynb", Path(__file__).parent / "notebooks" / "broken.ipynb"
    )


def test_run_the_quickstart_from_the_panel(lab: dict[str, Any], lab_browser: Any) -> None:
    from playwright.sync_api import expect

    ARTIFACTS.mkdir(exist_ok=True)
    page = lab_browser.new_page(viewport={"width": 1600, "height": 1000})
    console_errors: list[str] = []
    page.on("console", lambda m: console_errors.append(m.text) if m.type == "error" else None)
    try:
        page.goto(f"{lab['url']}/lab/tree/quickstart.ipynb?token={lab['token']}")
        page.locator(".jp-NotebookPanel").first.wait_for(timeout=90_000)
        # The toolbar button is there on the notebook.
        expect(page.locator(".jp-NotebookPanel-toolbar .nbp-toolbar-run")).to_be_visible(timeout=30_000)

        page.locator('.lm-TabBar-tab[data-id="nbpipe-panel"]').click()
        panel = page.locator("#nbpipe-panel")
        expect(panel).to_be_visible()
        # Widen the sidebar so the run graph and its details pane have room.
        _widen_left_sidebar(page, 720)

        expect(panel.locator(".nbp-pipeline-name")).to_have_text("digits", timeout=120_000)
        expect(panel.locator(".nbp-status")).to_contain_text("Embedded runner")
        chips = panel.locator(".nbp-components .nbp-chip")
        assert chips.count() >= 4, chips.all_inner_texts()

        gamma = panel.locator('.nbp-param[data-name="gamma"] input')
        expect(gamma).to_have_value("0.001")
        # A bad value is refused before anything is submitted.
        index = panel.locator('.nbp-param[data-name="index"] input')
        index.fill("seven")
        panel.locator(".nbp-run-button").click()
        expect(panel.locator('.nbp-param[data-name="index"] .nbp-field-error')).to_contain_text(
            "whole number"
        )
        index.fill("11")
        gamma.fill("0.0015")
        panel.locator(".nbp-run-button").click()

        view = panel.locator(".nbpipe-run-view")
        expect(view).to_be_visible(timeout=120_000)
        nodes = view.locator(".rv-node")
        expect(nodes.first).to_be_visible(timeout=60_000)
        expect(view.locator(".rv-pill")).to_have_class("rv-pill rv-state-succeeded", timeout=240_000)
        total = nodes.count()
        assert total >= 4
        # The notebook was not edited (only its kernel filled in metadata): Run did not save it.
        expect(panel.locator(".nbp-messages")).not_to_contain_text("Saved quickstart.ipynb")
        assert view.locator(".rv-node.rv-state-succeeded").count() == total
        expect(view.locator(".rv-params")).to_contain_text("gamma")

        # The run list shows the run, newest first, with notebook and parameters.
        first = panel.locator(".nbp-runs .nbp-run").first
        expect(first).to_have_attribute("data-state", "succeeded", timeout=30_000)
        expect(first.locator(".nbp-run-meta")).to_contain_text("quickstart.ipynb")
        expect(first.locator(".nbp-run-params")).to_contain_text("gamma=0.0015")

        # A step's logs, fetched through the server extension.
        view.locator('.rv-node[data-step="train"]').click()
        view.locator('.rv-tab[data-tab="logs"]').click()
        log = view.locator(".rv-log")
        expect(log).to_be_visible()
        expect(log).not_to_have_text("", timeout=30_000)
        # The runner status now names the embedded runner's address.
        expect(panel.locator(".nbp-status")).to_contain_text("127.0.0.1", timeout=30_000)
        page.wait_for_timeout(500)
        page.screenshot(path=str(ARTIFACTS / "lab-panel-run.png"))
        panel.locator(".nbp-runs").scroll_into_view_if_needed()
        page.wait_for_timeout(300)
        page.screenshot(path=str(ARTIFACTS / "lab-panel-runs.png"))

        # Outputs of the evaluate step (metrics, confusion matrix) in the same view.
        view.locator('.rv-node[data-step="evaluate"]').click()
        view.locator('.rv-tab[data-tab="outputs"]').click()
        expect(view.locator(".rv-tab-body")).to_contain_text("confusion", timeout=30_000)
        view.scroll_into_view_if_needed()
        page.wait_for_timeout(300)
        page.screenshot(path=str(ARTIFACTS / "lab-panel-outputs.png"))

        # "nbpipe: Export Pipeline" from the command palette writes the package beside the notebook.
        page.locator(".jp-NotebookPanel:visible .jp-Notebook").first.click()
        page.keyboard.press("Control+Shift+C")
        palette = page.locator(".lm-CommandPalette-input")
        expect(palette).to_be_visible()
        palette.fill("nbpipe: Export Pipeline")
        page.locator('.lm-CommandPalette-item[data-command="nbpipe:export-pipeline"]').click()
        notice = panel.locator(".nbp-notice")
        expect(notice).to_contain_text("Exported quickstart.nbpipe", timeout=120_000)
        assert zipfile.is_zipfile(lab["root"] / "quickstart.nbpipe")

        # Export KFP says which image the YAML references, how to build and push it, and takes
        # the pushed image's name for the next export.
        py = "%d.%d" % sys.version_info[:2]
        panel.locator(".nbp-main-actions").get_by_role("button", name="Export KFP").click()
        kfp = panel.locator(".nbp-kfp")
        expect(kfp.locator(".nbp-kfp-ref")).to_contain_text(f"nbpipe/base:py{py}", timeout=120_000)
        expect(kfp.locator(".nbp-kfp-cmd").first).to_have_text(
            f"docker build -f cluster/base-image/Dockerfile --build-arg PYTHON_VERSION={py} -t REGISTRY/nbpipe-base:py{py} .")
        expect(kfp.locator(".nbp-kfp-note")).to_contain_text(f"docker push REGISTRY/nbpipe-base:py{py}")
        page.screenshot(path=str(ARTIFACTS / "lab-panel-kfp.png"))
        kfp.locator(".nbp-kfp-image").fill("ghcr.io/me/nbpipe-base:py3")
        kfp.get_by_role("button", name="Export KFP again").click()
        expect(kfp.locator(".nbp-kfp-ref")).to_contain_text("ghcr.io/me/nbpipe-base:py3", timeout=120_000)
        expect(kfp.locator(".nbp-kfp-note")).not_to_contain_text("docker push")
        assert "image: ghcr.io/me/nbpipe-base:py3" in (lab["root"] / "quickstart.kfp.yaml").read_text()
        kfp.locator(".nbp-dismiss").click()
        expect(kfp).to_be_hidden()

        # A notebook with a broken cell: the panel names the cell and the fix, and jumps there.
        page.goto(f"{lab['url']}/lab/tree/broken.ipynb?token={lab['token']}")
        error = page.locator("#nbpipe-panel .nbp-notebook .nbp-error")
        expect(error).to_contain_text("cell 2 has a syntax error", timeout=120_000)
        expect(error.locator(".nbp-error-hint")).to_contain_text("Fix the code in cell 2")
        expect(page.locator("#nbpipe-panel .nbp-run-button")).to_be_disabled()
        error.get_by_role("button", name="Go to cell 2").click()
        active = page.locator(".jp-NotebookPanel:visible .jp-Cell.jp-mod-active")
        expect(active).to_contain_text("def make(n: int)")
        page.screenshot(path=str(ARTIFACTS / "lab-panel-error.png"))
        # Fixing the cell (typed, not run, not saved) looks again: Run enables without a click on ↻.
        active.locator(".jp-InputArea-editor").click()
        page.keyboard.press("Control+End")
        page.keyboard.type(")")
        expect(error).to_be_hidden(timeout=60_000)
        expect(page.locator("#nbpipe-panel .nbp-run-button")).to_be_enabled(timeout=60_000)
    finally:
        page.close()
    noisy = [m for m in console_errors if "nbpipe" in m.lower()]
    assert not noisy, noisy


def _widen_left_sidebar(page: Any, width: int) -> None:
    """Drag the handle between the left sidebar and the main area to ``width`` pixels."""
    handle = page.locator("#jp-main-split-panel > .lm-SplitPanel-handle").first
    box = handle.bounding_box()
    assert box, "no split handle"
    page.mouse.move(box["x"] + box["width"] / 2, box["y"] + 200)
    page.mouse.down()
    page.mouse.move(width + 33, box["y"] + 200, steps=5)
    page.mouse.up()
