"""In real JupyterLab and Chromium: a float parameter reads as a float in the run just started.

Type 3 for `c: float` and click Run Pipeline: the runner stores 3.0 and the run list says c=3.0,
but the new run's graph said "c = 3" (an int, to a reader) for as long as it was shown: the
snapshot answering Run Pipeline and a re-run did not name the run's float parameters, unless every
step came from the cache. Reopening the run fixed it, so it looked random.
"""

from __future__ import annotations

import re
from typing import Any

import pytest

pytestmark = pytest.mark.slow

CELLS = [
    "import nbpipe",
    # A step still running when Run Pipeline answers (a run answered at once from the cache was right).
    "@nbpipe.component\ndef scale(n: int, c: float) -> float:\n    import time\n    time.sleep(1)\n    return n * c",
    "@nbpipe.pipeline\ndef scaled(n: int = 2, c: float = 1.5):\n    scale(n, c)",
]


def test_a_float_typed_as_a_whole_number_shows_as_a_float_in_the_new_runs_graph(
    start_lab: Any, lab_browser: Any, lab_notebook: Any, lab_open_panel: Any
) -> None:
    from playwright.sync_api import expect

    lab = start_lab(lab_notebook("scaled.ipynb", CELLS))
    page = lab_browser.new_page(viewport={"width": 1400, "height": 1000})
    try:
        panel = lab_open_panel(page, lab, "scaled.ipynb", "scaled")
        view = panel.locator(".nbpipe-run-view")
        pill = view.locator(".rv-header .rv-pill")
        c = view.locator(".rv-params .rv-param", has_text="c")
        # The first run starts the embedded runner (the panel then reloads the run it shows): the
        # second one is the everyday case.
        panel.locator(".nbp-run-button").click()
        expect(pill).to_have_class(re.compile(r"\brv-state-succeeded\b"), timeout=240_000)
        expect(c).to_have_text("c= 1.5")
        first = view.locator(".rv-subtitle").inner_text().split(" · ")[-1]
        panel.locator('.nbp-param[data-name="c"] input').fill("3")
        panel.locator(".nbp-run-button").click()
        expect(view.locator(".rv-subtitle")).not_to_contain_text(first, timeout=120_000)
        expect(pill).to_have_class(re.compile(r"\brv-state-succeeded\b"), timeout=240_000)
        expect(c).to_have_text("c= 3.0")
        expect(panel.locator(".nbp-run-current .nbp-run-params")).to_have_text("c=3.0, n=2")

        second = view.locator(".rv-subtitle").inner_text().split(" · ")[-1]
        view.locator('.rv-node[data-step="scale"]').click()
        view.locator(".rv-details").get_by_role("button", name="Rerun from here").click()  # re-executes: not cached
        expect(view.locator(".rv-subtitle")).not_to_contain_text(second, timeout=120_000)
        expect(c).to_have_text("c= 3.0")
    finally:
        page.close()
