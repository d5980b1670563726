"""End to end in a real browser: the README's plain-cell notebook runs from the Lab panel, and
the panel never writes a notebook the user did not edit.

JupyterLab (``start_lab``) serves ``notebooks/plain_cells.ipynb`` and a notebook with no pipeline;
Debian's Chromium (``lab_browser``) opens both, switches tabs and opens the panel — every file
keeps its bytes and mtime, and "no pipeline" is a normal panel state with no HTTP error in the
console. Then Run Pipeline from the panel and from the toolbar button (all four steps succeed),
edit the constant cell ``gamma = ...`` and run again: the panel saves (and says so), its form
follows the new default, and ``train``/``evaluate`` run again while ``load_data``/``split`` are
reused. Export and Export KFP write both formats beside the notebook.
"""

from __future__ import annotations

import json
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "test-artifacts"
STEPS = ["load_data", "split", "train", "evaluate"]

pytestmark = pytest.mark.slow


def _api(lab: dict[str, Any], path: str) -> Any:
    req = urllib.request.Request(f"{lab['url']}/nbpipe/api/{path}", headers={"Authorization": f"token {lab['token']}"})
    with urllib.request.urlopen(req, timeout=60) as resp:
        return json.loads(resp.read())


def _stat(root: Path) -> dict[str, tuple[bytes, int]]:
    return {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in sorted(root.glob("*.ipynb"))}


def _wait_for_idle_kernel(lab: dict[str, Any]) -> None:
    """Until the notebook's kernel has started and reported idle (Lab has updated the metadata then)."""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        req = urllib.request.Request(f"{lab['url']}/api/kernels", headers={"Authorization": f"token {lab['token']}"})
        with urllib.request.urlopen(req, timeout=30) as resp:
            if any(k["execution_state"] == "idle" for k in json.loads(resp.read())):
                return
        time.sleep(0.2)
    raise AssertionError("the notebook's kernel never became idle")


def _steps(lab: dict[str, Any], run_id: str) -> dict[str, dict[str, Any]]:
    return {s["name"]: s for s in _api(lab, f"runs/{run_id}")["steps"]}


