"""In real JupyterLab and Chromium: a cached step's Logs tab says where its outputs came from.

A step reused from the cache did not run, and its Logs tab said only "No output.", in the
notebook's run graph and in the panel: a Kubeflow user expects to see that it was cached, from
which run (a link to it), and that run's log. Both now show it.
"""

from __future__ import annotations

import re
from typing import Any

import pytest

pytestmark = pytest.mark.slow

CELLS = [
    "%load_ext nbpipe\nimport nbpipe",
    "@nbpipe.component\ndef make(n: int) -> list:\n    print(f'making {n} numbers')\n    return list(range(n))",
    "@nbpipe.component\ndef total(xs: list) -> int:\n    return sum(xs)",
    "@nbpipe.pipeline\ndef cachy(n: int = 3):\n    total(make(n).output)",
    "first = nbpipe.run(cachy, n=4)\nfirst.wait()\nprint('first', first.id)",
    "second = nbpipe.run(cachy, n=4)\nsecond",
]


def check_cached_logs(view: Any, first: str) -> None:
    from playwright.sync_api import expect

    view.locator('.rv-node[data-step="make"]').click()
    details = view.locator(".rv-details")
    expect(details.locator(".rv-details-head .rv-pill")).to_have_class(re.compile(r"\brv-state-cached\b"))
    origin = details.locator(".rv-log-origin")
    expect(origin).to_contain_text(f"Cached: this step did not run in this run. Its outputs and the log below come from run {first}")
    expect(details.locator(".rv-log")).to_contain_text("making 4 numbers", timeout=60_000)
    expect(details.locator(".rv-log")).not_to_contain_text("No output")


def test_a_cached_steps_logs_name_its_run_and_show_that_runs_log(start_lab: Any, lab_browser: Any, lab_notebook: Any,
                                                                lab_run_all: Any) -> None:
    from playwright.sync_api import expect

    lab = start_lab(lab_notebook("cachy.ipynb", CELLS))
    page = lab_browser.new_page(viewport={"width": 1500, "height": 1000})
    try:
        page.goto(f"{lab['url']}/lab/tree/cachy.ipynb?token={lab['token']}")
        notebook = page.locator(".jp-NotebookPanel:visible")
        expect(notebook.locator(".jp-Cell")).to_have_count(len(CELLS), timeout=90_000)
        lab_run_all(page, notebook)
        printed = notebook.locator(".jp-OutputArea-output", has_text="first r")
        expect(printed).to_be_visible(timeout=240_000)
        first = printed.inner_text().split()[-1]
        view = notebook.locator(".jp-OutputArea .nbpipe-run-view")
        expect(view.locator(".rv-header .rv-pill")).to_have_class(re.compile(r"\brv-state-succeeded\b"), timeout=240_000)
        check_cached_logs(view, first)  # the notebook's graph: the kernel fetched the first run's log

        # The panel shows the notebook's newest run (the second); its cached step says the same.
        page.locator('.lm-TabBar-tab[data-id="nbpipe-panel"]').click()
        panel_view = page.locator("#nbpipe-panel .nbp-run-section .nbpipe-run-view")
        expect(panel_view.locator(".rv-header .rv-pill")).to_have_class(re.compile(r"\brv-state-succeeded\b"),
                                                                         timeout=60_000)
        check_cached_logs(panel_view, first)
        panel_view.locator(f'.rv-log-origin .rv-link[data-run="{first}"]').click()  # to the run it came from
        expect(panel_view.locator(".rv-subtitle")).to_contain_text(first, timeout=60_000)
        expect(panel_view.locator(".rv-details .rv-log")).to_contain_text("making 4 numbers", timeout=60_000)
        expect(panel_view.locator(".rv-details .rv-log-origin")).to_have_count(0)

        # The notebook graph's link switches it to the first run.
        view.locator(f'.rv-log-origin .rv-link[data-run="{first}"]').click()
        expect(view.locator(".rv-subtitle")).to_contain_text(first, timeout=60_000)
    finally:
        page.close()
