"""In real JupyterLab and Chromium: a step's output downloads from the run page and the panel, as
Kubeflow's UI downloads an artifact.

The Outputs tab showed a preview, the digest and the Lineage link, but no way to get the file
(only ``%nbpipe pull`` in a kernel). Each stored output now has a Download link that saves its bytes
as ``<step>-<output>.<format>``.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.slow

CELLS = [
    "import nbpipe\nfrom nbpipe import Output, Model",
    "@nbpipe.component\ndef make(n: int) -> dict:\n    return {'n': n, 'squares': [i * i for i in range(n)]}",
    "@nbpipe.component\ndef save(d: dict, model: Output[Model]) -> None:\n"
    "    with open(model.path, 'w') as fh:\n        fh.write('weights ' + str(d['n']))",
    "@nbpipe.pipeline\ndef fetchable(n: int = 3):\n    save(make(n).output)",
]


def test_download_a_steps_output_from_the_run_page_and_the_panel(start_lab: Any, lab_browser: Any, lab_notebook: Any,
                                                                 lab_open_panel: Any, lab_run_from_panel: Any,
                                                                 tmp_path: Path) -> None:
    from playwright.sync_api import expect

    lab = start_lab(lab_notebook("fetchable.ipynb", CELLS))
    page = lab_browser.new_page(viewport={"width": 1500, "height": 1000}, accept_downloads=True)
    try:
        panel = lab_open_panel(page, lab, "fetchable.ipynb", "fetchable")
        run = lab_run_from_panel(panel, n="4")
        view = panel.locator(".nbp-run-section .nbpipe-run-view")
        view.locator('.rv-node[data-step="make"]').click()
        view.locator('.rv-tab[data-tab="outputs"]').click()
        with page.expect_download() as got:
            view.locator('.rv-output[data-output="output"] .rv-download').click()
        download = got.value
        assert download.suggested_filename == "make-output.json"
        download.save_as(tmp_path / "value.json")
        assert json.loads((tmp_path / "value.json").read_text()) == {"n": 4, "squares": [0, 1, 4, 9]}

        panel.get_by_role("button", name="Open in a tab ↗").click()
        run_page = page.locator(f'.nbp-runpage[data-run="{run}"]')
        expect(run_page.locator(".rv-header .rv-pill")).to_have_class(re.compile(r"\brv-state-succeeded\b"), timeout=60_000)
        run_page.locator('.rv-node[data-step="save"]').click()
        run_page.locator('.rv-tab[data-tab="outputs"]').click()
        link = run_page.locator('.rv-output[data-output="model"] .rv-download')
        expect(link).to_have_attribute("title", re.compile(r"^Save save\.model \("))
        with page.expect_download() as got:
            link.click()
        assert got.value.suggested_filename.startswith("save-model")
        got.value.save_as(tmp_path / "model")
        assert (tmp_path / "model").read_text() == "weights 4"
    finally:
        page.close()
