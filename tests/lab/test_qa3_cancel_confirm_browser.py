"""In real JupyterLab and Chromium: Cancel asks first, in a JupyterLab dialog, as Kubeflow's UI asks
before it terminates a run.

The panel's Cancel (the run graph's and the run list's) and the run page's stopped the run at the
first click, with no way back: a click meant for Rerun next to it cancelled an hour of training.
Now a Lab dialog asks ("Keep running" is the default); only "Cancel run" cancels.
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
    "@nbpipe.component\ndef slow(n: int) -> int:\n    import time\n    time.sleep(600)\n    return n",
    "@nbpipe.pipeline\ndef sleepy(n: int = 1):\n    slow(n)",
]


def state(lab: dict[str, Any], run: str) -> str:
    with urllib.request.urlopen(f"{lab['url']}/nbpipe/api/runs/{run}?token={lab['token']}") as resp:
        return str(json.load(resp)["state"])


def test_cancel_asks_in_a_lab_dialog_and_keep_running_keeps_it(start_lab: Any, lab_browser: Any, lab_notebook: Any,
                                                               lab_open_panel: Any) -> None:
    from playwright.sync_api import expect

    lab = start_lab(lab_notebook("sleepy.ipynb", CELLS))
    page = lab_browser.new_page(viewport={"width": 1400, "height": 1000})
    dialogs: list[str] = []
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))  # no browser confirm() any more
    running = re.compile(r"\brv-state-running\b")
    try:
        panel = lab_open_panel(page, lab, "sleepy.ipynb", "sleepy")
        view = panel.locator(".nbp-run-section .nbpipe-run-view")
        panel.locator(".nbp-run-button").click()
        expect(view.locator('.rv-node[data-step="slow"]')).to_have_class(running, timeout=240_000)
        run = view.locator(".rv-subtitle").inner_text().split(" · ")[-1]

        # The graph's Cancel: the dialog names the run; Keep running (Escape too) keeps it.
        view.locator(".rv-run-actions").get_by_role("button", name="Cancel", exact=True).click()
        dialog = page.locator(".jp-Dialog")
        expect(dialog.locator(".jp-Dialog-header")).to_have_text("Cancel run?")
        expect(dialog.locator(".jp-Dialog-body")).to_contain_text(run)
        dialog.get_by_role("button", name="Keep running").click()
        expect(dialog).to_have_count(0)
        panel.locator(f'.nbp-run[data-run="{run}"] .nbp-run-actions').get_by_role("button", name="Cancel").click()
        expect(dialog.locator(".jp-Dialog-header")).to_have_text("Cancel run?")
        page.keyboard.press("Escape")
        expect(dialog).to_have_count(0)
        # Both answers have long reached the server by the time this one is answered: still running.
        assert state(lab, run) == "running"
        expect(view.locator(".rv-header .rv-pill")).to_have_class(running)

        # The run list's Cancel, confirmed: cancelled.
        panel.locator(f'.nbp-run[data-run="{run}"] .nbp-run-actions').get_by_role("button", name="Cancel").click()
        dialog.get_by_role("button", name="Cancel run").click()
        expect(view.locator(".rv-header .rv-pill")).to_have_class(re.compile(r"\brv-state-cancelled\b"), timeout=120_000)

        # The run page's Cancel asks the same.
        panel.locator(".nbp-run-button").click()
        expect(view.locator(".rv-subtitle")).not_to_contain_text(run, timeout=120_000)
        expect(view.locator('.rv-node[data-step="slow"]')).to_have_class(running, timeout=240_000)
        second = view.locator(".rv-subtitle").inner_text().split(" · ")[-1]
        panel.get_by_role("button", name="Open in a tab ↗").click()
        run_page = page.locator(f'.nbp-runpage[data-run="{second}"]')
        expect(run_page.locator('.rv-node[data-step="slow"]')).to_have_class(running, timeout=60_000)
        run_page.locator(".rv-run-actions").get_by_role("button", name="Cancel", exact=True).click()
        expect(dialog.locator(".jp-Dialog-body")).to_contain_text(second)
        dialog.get_by_role("button", name="Keep running").click()
        expect(dialog).to_have_count(0)
        assert state(lab, second) == "running"
        run_page.locator(".rv-run-actions").get_by_role("button", name="Cancel", exact=True).click()
        dialog.get_by_role("button", name="Cancel run").click()
        expect(run_page.locator(".rv-header .rv-pill")).to_have_class(re.compile(r"\brv-state-cancelled\b"),
                                                                      timeout=120_000)
        assert not dialogs, dialogs
    finally:
        page.close()
