"""In real JupyterLab and Chromium: the run graph's buttons after a kernel restart.

A widget belongs to the kernel that made it: after Kernel ▸ Restart its comm is gone, so a button
on it could only send into the void. What the user sees instead, and the loop they run next:

- the run failed; Kernel ▸ Restart: the output shows the saved graph and "Re-connect live", and no
  live graph (so no button that would do nothing);
- fix the failing cell in the editor and run the definition cells in the new kernel;
- "Re-connect live" → the live graph of the old run, owned by the new kernel;
- "Rerun from failed" → the widget switches to a new run made from *this* kernel's fixed pipeline:
  the fixed step and the one after it run again in new processes, the step before it is reused from
  the failed run (same process id), checked on the runner, not only on the page.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import nbformat
import pytest

pytestmark = pytest.mark.slow

BUG, FIX = "- 5)", "- 4)"
CELLS = [
    "import nbpipe",
    "@nbpipe.component\ndef load(n: int) -> dict:\n    import os\n    return {'n': n, 'pid': os.getpid()}",
    f"@nbpipe.component\ndef train(d: dict) -> float:\n    return d['n'] / (d['n'] {BUG}",
    "@nbpipe.component\ndef report(x: float) -> str:\n    return f'result {x}'",
    "@nbpipe.pipeline\ndef restart_demo(n: int = 5):\n    report(train(load(n).output).output)",
    "run = nbpipe.run(restart_demo)\nrun",
    "run.wait(timeout=120, raise_on_failure=False)\nprint('FINISHED', run.id, run.state)",
]


def test_rerun_from_failed_after_a_kernel_restart_runs_the_fixed_cell(start_lab: Any, lab_browser: Any,
                                                                     lab_run_all: Any, tmp_path: Path) -> None:
    from playwright.sync_api import expect

    import nbpipe.client

    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.cells = [nbformat.v4.new_code_cell(c) for c in CELLS]
    nbformat.write(nb, tmp_path / "restart.ipynb")
    lab = start_lab(tmp_path / "restart.ipynb")
    page = lab_browser.new_page(viewport={"width": 1400, "height": 1000})
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(f"pageerror: {e}"))
    try:
        page.goto(f"{lab['url']}/lab/tree/restart.ipynb?token={lab['token']}")
        notebook = page.locator(".jp-NotebookPanel:visible")
        cells = notebook.locator(".jp-Cell")
        expect(cells).to_have_count(len(CELLS), timeout=90_000)
        indicator = notebook.locator(".jp-Notebook-ExecutionIndicator")
        expect(indicator).to_have_attribute("data-status", "idle", timeout=90_000)
        lab_run_all(page, notebook)
        finished = cells.nth(6).locator(".jp-OutputArea-output")
        expect(finished).to_contain_text("FINISHED", timeout=180_000)
        first_id = re.search(r"FINISHED (\S+) failed", finished.inner_text()).group(1)
        output = cells.nth(5).locator(".nbpipe-snapshot-output")
        expect(output.locator(".nbpipe-run-view .rv-header .rv-pill")).to_have_class(
            re.compile(r"\brv-state-failed\b"), timeout=60_000)

        # Kernel ▸ Restart: the saved graph and "Re-connect live", no live graph with dead buttons.
        page.locator(".lm-MenuBar-item", has_text=re.compile(r"^Kernel$")).click()
        page.locator('.lm-Menu-item[data-command="kernelmenu:restart"]').click()
        page.locator(".jp-Dialog .jp-mod-accept").click()
        expect(indicator).to_have_attribute("data-status", "idle", timeout=90_000)
        expect(output.locator("img.nbpipe-snapshot-image")).to_be_visible(timeout=30_000)
        expect(output.locator(".nbpipe-run-view")).to_have_count(0)
        expect(output.get_by_role("button", name="Re-connect live")).to_be_visible()

        # Fix the train cell in the editor, then run the definition cells in the new kernel:
        # cell 0 twice first, so cell 4's prompt ([7]) differs from the one Run All gave it ([5]).
        train = cells.nth(2)
        train.locator(".cm-content").click()
        page.keyboard.press("Control+End")
        for _ in BUG:
            page.keyboard.press("Backspace")
        page.keyboard.type(FIX)
        expect(train).to_contain_text(f"(d['n'] {FIX}")
        cells.nth(0).locator(".cm-content").click()
        page.keyboard.press("Control+Enter")
        expect(cells.nth(0).locator(".jp-InputPrompt")).to_have_text(re.compile(r"\[1\]"), timeout=60_000)
        page.keyboard.press("Control+Enter")
        expect(cells.nth(0).locator(".jp-InputPrompt")).to_have_text(re.compile(r"\[2\]"), timeout=60_000)
        for _ in range(5):
            page.keyboard.press("Shift+Enter")
        expect(cells.nth(4).locator(".jp-InputPrompt")).to_have_text(re.compile(r"\[7\]"), timeout=60_000)

        # Re-connect live: the old run's graph, now owned by the new kernel, with working buttons.
        output.get_by_role("button", name="Re-connect live").click()
        view = output.locator(".nbpipe-run-view")
        expect(view).to_be_visible(timeout=60_000)
        pill = view.locator(".rv-header .rv-pill")
        expect(pill).to_have_class(re.compile(r"\brv-state-failed\b"), timeout=60_000)
        expect(view.locator(".rv-subtitle")).to_contain_text(first_id)
        # made by the button's new model at once: no fallback timer fired for it
        expect(output).to_have_attribute("data-live-via", "reconnect")
        assert output.get_attribute("data-fallbacks") is None

        view.locator(".rv-run-actions").get_by_role("button", name="Rerun from failed").click()
        expect(view.locator(".rv-notice")).to_contain_text(
            f"Re-running run {first_id} from step 'train'", timeout=60_000)
        expect(view.locator(".rv-notice")).to_contain_text("with this kernel's pipeline 'restart-demo'")
        expect(view.locator(".rv-subtitle")).not_to_contain_text(first_id, timeout=60_000)
        expect(pill).to_have_class(re.compile(r"\brv-state-succeeded\b"), timeout=180_000)
        second_id = view.locator(".rv-subtitle").inner_text().split(" · ")[-1]
        expect(view.locator('.rv-node[data-step="load"]')).to_have_class(re.compile(r"\brv-state-cached\b"))
        for step in ("train", "report"):
            expect(view.locator(f'.rv-node[data-step="{step}"]')).to_have_class(
                re.compile(r"\brv-state-succeeded\b"))
        assert "edited but not run" not in view.locator(".rv-notice").inner_text()  # every edit was run

        # An edit not run yet: the re-run goes ahead with the kernel's code, and the notice says so.
        train.locator(".cm-content").click()
        page.keyboard.press("Control+End")
        page.keyboard.type("  # edited")
        expect(train).to_have_class(re.compile(r"\bjp-mod-dirty\b"))
        view.locator(".rv-run-actions").get_by_role("button", name="Rerun", exact=True).click()
        expect(view.locator(".rv-notice")).to_contain_text(
            "cell 3 was edited but not run, so this re-run does not use that edit: run it first", timeout=60_000)
        expect(pill).to_have_class(re.compile(r"\brv-state-(succeeded|cached)\b"), timeout=180_000)
    finally:
        page.close()

    # On the runner: the fixed step ran (5 / (5 - 4)), the upstream step is the failed run's own result.
    first, second = nbpipe.client.attach(first_id), nbpipe.client.attach(second_id)
    steps = second.wait(timeout=60).steps
    assert steps["load"]["state"] == "cached" and steps["load"]["attempt"] == 0, steps["load"]
    assert steps["load"]["reason"] == f"reused from run {first_id} (upstream of 'train', unchanged)"
    assert second.output("load") == first.output("load")  # the same process's pid
    assert steps["train"]["state"] == "succeeded" and steps["train"]["attempt"] == 1, steps["train"]
    assert second.output("train") == 5.0 and second.output("report") == "result 5.0"
    noisy = [m for m in errors if re.search(r"nbpipe|anywidget|run_view|snapshot|pageerror", m, re.I)
             and not m.startswith("Error: widget model not found")]
    assert not noisy, noisy
