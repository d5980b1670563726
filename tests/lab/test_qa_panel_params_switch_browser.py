"""In real JupyterLab and Chromium: parameters typed in the panel survive a look at another notebook.

A user types the run's parameters in the panel's form, opens another notebook for a moment, comes
back and clicks Run Pipeline. The form used to be back at the notebook's defaults after the switch,
so the run silently ran with them. The other notebook shows its own defaults, never the values
typed for the first one, and neither notebook file is written.
"""

from __future__ import annotations

import re
from typing import Any

import pytest

pytestmark = pytest.mark.slow

TRAIN = [
    "import nbpipe",
    "@nbpipe.component\ndef fit(n: int, c: float) -> float:\n    return n * c",
    "@nbpipe.pipeline\ndef train(n: int = 10, c: float = 1.0):\n    fit(n, c)",
]
OTHER = [
    "import nbpipe",
    "@nbpipe.component\ndef echo(c: float) -> float:\n    return c",
    "@nbpipe.pipeline\ndef other(c: float = 7.0):\n    echo(c)",
]


def test_typed_parameters_come_back_with_their_notebook_and_are_the_runs(start_lab: Any, lab_browser: Any,
                                                                         lab_notebook: Any, lab_open_panel: Any) -> None:
    from playwright.sync_api import expect

    import nbpipe.client

    lab = start_lab(lab_notebook("train.ipynb", TRAIN), lab_notebook("other.ipynb", OTHER))
    files = {name: (lab["root"] / name).stat().st_mtime_ns for name in ("train.ipynb", "other.ipynb")}
    page = lab_browser.new_page(viewport={"width": 1400, "height": 1000})
    try:
        panel = lab_open_panel(page, lab, "train.ipynb", "train")
        name = panel.locator(".nbp-pipeline-name")
        c = panel.locator('.nbp-param[data-name="c"] input')
        n = panel.locator('.nbp-param[data-name="n"] input')
        c.fill("0.25")
        n.fill("40")

        page.locator('.lm-TabBar-tab[data-id="filebrowser"]').click()
        page.locator('.jp-DirListing-item[title^="Name: other.ipynb"]').dblclick()
        page.locator('.lm-TabBar-tab[data-id="nbpipe-panel"]').click()
        expect(name).to_have_text("other", timeout=120_000)
        expect(c).to_have_value("7.0")  # its own default, not the value typed for train

        page.locator(".lm-DockPanel-tabBar .lm-TabBar-tab", has_text="train.ipynb").click()
        expect(name).to_have_text("train", timeout=120_000)
        expect(c).to_have_value("0.25")
        expect(n).to_have_value("40")

        panel.locator(".nbp-run-button").click()
        view = panel.locator(".nbpipe-run-view")
        expect(view.locator(".rv-header .rv-pill")).to_have_class(re.compile(r"\brv-state-succeeded\b"), timeout=240_000)
        run_id = view.locator(".rv-subtitle").inner_text().split(" · ")[-1]
        assert nbpipe.client.attach(run_id).output("fit") == 10.0
        assert {name: (lab["root"] / name).stat().st_mtime_ns for name in files} == files
    finally:
        page.close()
