"""QA in real JupyterLab and Chromium: the panel's messages belong to the notebook they were about.

Found by hand: a bad parameter in one notebook, Run Pipeline → "Fix the highlighted parameters
first."; switching to another notebook (no parameters wrong, or none at all) still showed that
alert over its own form, as did "Exported …" and "Saved … before running". Switching notebooks now
clears them. No kernel code runs: the panel analyzes notebooks on the server.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import nbformat
import pytest

pytestmark = pytest.mark.slow
NOTEBOOKS = Path(__file__).parent / "notebooks"


def test_switching_notebooks_drops_the_last_notebooks_alert(start_lab: Any, lab_browser: Any, tmp_path: Path) -> None:
    from playwright.sync_api import expect

    other = nbformat.v4.new_notebook()
    other.cells = [nbformat.v4.new_code_cell(c) for c in (
        "import nbpipe", "@nbpipe.component\ndef one() -> int:\n    return 1",
        "@nbpipe.pipeline\ndef other():\n    one()")]
    other.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(other, tmp_path / "other.ipynb")
    lab = start_lab(NOTEBOOKS / "tiny.ipynb", tmp_path / "other.ipynb")
    page = lab_browser.new_page(viewport={"width": 1400, "height": 900})
    # Lab may ask which kernel while a session is set up: the default answers it
    page.add_locator_handler(page.locator(".jp-Dialog", has_text="Select Kernel"),
                             lambda d: d.locator(".jp-mod-accept").click())
    try:
        page.goto(f"{lab['url']}/lab/tree/tiny.ipynb?token={lab['token']}")
        page.locator(".jp-NotebookPanel").first.wait_for(timeout=90_000)
        page.locator('.lm-TabBar-tab[data-id="nbpipe-panel"]').click()
        panel = page.locator("#nbpipe-panel")
        expect(panel.locator(".nbp-pipeline-name")).to_have_text("tiny", timeout=120_000)
        panel.locator('.nbp-param[data-name="n"] input').fill("abc")
        panel.get_by_role("button", name="Run Pipeline").click()
        alert = panel.locator(".nbp-error")
        expect(alert).to_contain_text("Fix the highlighted parameters first.")

        page.locator('.lm-TabBar-tab[data-id="filebrowser"]').click()
        page.locator(".jp-DirListing-item", has_text="other.ipynb").dblclick()
        page.locator('.lm-TabBar-tab[data-id="nbpipe-panel"]').click()
        expect(panel.locator(".nbp-pipeline-name")).to_have_text("other", timeout=120_000)
        expect(alert).to_have_count(0)
    finally:
        page.close()
