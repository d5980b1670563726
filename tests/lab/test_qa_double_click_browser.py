"""In real JupyterLab and Chromium: a double-click on a run-starting button starts one run.

Users double-click. The notebook toolbar's Run Pipeline, the run graph's Rerun, the run list's
Re-run and the run page's Rerun each started two identical runs on a double-click: the second click
arrived while the first one's analysis or submit was still answering, and nothing held it back.
"""

from __future__ import annotations

import json
import re
import urllib.request
from typing import Any

import pytest

pytestmark = pytest.mark.slow

CELLS = [
    "import nbpipe",
    "@nbpipe.component\ndef make(n: int) -> list:\n    return list(range(n))",
    "@nbpipe.component\ndef total(xs: list) -> int:\n    return sum(xs)",
    "@nbpipe.pipeline\ndef twice(n: int = 3):\n    total(make(n).output)",
]


def runs(lab: dict[str, Any]) -> list[dict[str, Any]]:
    with urllib.request.urlopen(f"{lab['url']}/nbpipe/api/runs?limit=100&token={lab['token']}") as resp:
        return list(json.load(resp)["runs"])


def test_double_clicks_on_run_and_rerun_buttons_start_one_run_each(start_lab: Any, lab_browser: Any,
                                                                   lab_notebook: Any, lab_open_panel: Any) -> None:
    from playwright.sync_api import expect

    lab = start_lab(lab_notebook("twice.ipynb", CELLS))
    page = lab_browser.new_page(viewport={"width": 1400, "height": 1000})
    succeeded = re.compile(r"\brv-state-succeeded\b")
    try:
        panel = lab_open_panel(page, lab, "twice.ipynb", "twice")
        notebook = page.locator(".jp-NotebookPanel:visible").first
        view = panel.locator(".nbpipe-run-view")
        pill = view.locator(".rv-header .rv-pill")
        run_id = view.locator(".rv-subtitle")

        def shown() -> str:
            return run_id.inner_text().split(" · ")[-1]

        notebook.locator(".nbp-toolbar-run").dblclick()  # the notebook toolbar's Run Pipeline
        expect(pill).to_have_class(succeeded, timeout=240_000)
        first = shown()

        view.locator(".rv-run-actions").get_by_role("button", name="Rerun", exact=True).dblclick()
        expect(run_id).not_to_contain_text(first, timeout=120_000)
        expect(pill).to_have_class(succeeded, timeout=240_000)
        second = shown()

        item = panel.locator(f'.nbp-run[data-run="{second}"]')
        item.get_by_role("button", name="Re-run", exact=True).dblclick()  # the run list's
        expect(run_id).not_to_contain_text(second, timeout=120_000)
        expect(pill).to_have_class(succeeded, timeout=240_000)
        third = shown()

        panel.get_by_role("button", name="Open in a tab ↗").click()
        run_page = page.locator(f'.nbp-runpage[data-run="{third}"]')
        expect(run_page.locator(".rv-header .rv-pill")).to_have_class(succeeded, timeout=60_000)
        run_page.locator(".rv-run-actions").get_by_role("button", name="Rerun", exact=True).dblclick()
        fourth = page.locator(".nbp-runpage:visible")
        expect(fourth).not_to_have_attribute("data-run", third, timeout=120_000)
        expect(fourth.locator(".rv-header .rv-pill")).to_have_class(succeeded, timeout=240_000)
        # Every click's run has long been submitted by now: one run per double-click, four in all.
        expect(panel.locator(".nbp-run")).to_have_count(4)
        started = runs(lab)
        assert len(started) == 4, [(r["id"], r["name"]) for r in started]
        assert page.locator(".lm-DockPanel-tabBar .lm-TabBar-tab", has_text="twice ·").count() == 2
    finally:
        page.close()
