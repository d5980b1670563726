"""In real JupyterLab and Chromium: after a page reload the panel shows the notebook's latest run.

Before the reload the panel's Run section showed the run just made (how it ended, its graph and
logs); after it, the section was empty until the run was clicked in the list, though a run still
going was shown again. A finished run now comes back too.
"""

from __future__ import annotations

import re
from typing import Any

import pytest

pytestmark = pytest.mark.slow

CELLS = [
    "import nbpipe",
    "@nbpipe.component\ndef make(n: int) -> list:\n    return list(range(n))",
    "@nbpipe.component\ndef total(xs: list) -> int:\n    return sum(xs)",
    "@nbpipe.pipeline\ndef reloaded(n: int = 3):\n    total(make(n).output)",
]


def test_the_panel_shows_the_notebooks_finished_run_after_a_reload(start_lab: Any, lab_browser: Any, lab_notebook: Any,
                                                                  lab_open_panel: Any, lab_run_from_panel: Any) -> None:
    from playwright.sync_api import expect

    lab = start_lab(lab_notebook("reloaded.ipynb", CELLS))
    page = lab_browser.new_page(viewport={"width": 1400, "height": 1000})
    try:
        panel = lab_open_panel(page, lab, "reloaded.ipynb", "reloaded")
        lab_run_from_panel(panel, n="4")
        last = lab_run_from_panel(panel, n="5")
        page.reload()
        expect(panel).to_be_visible(timeout=90_000)
        view = panel.locator(".nbp-run-section .nbpipe-run-view")
        expect(view.locator(".rv-subtitle")).to_contain_text(last, timeout=60_000)
        expect(view.locator(".rv-header .rv-pill")).to_have_class(re.compile(r"\brv-state-succeeded\b"))
        expect(view.locator(".rv-params")).to_contain_text("n= 5")
        view.locator('.rv-node[data-step="make"]').click()
        expect(view.locator(".rv-details h3")).to_have_text("make")
    finally:
        page.close()
