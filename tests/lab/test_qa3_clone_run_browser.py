"""In real JupyterLab and Chromium: "Clone" on a run in the panel's list fills the Run Pipeline form
with that run's parameters, to edit one and run again, as Kubeflow's "Clone run" does.

Re-run repeated a run exactly; changing one parameter of an older run meant reading its parameters
off the list and typing every one back into the form.
"""

from __future__ import annotations

import re
from typing import Any

import pytest

pytestmark = pytest.mark.slow

CELLS = [
    "import nbpipe",
    "@nbpipe.component\ndef make(n: int, scale: float) -> list:\n    return [i * scale for i in range(n)]",
    "@nbpipe.component\ndef total(xs: list) -> float:\n    return sum(xs)",
    "@nbpipe.pipeline\ndef cloned(n: int = 3, scale: float = 1.0):\n    total(make(n, scale).output)",
]


def test_clone_fills_the_form_with_a_runs_parameters(start_lab: Any, lab_browser: Any, lab_notebook: Any,
                                                     lab_open_panel: Any, lab_run_from_panel: Any) -> None:
    from playwright.sync_api import expect

    lab = start_lab(lab_notebook("cloned.ipynb", CELLS))
    page = lab_browser.new_page(viewport={"width": 1400, "height": 1000})
    try:
        panel = lab_open_panel(page, lab, "cloned.ipynb", "cloned")
        first = lab_run_from_panel(panel, n="4", scale="2.5")
        lab_run_from_panel(panel, n="6", scale="1.0")
        field = {name: panel.locator(f'.nbp-param[data-name="{name}"] input') for name in ("n", "scale")}
        expect(field["n"]).to_have_value("6")

        panel.locator(f'.nbp-run[data-run="{first}"] .nbp-run-actions').get_by_role("button", name="Clone").click()
        expect(field["n"]).to_have_value("4")
        expect(field["scale"]).to_have_value("2.5")
        expect(panel.locator(".nbp-messages")).to_contain_text("Filled in the parameters of run")
        expect(field["n"]).to_be_focused()
        field["n"].fill("5")  # edit one, keep the other
        panel.locator(".nbp-run-button").click()
        view = panel.locator(".nbp-run-section .nbpipe-run-view")
        expect(view.locator(".rv-params")).to_contain_text("n= 5", timeout=120_000)
        expect(view.locator(".rv-params")).to_contain_text("scale= 2.5")
        expect(view.locator(".rv-header .rv-pill")).to_have_class(re.compile(r"\brv-state-succeeded\b"), timeout=240_000)
    finally:
        page.close()
