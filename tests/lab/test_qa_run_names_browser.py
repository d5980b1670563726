"""In real JupyterLab and Chromium: runs of one pipeline can be told apart in Compare and the run list.

Compare's metric charts labelled each bar with the run's full name, cut to "sq 2026-12-…" (the
same for every run of a pipeline on a day), so the bars could be told apart by colour only. The
panel's run list shortened a run's name to "sq · 14:02:28" but left a re-run's as
"sq 2026-12-02 14:02:28 (re-run)", cut to "sq 2026-…" in the sidebar, every re-run alike.
Both now say "pipeline · time" (with "(re-run)" after a re-run's).
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
    "@nbpipe.component\ndef accuracy(x: int) -> float:\n    return x / 10",
    "@nbpipe.pipeline\ndef sq(x: int = 2):\n    accuracy(x)",
]

CUT = "(el) => el.scrollWidth > el.clientWidth + 1"


def test_compare_bars_and_rerun_list_entries_name_runs_by_their_time(start_lab: Any, lab_browser: Any,
                                                                     lab_notebook: Any, lab_open_panel: Any,
                                                                     lab_run_from_panel: Any) -> None:
    from playwright.sync_api import expect

    lab = start_lab(lab_notebook("sq.ipynb", CELLS))
    page = lab_browser.new_page(viewport={"width": 1400, "height": 1000})
    try:
        panel = lab_open_panel(page, lab, "sq.ipynb", "sq")
        view = panel.locator(".nbpipe-run-view")
        subtitle = view.locator(".rv-subtitle")
        ids = [lab_run_from_panel(panel, x=x) for x in ("3", "7")]

        view.locator(".rv-run-actions").get_by_role("button", name="Rerun", exact=True).click()
        expect(subtitle).not_to_contain_text(ids[-1], timeout=120_000)
        rerun = subtitle.inner_text().split(" · ")[-1]
        name = panel.locator(f'.nbp-run[data-run="{rerun}"] .nbp-run-name')
        expect(name).to_have_text(re.compile(r"^sq · \d\d:\d\d:\d\d \(re-run\)$"), timeout=60_000)

        panel.get_by_role("button", name="All runs ↗").click()
        runs = page.locator(".nbp-runs-page:visible")
        for run_id in ids:
            runs.locator(f'.nbp-runs-row[data-run="{run_id}"] .nbp-pick').check()
        runs.get_by_role("button", name=re.compile("^Compare")).click()
        chart = page.locator(".nbp-compare-page:visible .nbp-chart").first
        labels = chart.locator(".nbp-bar-label")
        expect(labels).to_have_count(2, timeout=60_000)
        texts = labels.all_inner_texts()
        names = {r["id"]: r["name"] for r in json.load(urllib.request.urlopen(
            f"{lab['url']}/nbpipe/api/runs?limit=10&token={lab['token']}"))["runs"]}
        assert sorted(texts) == sorted(f"sq · {names[i][-8:]}" for i in ids), (texts, names)  # "sq 2026-12-02 14:02:28"
        assert not any(labels.nth(i).evaluate(CUT) for i in range(2)), texts
    finally:
        page.close()
