"""Browser tests of control-flow groups in the run view: loop frames, collapsed loops, skipped branches.

The snapshot has the shape ``nbpipe/runner/views.py`` serves for a package with groups: a loop's
template step stays in the graph (group = loop id) next to its copies ``<template>-it<i>``
(display ``<name> [i]``), steps of a false condition are ``skipped`` with the runner's reason, and
there is no group metadata, so the view derives the frames from the steps.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

SKIP_REASON = "the elif condition of group 'condition-2' is false (score.output >= 0.4: 0.9 >= 0.4 is true, branch taken above)"


def step(name: str, upstream: list[str], state: str, group: str = "", display: str = "", reason: str = "") -> dict[str, Any]:
    now = time.time()
    ran = state not in ("pending", "skipped")
    return {"name": name, "component": name.split("-it")[0], "display_name": display, "upstream": upstream, "group": group,
            "state": state, "attempt": 1 if ran else 0, "max_attempts": 1, "started_at": now - 9 if ran else None,
            "finished_at": now - 2 if state in ("succeeded", "failed") else None, "duration": 7.0 if state in ("succeeded", "failed") else None,
            "reason": reason, "traceback": "", "cached": False, "inputs": {}, "outputs": {}}


def loop_states(n: int) -> list[str]:
    """A loop part-way through: most done, a few running, one failed, the rest waiting."""
    return ["failed" if i == 5 else "succeeded" if i < 22 else "running" if i < 26 else "pending" for i in range(n)]


def control_flow_run(iterations: int = 40, expanded: bool = True) -> dict[str, Any]:
    now = time.time()
    steps = [step("load", [], "succeeded", display="Load items"), step("offset", [], "succeeded")]
    steps.append(step("add", ["load", "offset"], "running" if expanded else "pending", group="for-1"))
    if expanded:
        steps += [step(f"add-it{i}", ["load", "offset"], st, group="for-1", display=f"add [{i}]") for i, st in enumerate(loop_states(iterations))]
    steps += [step("total", ["add"], "pending"), step("score", ["load"], "succeeded")]
    steps += [step("train", ["score"], "running", group="for-3")]
    steps += [step(f"train-it{i}", ["score"], ["succeeded", "running", "running", "pending"][i], group="for-3", display=f"train [{i}]") for i in range(4)]
    steps += [step("label_high", ["score"], "succeeded", group="condition-1", display="Label high"),
              step("label_mid", ["score"], "skipped", group="condition-2", display="Label mid", reason=SKIP_REASON),
              step("notify", ["label_mid"], "skipped", group="condition-2", reason=SKIP_REASON),
              step("report", ["total", "train", "label_high", "notify"], "pending")]
    return {"id": "r-flow", "name": "control-flow", "pipeline": "flow", "experiment": "Default", "state": "running",
            "params": {"n": iterations}, "created_at": now - 12, "started_at": now - 11, "finished_at": None, "duration": None,
            "reason": "", "last_event_id": 100, "steps": steps}


MOUNT = """(snap) => {
  const host = document.createElement('div');
  document.querySelector('#app').replaceChildren(host);
  window.selected = [];
  window.view = window.RV.createRunView(host, { onSelect: (n) => window.selected.push(n) });
  window.view.setSnapshot(snap);
}"""

FRAME = """(group) => {
  const f = document.querySelector(`.rv-frame[data-group="${group}"]`);
  if (!f) return null;
  const r = f.getBoundingClientRect();
  const names = [...document.querySelectorAll('.rv-node')].filter((n) => {
    const b = n.getBoundingClientRect();
    return b.left >= r.left && b.right <= r.right && b.top >= r.top && b.bottom <= r.bottom;
  }).map((n) => n.dataset.step);
  return { inside: names, title: f.querySelector('.rv-frame-title').textContent, status: f.querySelector('.rv-frame-status').textContent,
    tooltip: f.title, cls: f.className, toggle: f.querySelector('.rv-frame-toggle')?.textContent ?? null };
}"""


def test_collapsed_loop_shows_summary_and_expands_on_click(rv_page: Any, rv_artifacts: Path) -> None:
    rv_page.evaluate(MOUNT, control_flow_run())
    assert rv_page.locator('.rv-node[data-step^="add-it"]').count() == 0, "a 40-iteration loop starts collapsed"
    summary = rv_page.locator('.rv-node[data-step="add"]')
    assert "rv-summary" in summary.get_attribute("class")
    assert summary.locator(".rv-node-title").text_content() == "add × 40"
    assert summary.locator(".rv-node-meta").text_content() == "●4  ○14  ✓21  ✗1"
    assert summary.locator(".rv-summary-bar .rv-seg").count() == 4
    loop = rv_page.evaluate(FRAME, "for-1")
    assert loop["title"] == "loop for-1" and loop["status"] == "4 of 40 running · 21 done · 1 failed"
    assert loop["inside"] == ["add"] and loop["toggle"] == "Show 40"
    small = rv_page.evaluate(FRAME, "for-3")  # 4 iterations: expanded, template and copies framed together
    assert sorted(small["inside"]) == ["train", "train-it0", "train-it1", "train-it2", "train-it3"]
    assert small["status"] == "2 of 4 running · 1 done" and small["toggle"] == "Collapse"
    rv_page.screenshot(path=str(rv_artifacts / "run_view_groups.png"))

    summary.click()
    assert rv_page.evaluate("() => window.selected") == [], "clicking a summary expands, it does not select"
    assert rv_page.locator('.rv-node[data-step^="add-it"]').count() == 40
    loop = rv_page.evaluate(FRAME, "for-1")
    assert sorted(loop["inside"]) == sorted(["add"] + [f"add-it{i}" for i in range(40)]), "the frame holds every iteration"
    assert loop["toggle"] == "Collapse"
    assert rv_page.evaluate("() => document.activeElement.classList.contains('rv-frame-toggle')")
    assert "rv-summary" not in rv_page.locator('.rv-node[data-step="add"]').get_attribute("class")
    rv_page.evaluate("() => window.view.fit()")
    rv_page.screenshot(path=str(rv_artifacts / "run_view_groups_expanded.png"))
    rv_page.keyboard.press("Enter")  # the focused Collapse button
    assert rv_page.locator('.rv-node[data-step^="add-it"]').count() == 0
    # Selecting a hidden iteration (e.g. from an inputs link) opens its loop and shows the step.
    rv_page.evaluate("() => window.view.select('add-it33')")
    it33 = rv_page.locator('.rv-node[data-step="add-it33"]')
    assert it33.is_visible() and "rv-selected" in it33.get_attribute("class")
    assert it33.locator(".rv-node-title").text_content() == "add [33]"


def test_skipped_branch_is_dimmed_with_its_reason(rv_page: Any) -> None:
    rv_page.evaluate(MOUNT, control_flow_run())
    branch = rv_page.evaluate(FRAME, "condition-2")
    assert "rv-frame-skipped" in branch["cls"] and branch["status"] == "skipped"
    assert branch["title"] == "elif · condition-2" and branch["tooltip"] == SKIP_REASON
    assert sorted(branch["inside"]) == ["label_mid", "notify"]
    taken = rv_page.evaluate(FRAME, "condition-1")
    assert "rv-frame-skipped" not in taken["cls"] and taken["title"] == "if · condition-1"
    mid = rv_page.locator('.rv-node[data-step="label_mid"]')
    assert SKIP_REASON in mid.get_attribute("title")
    dim = rv_page.evaluate("""() => [document.querySelector('.rv-node[data-step="label_mid"]'), document.querySelector('.rv-node[data-step="label_high"]')]
      .map((n) => Number(getComputedStyle(n).opacity))""")
    assert dim[0] < 0.8 and dim[1] == 1


def test_loop_expanding_at_run_time_and_its_counts_follow_events(rv_page: Any, rv_artifacts: Path) -> None:
    rv_page.evaluate(MOUNT, control_flow_run(expanded=False))
    loop = rv_page.evaluate(FRAME, "for-1")
    assert loop["inside"] == ["add"] and loop["status"] == "waiting for items" and loop["toggle"] is None
    specs = [{"name": f"add-it{i}", "component": "add", "display_name": f"add [{i}]", "upstream": ["load", "offset"], "group": "for-1"}
             for i in range(30)]
    rv_page.evaluate("""(specs) => {
      window.view.applyEvent({ type: 'StepsAdded', id: 101, run_id: 'r-flow', ts: Date.now() / 1000, loop: 'for-1', items: specs.length, steps: specs });
      window.view.applyEvent({ type: 'StepStarted', id: 102, run_id: 'r-flow', ts: Date.now() / 1000, step: 'add', attempt: 1, max_attempts: 1 });
      let id = 103;
      for (let i = 0; i < 3; i += 1) window.view.applyEvent({ type: 'StepStarted', id: id++, run_id: 'r-flow', ts: Date.now() / 1000, step: `add-it${i}`, attempt: 1, max_attempts: 1 });
      window.view.applyEvent({ type: 'StepFinished', id: id++, run_id: 'r-flow', ts: Date.now() / 1000, step: 'add-it0', state: 'succeeded', attempt: 1, duration: 0.5 });
      window.view.flush();
    }""", specs)
    assert rv_page.locator('.rv-node[data-step^="add-it"]').count() == 0
    loop = rv_page.evaluate(FRAME, "for-1")
    assert loop["status"] == "2 of 30 running · 1 done" and loop["toggle"] == "Show 30"
    summary = rv_page.locator('.rv-node[data-step="add"]')
    assert summary.locator(".rv-node-title").text_content() == "add × 30"
    assert "rv-state-running" in summary.get_attribute("class")
    rv_page.evaluate("""() => { window.view.applyEvent({ type: 'StepFinished', id: 200, run_id: 'r-flow', ts: Date.now() / 1000,
      step: 'add-it1', state: 'failed', attempt: 1, duration: 0.5, reason: 'boom' }); window.view.flush(); }""")
    assert rv_page.evaluate(FRAME, "for-1")["status"] == "1 of 30 running · 1 done · 1 failed"
    assert "✗1" in summary.locator(".rv-node-meta").text_content()


def test_groups_in_dark_theme(rv_page: Any, rv_artifacts: Path) -> None:
    rv_page.evaluate("() => document.body.setAttribute('data-jp-theme-light', 'false')")
    rv_page.evaluate(MOUNT, control_flow_run())
    rv_page.screenshot(path=str(rv_artifacts / "run_view_groups_dark.png"))
    label = rv_page.evaluate("""() => { const lum = (c) => { const [r, g, b] = c.match(/[\\d.]+/g).map(Number); return (0.2126 * r + 0.7152 * g + 0.0722 * b) / 255; };
      return lum(getComputedStyle(document.querySelector('.rv-frame-title')).color); }""")
    assert label > 0.7
