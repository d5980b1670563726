"""QA in real JupyterLab and Chromium: a run page the layout did not keep still opens.

Found by the QA pass: Lab saved its layout once while the nbpipe extension did not load (a
rebuild under an open Lab: its bundle answered 404), so the workspace kept the run page's tracker
entry but not the page in the layout. On the next load the tracker restored the page, the layout
left it detached, and from then on clicking that run in the Runs list, or *nbpipe: Open Run…* with
its id, did nothing at all (the page was "already open", and activating a detached page is a
no-op). Opening it now adds the page back. No kernel code runs.
"""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.slow
NOTEBOOKS = Path(__file__).parent / "notebooks"
RUN = "r20990101-000000-abcdef"  # no such run: its page says so, which is all this needs


def save_workspace(lab: dict[str, Any], data: dict[str, Any]) -> None:
    req = urllib.request.Request(
        f"{lab['url']}/lab/api/workspaces/default", method="PUT",
        data=json.dumps({"data": data, "metadata": {"id": "default"}}).encode(),
        headers={"Authorization": f"token {lab['token']}", "Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=30) as resp:
        assert resp.status in (200, 204)


def test_opening_a_run_whose_restored_page_was_left_detached(start_lab: Any, lab_browser: Any) -> None:
    from playwright.sync_api import expect

    lab = start_lab(NOTEBOOKS / "tiny.ipynb")
    # The tracker remembers the run page; the saved layout (main area) does not hold it.
    save_workspace(lab, {
        f"nbpipe-run:{RUN}": {"data": {"id": RUN}},
        "layout-restorer:data": {"main": {"dock": {"type": "tab-area", "currentIndex": 0, "widgets": []}}},
    })
    page = lab_browser.new_page(viewport={"width": 1400, "height": 900})
    try:
        page.goto(f"{lab['url']}/lab?token={lab['token']}")
        page.locator(".jp-Launcher").first.wait_for(timeout=90_000)
        run_page = page.locator(f'.nbp-runpage[data-run="{RUN}"]')
        expect(run_page).to_have_count(0)

        box = page.locator(".lm-CommandPalette-input")
        item = page.locator('.lm-CommandPalette-item[data-command="nbpipe:open-run"]').first
        page.keyboard.press("Control+Shift+C")
        expect(box).to_be_visible(timeout=30_000)
        box.fill("nbpipe: Open Run")
        item.click(timeout=30_000)
        dialog = page.locator(".jp-Dialog")
        expect(dialog.locator("input")).to_have_attribute("placeholder", "e.g. r20261130-190203-ab12")
        dialog.locator("input").fill(RUN)
        dialog.locator(".jp-mod-accept").click()

        expect(run_page).to_be_visible(timeout=30_000)
        expect(run_page).to_contain_text(f"No run {RUN}", timeout=60_000)
    finally:
        page.close()
