"""In real JupyterLab and Chromium: a double-click on the notebook run graph's Rerun or "Rerun from
here" starts one re-run.

The Lab panel's buttons got a guard before; the notebook widget's did not. Both clicks reached the
kernel: the first re-ran the run shown and switched the widget to the new run, then the second
re-ran *that* new run, so a double-click started two runs (and the graph skipped one).
"""

from __future__ import annotations

import json
import re
import urllib.request
from typing import Any

import pytest

pytestmark = pytest.mark.slow

CELLS = [
    "%load_ext nbpipe\nimport nbpipe",
    "@nbpipe.component\ndef make(n: int) -> list:\n    return list(range(n))",
    "@nbpipe.component\ndef total(xs: list) -> int:\n    return sum(xs)",
    "@nbpipe.pipeline\ndef twice(n: int = 3):\n    total(make(n).output)",
    "run = nbpipe.run(twice, n=4)\nrun",
    "print('ready')",
]


def runs(lab: dict[str, Any]) -> list[dict[str, Any]]:
    with urllib.request.urlopen(f"{lab['url']}/nbpipe/api/runs?limit=100&token={lab['token']}") as resp:
        return list(json.load(resp)["runs"])


def test_double_clicks_on_the_widgets_rerun_buttons_start_one_run_each(
        start_lab: Any, lab_browser: Any, lab_notebook: Any, lab_run_all: Any) -> None:
    from playwright.sync_api import expect

    lab = start_lab(lab_notebook("twice.ipynb", CELLS))
    page = lab_browser.new_page(viewport={"width": 1400, "height": 1000})
    succeeded = re.compile(r"\brv-state-(succeeded|cached)\b")
    try:
        page.goto(f"{lab['url']}/lab/tree/twice.ipynb?token={lab['token']}")
        notebook = page.locator(".jp-NotebookPanel:visible")
        expect(notebook.locator(".jp-Cell")).to_have_count(len(CELLS), timeout=90_000)
        lab_run_all(page, notebook)
        view = notebook.locator(".jp-OutputArea .nbpipe-run-view")
        pill = view.locator(".rv-header .rv-pill")
        expect(pill).to_have_class(succeeded, timeout=240_000)
        first = view.locator(".rv-subtitle").inner_text().split(" · ")[-1]

        view.locator(".rv-run-actions").get_by_role("button", name="Rerun", exact=True).dblclick()
        expect(view.locator(".rv-previous .rv-link")).to_have_count(1, timeout=120_000)
        expect(view.locator(".rv-subtitle")).not_to_contain_text(first, timeout=60_000)
        expect(pill).to_have_class(succeeded, timeout=240_000)
        second = view.locator(".rv-subtitle").inner_text().split(" · ")[-1]
        assert second != first

        view.locator('.rv-node[data-step="total"]').click()
        view.locator(".rv-details").get_by_role("button", name="Rerun from here").dblclick()
        expect(view.locator(".rv-notice")).to_contain_text(f"Re-running run {second} from step 'total'",
                                                           timeout=120_000)
        expect(pill).to_have_class(succeeded, timeout=240_000)
        # Both clicks have long reached the kernel by now (the kernel answers messages in order;
        # a cell run after them answers only once they were handled).
        page.keyboard.press("Escape")
        cell = notebook.locator(".jp-Cell").last
        cell.locator(".jp-InputArea-editor").click()
        page.keyboard.press("Control+a")
        page.keyboard.type("print('after', len(nbpipe.Client().runs()))")
        page.keyboard.press("Shift+Enter")
        expect(notebook.locator(".jp-OutputArea-output", has_text="after")).to_be_visible(timeout=60_000)
        started = runs(lab)
        assert len(started) == 3, [(r["id"], r["name"], r.get("labels")) for r in started]
        expect(view.locator(".rv-previous .rv-link")).to_have_count(2)
        assert "after 3" in notebook.locator(".jp-OutputArea-output", has_text="after").inner_text()
    finally:
        page.close()