def test_plain_cells_from_the_panel_without_unasked_saves(start_lab: Any, lab_browser: Any, tmp_path: Path) -> None:
    from playwright.sync_api import expect

    lab = start_lab(ROOT / "notebooks" / "plain_cells.ipynb", Path(__file__).parent / "notebooks" / "plain.ipynb")
    # Lab's own autosave (every 2 minutes) is off, so any write to a notebook here is the panel's.
    autosave = tmp_path / "settings" / "@jupyterlab" / "docmanager-extension" / "plugin.jupyterlab-settings"
    autosave.parent.mkdir(parents=True)
    autosave.write_text(json.dumps({"autosave": False}))
    root: Path = lab["root"]
    before = _stat(root)
    ARTIFACTS.mkdir(exist_ok=True)
    page = lab_browser.new_page(viewport={"width": 1600, "height": 1000})
    console: list[str] = []
    page.on("console", lambda m: console.append(m.text) if m.type in ("error", "warning") else None)
    try:
        page.goto(f"{lab['url']}/lab/tree/plain_cells.ipynb?token={lab['token']}")
        page.locator(".jp-NotebookPanel").first.wait_for(timeout=90_000)
        page.locator('.lm-TabBar-tab[data-id="nbpipe-panel"]').click()
        panel = page.locator("#nbpipe-panel")
        expect(panel.locator(".nbp-pipeline-name")).to_have_text("plain_cells", timeout=120_000)
        # The kernel is up (Lab updates the notebook's metadata then: the old panel saved here).
        _wait_for_idle_kernel(lab)
        chips = panel.locator(".nbp-components .nbp-chip")
        expect(chips).to_have_text(STEPS)
        # %nbpipe run makes the constants of unmarked cells parameters; so does the panel.
        expect(panel.locator('.nbp-param[data-name="gamma"] input')).to_have_value("0.001")
        expect(panel.locator('.nbp-param[data-name="test_size"] input')).to_have_value("0.25")

        # Another notebook, without a pipeline: a normal state that says what to add.
        page.goto(f"{lab['url']}/lab/tree/plain.ipynb?token={lab['token']}")
        page.locator(".jp-NotebookPanel").first.wait_for(timeout=90_000)
        none = panel.locator(".nbp-no-pipeline")
        expect(none).to_contain_text("No pipeline in plain.ipynb yet", timeout=120_000)
        expect(none).to_contain_text("%%component")
        expect(panel.locator(".nbp-notebook .nbp-error")).to_have_count(0)
        expect(panel.locator(".nbp-run-button")).to_be_disabled()
        page.screenshot(path=str(ARTIFACTS / "lab-panel-no-pipeline.png"))
        # Back and forth between the tabs: each switch analyzes again, and writes nothing.
        for name, shows in (("plain_cells.ipynb", "plain_cells"), ("plain.ipynb", None), ("plain_cells.ipynb", "plain_cells")):
            page.locator(f'.lm-DockPanel-tabBar .lm-TabBar-tab:has-text("{name}")').click()
            if shows:
                expect(panel.locator(".nbp-pipeline-name")).to_have_text(shows, timeout=120_000)
            else:
                expect(none).to_be_visible(timeout=120_000)
        expect(panel.locator(".nbp-busy")).to_have_count(0, timeout=120_000)
        # Lab marked the notebooks dirty itself (kernel metadata): a panel that saved dirty notebooks
        # to analyze them would have written both files by now.
        assert page.locator(".lm-DockPanel-tabBar .lm-TabBar-tab.jp-mod-dirty").count() >= 1
        assert _stat(root) == before, "opening, switching tabs or the panel wrote a notebook"
        assert "Saving file" not in lab["log"].read_text()

        # Run Pipeline from the panel: every step succeeds.
        panel.locator(".nbp-run-button").click()
        view = panel.locator(".nbpipe-run-view")
        expect(view.locator(".rv-pill")).to_have_class("rv-pill rv-state-succeeded", timeout=300_000)
        expect(view.locator(".rv-node.rv-state-succeeded")).to_have_count(4)
        first = panel.locator(".nbp-runs .nbp-run").first
        expect(first).to_have_attribute("data-state", "succeeded", timeout=30_000)
        run1 = first.get_attribute("data-run")
        assert run1 and all(s["state"] == "succeeded" for s in _steps(lab, run1).values())
        expect(first.locator(".nbp-run-meta")).to_contain_text("plain_cells.ipynb")
        page.screenshot(path=str(ARTIFACTS / "lab-plain-cells-run.png"))

        # The toolbar button runs it too (same notebook, same parameters).
        page.locator(".jp-NotebookPanel:visible .jp-NotebookPanel-toolbar .nbp-toolbar-run").click()
        runs = panel.locator(".nbp-runs .nbp-run")
        expect(runs).to_have_count(2, timeout=120_000)
        expect(runs.first).to_have_attribute("data-state", "succeeded", timeout=300_000)
        run2 = runs.first.get_attribute("data-run")
        assert run2 and run2 != run1
        assert {s["state"] for s in _steps(lab, run2).values()} <= {"succeeded", "cached"}

        # Edit the constant cell and run again: the panel saves (and says so), the form follows the
        # new default, train and evaluate run again, load_data and split are reused.
        cell = page.locator(".jp-NotebookPanel:visible .jp-CodeCell").filter(has_text="gamma = 0.001")
        cell.locator(".cm-content").click()
        page.keyboard.press("Control+a")
        page.keyboard.type("test_size = 0.25\ngamma = 0.002\n")
        panel.locator(".nbp-run-button").click()
        expect(panel.locator(".nbp-notice")).to_contain_text("Saved plain_cells.ipynb before running", timeout=120_000)
        expect(panel.locator('.nbp-param[data-name="gamma"] input')).to_have_value("0.002")
        expect(runs).to_have_count(3, timeout=120_000)
        expect(runs.first).to_have_attribute("data-state", "succeeded", timeout=300_000)
        run3 = runs.first.get_attribute("data-run")
        assert run3 and _api(lab, f"runs/{run3}")["params"] == {"test_size": 0.25, "gamma": 0.002}
        steps = _steps(lab, run3)
        assert [steps[s]["state"] for s in STEPS] == ["cached", "cached", "succeeded", "succeeded"], steps
        assert "gamma = 0.002" in (root / "plain_cells.ipynb").read_text()
        assert _stat(root)["plain.ipynb"] == before["plain.ipynb"]

        # Export and Export KFP from the panel: both formats beside the notebook.
        panel.get_by_role("button", name="Export", exact=True).click()
        expect(panel.locator(".nbp-notice")).to_contain_text("Exported plain_cells.nbpipe", timeout=120_000)
        panel.get_by_role("button", name="Export KFP").click()
        expect(panel.locator(".nbp-notice")).to_contain_text("Exported plain_cells.kfp.yaml", timeout=120_000)
        spec = yaml.safe_load((root / "plain_cells.kfp.yaml").read_text())
        assert sorted(spec["root"]["dag"]["tasks"]) == ["evaluate", "load-data", "split", "train"]
        assert spec["root"]["inputDefinitions"]["parameters"]["gamma"]["defaultValue"] == 0.002
    finally:
        page.close()
    http_errors = [m for m in console if "422" in m or "nbpipe" in m.lower()]
    assert not http_errors, http_errors
