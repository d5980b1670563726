"""The run view with 10,000 steps (issue 14, item 3): a fan-out and a chain, in real Chromium.

Above ``LARGE_AT`` visible steps the view keeps DOM nodes only near the viewport and paints the
rest on a canvas when zoomed far out (nbpipe/widgets/run_view_virtual.js). These tests check what a
user relies on: the DOM stays bounded, panning brings other steps in, keyboard navigation and the
failed-step jump reach steps that had no node, far-zoom clicks select, and 1,000 events land.
Timings are not asserted here; ``benchmarks/run_view.py`` measures them with the same scripts.
"""

from __future__ import annotations

from typing import Any

import pytest

from test_run_view_scale import FANOUT

N = 10_000
DOM_BOUND = 700  # node elements at most, whatever the graph size (a 1280×720 page shows a few hundred)

CHAIN = """(n) => {
  const now = Date.now() / 1000;
  const step = (name, upstream, state) => ({ name, component: name.split('-')[0], display_name: '', upstream, group: '',
    state, attempt: state === 'pending' ? 0 : 1, max_attempts: 1, started_at: state === 'pending' ? null : now - 5,
    finished_at: null, duration: null, reason: '', traceback: '', cached: false, inputs: {}, outputs: {} });
  const names = Array.from({ length: n - 2 }, (_, i) => `shard-${String(i).padStart(3, '0')}`);
  const shards = names.map((name, i) => step(name, [i ? names[i - 1] : 'load'], 'pending'));
  return { id: 'r-big', name: 'chain', pipeline: 'chain', experiment: 'Default', state: 'running', params: { n },
    created_at: now - 6, started_at: now - 5, finished_at: null, duration: null, reason: '', last_event_id: 10,
    steps: [{ ...step('load', [], 'succeeded'), duration: 1.2 }, ...shards, step('merge', [names[names.length - 1]], 'pending')] };
}"""

# 250 steps × (StepStarted, StepLog, ArtifactSaved, StepFinished); every 50th from shard-007 fails.
EVENTS = """() => {
  const events = [];
  let id = 11;
  for (let i = 0; i < 250; i += 1) {
    const step = `shard-${String(i).padStart(3, '0')}`;
    events.push({ type: 'StepStarted', id: id++, run_id: 'r-big', ts: Date.now() / 1000, step, attempt: 1, max_attempts: 1 });
    events.push({ type: 'StepLog', id: id++, run_id: 'r-big', ts: 0, step, attempt: 1, stream: 'stdout', text: `shard ${i} ok\\n` });
    events.push({ type: 'ArtifactSaved', id: id++, run_id: 'r-big', ts: 0, step, name: 'part', digest: 'f'.repeat(64), kind: 'value',
      format: 'json', size: 10, preview: { type: 'json', value: i } });
    events.push({ type: 'StepFinished', id: id++, run_id: 'r-big', ts: Date.now() / 1000, step, state: i % 50 === 7 ? 'failed' : 'succeeded',
      attempt: 1, duration: 0.25 + i / 1000, reason: i % 50 === 7 ? 'ValueError: bad shard' : '', traceback: '' });
  }
  return events;
}"""

SHOW = """(snap) => {
  const host = document.createElement('div');
  document.querySelector('#app').replaceChildren(host);
  window.view = window.RV.createRunView(host, {});
  window.view.setSnapshot(snap);
}"""

APPLY = """(events) => {
  for (const e of events) window.view.applyEvent(e);
  window.view.flush();
  const steps = window.view.snapshot.steps, n = {};
  for (const s of steps) n[s.state] = (n[s.state] || 0) + 1;
  return n;
}"""

DOM = """() => {
  const canvas = document.querySelector('.rv-canvas').getBoundingClientRect();
  const nodes = [...document.querySelectorAll('.rv-node')];
  const onScreen = nodes.filter((n) => { const r = n.getBoundingClientRect();
    return r.right > canvas.left && r.left < canvas.right && r.bottom > canvas.top && r.top < canvas.bottom; });
  const overview = document.querySelector('.rv-overview');
  return { nodes: nodes.length, edges: document.querySelectorAll('.rv-edge').length, names: nodes.map((n) => n.dataset.step),
    onScreen: onScreen.map((n) => n.dataset.step), far: document.querySelector('.rv-canvas').classList.contains('rv-far'),
    painted: Boolean(overview && !overview.hidden), zoom: Number(document.querySelector('.rv-canvas').dataset.zoom) };
}"""

