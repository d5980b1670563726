"""In real JupyterLab and Chromium: a re-run that saves the notebook says so, like Run Pipeline.

Fix a failed cell in the editor, click "Rerun from failed": the panel saves the notebook first (the
re-run exports it as saved). Run Pipeline says "Saved … before running (it had unsaved changes)";
the re-runs wrote the file without a word. A re-run with nothing edited writes nothing and says
nothing.
"""

from __future__ import annotations

import re
from typing import Any

import pytest

from test_rerun_panel_browser import edit_cell

pytestmark = pytest.mark.slow

CELLS = [
    "import nbpipe",
    "@nbpipe.component\ndef load(n: int) -> list:\n    return list(range(n))",
    "@nbpipe.component\ndef mean(xs: list) -> float:\n    return sum(xs) / 0",
    "@nbpipe.pipeline\ndef stats(n: int = 4):\n    mean(load(n).output)",
]


def test_rerun_from_failed_says_it_saved_the_fixed_notebook(start_lab: Any, lab_browser: Any, lab_notebook: Any,
                                                            lab_open_panel: Any) -> None:
    from playwright.sync_api import expect

    lab = start_lab(lab_notebook("stats.ipynb", CELLS))
    path = lab["root"] / "stats.ipynb"
    page = lab_browser.new_page(viewport={"width": 1400, "height": 1000})
    try:
        panel = lab_open_panel(page, lab, "stats.ipynb", "stats")
        view = panel.locator(".nbpipe-run-view")
        pill = view.locator(".rv-header .rv-pill")
        subtitle = view.locator(".rv-subtitle")
        panel.locator(".nbp-run-button").click()
        expect(pill).to_have_class(re.compile(r"\brv-state-failed\b"), timeout=240_000)
        failed = subtitle.inner_text().split(" · ")[-1]

        edit_cell(page, page.locator(".jp-NotebookPanel:visible .jp-Cell").nth(2), "/ 0", "/ len(xs)")
        before = path.stat().st_mtime_ns
        view.locator(".rv-run-actions").get_by_role("button", name="Rerun from failed").click()
        expect(subtitle).not_to_contain_text(failed, timeout=120_000)
        expect(pill).to_have_class(re.compile(r"\brv-state-succeeded\b"), timeout=240_000)
        notice = panel.locator(".nbp-messages .nbp-notice")
        expect(notice.locator("span").first).to_have_text("Saved stats.ipynb before re-running (it had unsaved changes).")
        assert path.stat().st_mtime_ns != before and "len(xs)" in path.read_text()

        fixed = subtitle.inner_text().split(" · ")[-1]
        saved = path.stat().st_mtime_ns
        view.locator(".rv-run-actions").get_by_role("button", name="Rerun", exact=True).click()
        expect(subtitle).not_to_contain_text(fixed, timeout=120_000)
        expect(pill).to_have_class(re.compile(r"\brv-state-succeeded\b"), timeout=240_000)
        expect(notice).to_have_count(0)  # nothing edited: nothing written, nothing said
        assert path.stat().st_mtime_ns == saved
    finally:
        page.close()
