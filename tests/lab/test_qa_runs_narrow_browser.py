"""In real JupyterLab and Chromium: the Runs page in a narrow window keeps Compare reachable.

On a laptop-sized window with the nbpipe panel open, the Runs page's header (search, four filters,
Clear, the count and Compare) did not wrap: Compare, the count and the state filter were cut off
past the page's right edge, so two ticked runs could not be compared. The header wraps now.
"""

from __future__ import annotations

import re
from typing import Any

import pytest

pytestmark = pytest.mark.slow

CELLS = [
    "import nbpipe",
    "@nbpipe.component\ndef square(x: int) -> int:\n    return x * x",
    "@nbpipe.pipeline\ndef squares(x: int = 2):\n    square(x)",
]


def test_compare_is_reachable_on_the_runs_page_in_a_narrow_window(start_lab: Any, lab_browser: Any,
                                                                   lab_notebook: Any, lab_open_panel: Any,
                                                                   lab_run_from_panel: Any) -> None:
    from playwright.sync_api import expect

    lab = start_lab(lab_notebook("squares.ipynb", CELLS))
    page = lab_browser.new_page(viewport={"width": 820, "height": 640})
    try:
        panel = lab_open_panel(page, lab, "squares.ipynb", "squares")
        for x in ("3", "4"):
            lab_run_from_panel(panel, x=x)

        panel.get_by_role("button", name="All runs ↗").click()
        runs = page.locator(".nbp-runs-page:visible")
        rows = runs.locator(".nbp-runs-row")
        expect(rows).to_have_count(2, timeout=60_000)
        rows.nth(0).locator(".nbp-pick").check()
        rows.nth(1).locator(".nbp-pick").check()
        compare = runs.get_by_role("button", name=re.compile("^Compare"))
        expect(compare).to_be_enabled()
        box, edge = compare.bounding_box(), runs.bounding_box()
        assert box and edge and box["x"] + box["width"] <= edge["x"] + edge["width"], (box, edge)
        compare.click()
        expect(page.locator(".nbp-compare-page:visible")).to_contain_text("Compare 2 runs", timeout=60_000)
    finally:
        page.close()