FOCUS = """() => { const a = document.activeElement; const c = document.querySelector('.rv-canvas').getBoundingClientRect();
  const r = a.getBoundingClientRect();
  return { step: a.dataset.step || null, inside: r.left >= c.left && r.right <= c.right && r.top >= c.top && r.bottom <= c.bottom }; }"""

# The colours painted on the far-zoom canvas: how many pixels of each state's colour.
PAINTED = """() => {
  const c = document.querySelector('.rv-overview'), ctx = c.getContext('2d');
  const data = ctx.getImageData(0, 0, c.width, c.height).data;
  const probe = (st) => { const el = document.querySelector(`.rv-probe-node.rv-state-${st}`);
    const m = getComputedStyle(el).backgroundColor.match(/[\\d.]+/g).map(Number);
    return m.length >= 4 && getComputedStyle(el).backgroundColor.startsWith('color(') ? m.slice(0, 3).map((v) => Math.round(v * 255)) : m.slice(0, 3); };
  const out = {};
  for (const st of ['pending', 'succeeded', 'failed']) {
    const [r, g, b] = probe(st);
    let n = 0;
    for (let i = 0; i < data.length; i += 4) if (Math.abs(data[i] - r) < 3 && Math.abs(data[i + 1] - g) < 3 && Math.abs(data[i + 2] - b) < 3) n += 1;
    out[st] = n;
  }
  return out;
}"""


