"""In real JupyterLab and Chromium: a slow answer for a run clicked earlier never replaces a new run.

Click an older run in the panel's list, then (before it loads: a big run, a busy server) change
your mind and click Run Pipeline: the new run shows, then the older run's late answer replaced it,
and the panel showed (and followed) a run the user had left. Also hit by the panel's own reconnect
after the embedded runner started (the first run's reload could land on the second run).

The older run's answer is held back by the browser (Playwright) until the new run is shown.
"""

from __future__ import annotations

import re
from typing import Any

import pytest

pytestmark = pytest.mark.slow

CELLS = [
    "import nbpipe",
    "@nbpipe.component\ndef triple(x: int) -> int:\n    return 3 * x",
    "@nbpipe.pipeline\ndef tri(x: int = 1):\n    triple(x)",
]


def test_a_late_answer_for_an_older_run_does_not_replace_the_new_run(start_lab: Any, lab_browser: Any,
                                                                      lab_notebook: Any, lab_open_panel: Any,
                                                                      lab_run_from_panel: Any) -> None:
    from playwright.sync_api import expect

    lab = start_lab(lab_notebook("tri.ipynb", CELLS))
    page = lab_browser.new_page(viewport={"width": 1400, "height": 1000})
    try:
        panel = lab_open_panel(page, lab, "tri.ipynb", "tri")
        view = panel.locator(".nbpipe-run-view")
        params = view.locator(".rv-params")
        x = panel.locator('.nbp-param[data-name="x"] input')
        ids = [lab_run_from_panel(panel, x=value) for value in ("3", "4")]

        held: list[Any] = []
        page.route(f"**/nbpipe/api/runs/{ids[0]}?*", lambda route: held.append(route))
        with page.expect_request(lambda r: f"/nbpipe/api/runs/{ids[0]}?" in r.url):
            panel.locator(f'.nbp-run[data-run="{ids[0]}"] .nbp-run-open').click()
        x.fill("5")
        panel.locator(".nbp-run-button").click()
        expect(params).to_contain_text("= 5", timeout=120_000)
        new = view.locator(".rv-subtitle").inner_text().split(" · ")[-1]

        with page.expect_response(lambda r: f"/nbpipe/api/runs/{ids[0]}?" in r.url):
            held[0].continue_()
        page.evaluate("() => fetch('/api/status').then(r => r.text())")  # one more round trip: the answer was handled
        expect(view.locator(".rv-subtitle")).to_contain_text(new)
        expect(params).to_contain_text("= 5")
        expect(panel.locator(".nbp-run-current")).to_have_attribute("data-run", new)
    finally:
        page.close()