@pytest.mark.parametrize("shape", ["fanout", "chain"])
def test_10k_steps_bounded_dom_navigation_and_1000_events(rv_page: Any, shape: str) -> None:
    snap = rv_page.evaluate(FANOUT if shape == "fanout" else CHAIN, N)
    rv_page.evaluate(SHOW, snap)
    first = rv_page.evaluate(DOM)
    # Fitted, 10,000 steps are a painted overview: no per-step DOM, a canvas instead.
    assert first["far"] and first["painted"], first
    assert first["nodes"] <= DOM_BOUND, first["nodes"]
    assert rv_page.locator(".rv-count-total").text_content() == f"{N} steps"

    # 1,000 events land in the run and in the header (5 of the 250 finished shards failed).
    counts = rv_page.evaluate(APPLY, rv_page.evaluate(EVENTS))
    assert counts == {"succeeded": 1 + 245, "failed": 5, "pending": N - 251}, counts
    assert rv_page.locator('.rv-chip[data-state="failed"]').text_content().endswith("5 failed")
    # ...and on the painted canvas (next frame): failed and succeeded blocks are there in their colours.
    rv_page.wait_for_function("() => !document.querySelector('.rv-overview').hidden")
    rv_page.evaluate("() => new Promise((r) => requestAnimationFrame(() => requestAnimationFrame(r)))")
    painted = rv_page.evaluate(PAINTED)
    assert painted["failed"] > 0 and painted["succeeded"] > 0 and painted["pending"] > 0, painted

    # The failed count is a button: it selects the first failed step (which had no node), zooms to
    # it and opens its details; again, the next one.
    jump = rv_page.locator('.rv-chip[data-state="failed"]')
    assert jump.evaluate("el => el.tagName") == "BUTTON"
    jump.click()
    assert rv_page.evaluate("() => window.view.selected") == "shard-007"
    node = rv_page.locator('.rv-node[data-step="shard-007"]')
    assert "rv-selected" in node.get_attribute("class") and "rv-state-failed" in node.get_attribute("class")
    assert rv_page.locator(".rv-details").get_by_text("ValueError: bad shard").first.is_visible()
    near = rv_page.evaluate(DOM)
    assert not near["far"] and not near["painted"] and "shard-007" in near["onScreen"], near
    assert 10 <= near["nodes"] <= DOM_BOUND, near["nodes"]
    jump.click()
    assert rv_page.evaluate("() => window.view.selected") == "shard-057"
    assert rv_page.locator('.rv-node[data-step="shard-057"]').is_visible()

    # Panning brings other steps into view and drops the ones left behind; the DOM stays bounded.
    before = rv_page.evaluate(DOM)
    box = rv_page.locator(".rv-canvas").bounding_box()
    for _ in range(3):
        rv_page.mouse.move(box["x"] + box["width"] - 200, box["y"] + box["height"] - 120)
        rv_page.mouse.down()
        rv_page.mouse.move(box["x"] + 20, box["y"] + 20, steps=5)
        rv_page.mouse.up()
    after = rv_page.evaluate(DOM)
    assert set(after["onScreen"]) - set(before["names"]), "panning must bring steps that had no node into view"
    assert set(before["onScreen"]) - set(after["names"]) - {"shard-057"}, "steps far behind must lose their nodes"
    assert 10 <= after["nodes"] <= DOM_BOUND and after["edges"] <= DOM_BOUND, after
    assert "shard-057" in after["names"], "the selected step keeps its node"

    # Keyboard: from the selected step, arrows walk the graph, each step focused and in view even
    # when it had no node a moment before.
    rv_page.evaluate("() => window.view.select('shard-100')")
    start = set(rv_page.evaluate(DOM)["names"])
    rv_page.locator('.rv-node[data-step="shard-100"]').focus()
    seen = []
    for _ in range(30):
        rv_page.keyboard.press("ArrowDown")
        f = rv_page.evaluate(FOCUS)
        assert f["step"] and f["inside"], f
        seen.append(f["step"])
    assert len(set(seen)) == 30, seen
    assert set(seen) - start, "arrow keys must reach steps that had no node yet"
    rv_page.keyboard.press("Enter")
    assert rv_page.evaluate("() => window.view.selected") == seen[-1]
    assert rv_page.evaluate(DOM)["nodes"] <= DOM_BOUND

    # Far out again (Fit): a click on a painted block selects that step.
    rv_page.get_by_role("button", name="Fit graph to view").click()
    rv_page.evaluate("() => window.view.select(null)")
    fitted = rv_page.evaluate(DOM)
    assert fitted["far"] and fitted["painted"] and fitted["nodes"] <= 2, fitted
    target = rv_page.evaluate("""() => { const c = document.querySelector('.rv-canvas').getBoundingClientRect();
      return [c.left + c.width / 2, c.top + c.height / 2]; }""")
    picked = None
    for dy in range(0, 60, 3):  # the middle of the canvas may fall between two blocks
        rv_page.mouse.click(target[0], target[1] + dy)
        picked = rv_page.evaluate("() => window.view.selected")
        if picked:
            break
    assert picked and picked.startswith("shard-"), picked
    assert rv_page.locator(f'.rv-node.rv-selected[data-step="{picked}"]').count() == 1


def test_10k_overview_follows_the_dark_theme(rv_page: Any, rv_artifacts: Any) -> None:
    # The painted canvas takes its colours from the stylesheet, so Lab's dark theme applies to it too.
    lum = """() => { const c = document.querySelector('.rv-overview'), d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
      const probe = getComputedStyle(document.querySelector('.rv-probe-node.rv-state-pending')).backgroundColor;
      let n = 0;
      for (let i = 0; i < d.length; i += 4) if (d[i + 3] > 100) n += 1;
      const m = probe.match(/[\\d.]+/g).map(Number), rgb = probe.startsWith('color(') ? m.slice(0, 3).map((v) => v * 255) : m.slice(0, 3);
      return { opaque: n / (d.length / 4), lum: (0.2126 * rgb[0] + 0.7152 * rgb[1] + 0.0722 * rgb[2]) / 255 }; }"""
    snap = rv_page.evaluate(FANOUT, N)
    rv_page.evaluate(SHOW, snap)
    light = rv_page.evaluate(lum)
    rv_page.evaluate("() => document.body.setAttribute('data-jp-theme-light', 'false')")
    rv_page.evaluate(SHOW, snap)
    dark = rv_page.evaluate(lum)
    rv_page.screenshot(path=str(rv_artifacts / "run_view_10k_dark.png"))
    assert light["opaque"] > 0.3 and dark["opaque"] > 0.3, (light, dark)  # the blocks are painted
    assert light["lum"] > 0.6 and dark["lum"] < 0.45, (light, dark)
