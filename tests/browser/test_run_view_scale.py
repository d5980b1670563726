"""Browser tests of the run view at scale and of its layout, navigation and dark theme.

The timing test builds a 500-step fan-out run, times ``setSnapshot`` (script + style + layout, forced
with a synchronous reflow) and 1000 events, and writes the numbers to test-artifacts/run_view_perf.json.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

SET_SNAPSHOT_BUDGET_MS = 1500
EVENTS_BUDGET_MS = 1000

FANOUT = """(n) => {
  const now = Date.now() / 1000;
  const step = (name, upstream, state) => ({ name, component: name.split('-')[0], display_name: '', upstream, group: '',
    state, attempt: state === 'pending' ? 0 : 1, max_attempts: 1, started_at: state === 'pending' ? null : now - 5,
    finished_at: null, duration: null, reason: '', traceback: '', cached: false, inputs: {}, outputs: {} });
  const shards = Array.from({ length: n - 2 }, (_, i) => step(`shard-${String(i).padStart(3, '0')}`, ['load'], 'pending'));
  return { id: 'r-big', name: 'fan-out-500', pipeline: 'fanout', experiment: 'Default', state: 'running', params: { n },
    created_at: now - 6, started_at: now - 5, finished_at: null, duration: null, reason: '', last_event_id: 10,
    steps: [{ ...step('load', [], 'succeeded'), duration: 1.2 }, ...shards, step('merge', shards.map((s) => s.name), 'pending')] };
}"""

MEASURE = """async (snap) => {
  document.querySelector('#app').replaceChildren();
  const host = document.createElement('div');
  document.querySelector('#app').append(host);
  const view = window.RV.createRunView(host, {});
  window.view = view;
  const t0 = performance.now();
  view.setSnapshot(snap);
  void host.getBoundingClientRect().height;  // include style + layout, not just script
  const setSnapshotMs = performance.now() - t0;
  const firstNode = host.querySelector('.rv-node[data-step="shard-000"]');
  firstNode.dataset.marker = 'kept';
  const events = [];
  let id = 11;
  for (let i = 0; i < 250; i += 1) {
    const step = `shard-${String(i).padStart(3, '0')}`;
    events.push({ type: 'StepStarted', id: id++, run_id: 'r-big', ts: Date.now() / 1000, step, attempt: 1, max_attempts: 1 });
    events.push({ type: 'StepLog', id: id++, run_id: 'r-big', ts: 0, step, attempt: 1, stream: 'stdout', text: `shard ${i} ok\\n` });
    events.push({ type: 'ArtifactSaved', id: id++, run_id: 'r-big', ts: 0, step, name: 'part', digest: 'f'.repeat(64), kind: 'value',
      format: 'json', size: 10, preview: { type: 'json', value: i } });
    events.push({ type: 'StepFinished', id: id++, run_id: 'r-big', ts: Date.now() / 1000, step, state: i % 50 === 7 ? 'failed' : 'succeeded',
      attempt: 1, duration: 0.25 + i / 1000, reason: '', traceback: '' });
  }
  const t1 = performance.now();
  for (const e of events) view.applyEvent(e);
  view.flush();
  void host.getBoundingClientRect().height;
  const eventsMs = performance.now() - t1;
  // Per-event repaint: one event at a time, each flushed (the SSE case).
  const t2 = performance.now();
  for (let i = 250; i < 350; i += 1) {
    view.applyEvent({ type: 'StepStarted', id: id++, run_id: 'r-big', ts: Date.now() / 1000, step: `shard-${i}`, attempt: 1, max_attempts: 1 });
    view.flush();
  }
  void host.getBoundingClientRect().height;
  const perEventMs = (performance.now() - t2) / 100;
  const started = events.length + 11;
  const succeeded = host.querySelectorAll('.rv-node.rv-state-succeeded').length;
  const failed = host.querySelectorAll('.rv-node.rv-state-failed').length;
  const running = host.querySelectorAll('.rv-node.rv-state-running').length;
  const t3 = performance.now();
  view.setSnapshot({ ...snap, last_event_id: 10 });
  void host.getBoundingClientRect().height;
  const sameShapeMs = performance.now() - t3;
  const resetRunning = host.querySelectorAll('.rv-node.rv-state-running').length;
  // Replay the stream over the reset snapshot, so the graph is left with a realistic mix of states.
  for (const e of events) view.applyEvent(e);
  for (let i = 250; i < 350; i += 1) view.applyEvent({ type: 'StepStarted', id: started + i - 250, run_id: 'r-big', ts: Date.now() / 1000, step: `shard-${i}`, attempt: 1, max_attempts: 1 });
  view.flush();
  return {
    setSnapshotMs, eventsMs, perEventMs, sameShapeMs, events: events.length,
    nodes: host.querySelectorAll('.rv-node').length, edges: host.querySelectorAll('.rv-edge').length,
    succeeded, failed, running, resetRunning,
    kept: host.querySelector('.rv-node[data-step="shard-000"]').dataset.marker === 'kept',
    far: host.querySelector('.rv-canvas').classList.contains('rv-far'),
  };
}"""


OVERVIEW = """() => {
  // What "fit" shows: every step's box on screen, how big, and the colour actually painted there.
  const canvas = document.querySelector('.rv-canvas').getBoundingClientRect();
  const nodes = [...document.querySelectorAll('.rv-node')];
  const inside = nodes.filter((n) => { const r = n.getBoundingClientRect();
    return r.left >= canvas.left - 1 && r.right <= canvas.right + 1 && r.top >= canvas.top - 1 && r.bottom <= canvas.bottom + 1; });
  const size = nodes[1].getBoundingClientRect();
  const colour = (state) => getComputedStyle(document.querySelector(`.rv-node.rv-state-${state}`)).backgroundColor;
  return { inside: inside.length, total: nodes.length, w: size.width, h: size.height,
    colours: ['succeeded', 'running', 'failed', 'pending'].map(colour), trunks: document.querySelectorAll('.rv-edge.rv-trunk').length,
    block: document.querySelectorAll('.rv-block').length };
}"""


def test_500_step_graph_renders_and_updates_within_budget(rv_page: Any, rv_artifacts: Path) -> None:
    snap = rv_page.evaluate(FANOUT, 500)
    m = rv_page.evaluate(MEASURE, snap)
    assert m["nodes"] == 500
    assert m["edges"] == 2, "the 498-way fan-out and fan-in are drawn as one trunk each"
    assert m["succeeded"] == 1 + 250 - 5 and m["failed"] == 5 and m["running"] == 100
    assert m["resetRunning"] == 0, "a same-shape snapshot must repaint every changed node"
    assert m["kept"], "updates must patch nodes in place, not rebuild them"
    assert m["far"], "a fitted 500-step graph should switch to the compact far-zoom look"
    report = {k: round(v, 1) if isinstance(v, float) else v for k, v in m.items()}
    (rv_artifacts / "run_view_perf.json").write_text(json.dumps(report, indent=2))
    print(f"\nrun view timings: {report}")
    assert m["setSnapshotMs"] < SET_SNAPSHOT_BUDGET_MS, report
    assert m["eventsMs"] < EVENTS_BUDGET_MS, report
    rv_page.evaluate("() => window.view.fit()")
    o = rv_page.evaluate(OVERVIEW)
    rv_page.screenshot(path=str(rv_artifacts / "run_view_500_fit.png"))
    # The wide layer wraps into a grid: fit shows all 500 steps at once, as blocks big enough to
    # tell apart, each painted in its state's colour (four different colours for four states).
    assert o["inside"] == 500, o
    assert o["w"] >= 24 and o["h"] >= 6, o
    assert len(set(o["colours"])) == 4, o
    assert o["trunks"] == 2 and o["block"] == 1, o
    rv_page.evaluate("() => window.view.select('shard-120')")  # selecting from far zoom zooms in to the step
    assert rv_page.locator('.rv-node[data-step="shard-120"]').is_visible()
    rv_page.screenshot(path=str(rv_artifacts / "run_view_500_zoomed.png"))
    # The events were replayed over a reset snapshot: the attempt's log restarts, it is not doubled.
    assert rv_page.locator(".rv-log").text_content() == "shard 120 ok\n"
    assert not rv_page.locator(".rv-canvas").evaluate("c => c.classList.contains('rv-far')")


def test_layout_layers_by_longest_path_and_removes_crossings(rv_page: Any) -> None:
    result = rv_page.evaluate("""() => {
      const s = (name, upstream = []) => ({ name, upstream });
      const crossed = window.RVLayout.layoutGraph([s('a'), s('b'), s('c'), s('x', ['c']), s('y', ['b']), s('z', ['a'])]);
      const skip = window.RVLayout.layoutGraph([s('p'), s('q', ['p']), s('r', ['q', 'p'])]);
      const order = (L, names) => names.map((n) => L.nodes.get(n).y);
      return { crossings: crossed.crossings, xs: order(crossed, ['x', 'y', 'z']), as: order(crossed, ['a', 'b', 'c']),
        layers: ['p', 'q', 'r'].map((n) => skip.nodes.get(n).layer),
        longEdge: skip.edges.find((e) => e.from === 'p' && e.to === 'r').points.length };
    }""")
    assert result["crossings"] == 0
    # x hangs off c, z off a: the ordering must put them in the same vertical order as their sources.
    rank = lambda ys: sorted(range(3), key=lambda i: ys[i])  # noqa: E731
    assert rank(result["xs"])[::-1] == rank(result["as"]) or rank(result["xs"]) == rank(result["as"])[::-1]
    assert result["layers"] == [0, 1, 2]
    assert result["longEdge"] == 4  # p→r routes through a virtual point in q's layer


def test_pan_zoom_and_fit(rv_page: Any, rv_fixture: Any) -> None:
    rv_page.evaluate("""(snap) => { const host = document.createElement('div');
      document.querySelector('#app').replaceChildren(host); window.view = window.RV.createRunView(host, {}); window.view.setSnapshot(snap); }""",
                     rv_fixture("ml_run.json"))
    canvas = rv_page.locator(".rv-canvas")
    zoom = lambda: float(canvas.get_attribute("data-zoom"))  # noqa: E731
    fitted = zoom()
    box = canvas.bounding_box()
    rv_page.mouse.move(box["x"] + 300, box["y"] + 200)
    rv_page.mouse.wheel(0, -400)
    assert zoom() > fitted
    before = rv_page.locator('.rv-node[data-step="split"]').bounding_box()
    rv_page.mouse.move(box["x"] + 40, box["y"] + 20)
    rv_page.mouse.down()
    rv_page.mouse.move(box["x"] + 140, box["y"] + 70, steps=4)
    rv_page.mouse.up()
    after = rv_page.locator('.rv-node[data-step="split"]').bounding_box()
    assert round(after["x"] - before["x"]) == 100 and round(after["y"] - before["y"]) == 50
    rv_page.get_by_role("button", name="Fit graph to view").click()
    assert zoom() == fitted
    world = rv_page.locator(".rv-world").evaluate("w => { const r = w.getBoundingClientRect(); return [r.left, r.top, r.right, r.bottom]; }")
    assert world[0] >= box["x"] and world[2] <= box["x"] + box["width"]
    assert world[1] >= box["y"] and world[3] <= box["y"] + box["height"]


def test_dark_theme_follows_jupyterlab_variables(rv_page: Any, rv_fixture: Any, rv_artifacts: Path) -> None:
    rv_page.evaluate("() => document.body.setAttribute('data-jp-theme-light', 'false')")
    rv_page.evaluate("""(snap) => { const host = document.createElement('div');
      document.querySelector('#app').replaceChildren(host);
      window.view = window.RV.createRunView(host, { onAction: () => {} }); window.view.setSnapshot(snap); window.view.select('evaluate'); }""",
                     rv_fixture("ml_run.json"))
    rv_page.locator('.rv-tab[data-tab="outputs"]').click()
    colours = rv_page.evaluate("""() => {
      const lum = (c) => { const [r, g, b] = c.match(/[\\d.]+/g).map(Number); return (0.2126 * r + 0.7152 * g + 0.0722 * b) / 255; };
      const n = document.querySelector('.rv-node');
      return { node: lum(getComputedStyle(n).backgroundColor), text: lum(getComputedStyle(n).color),
               root: lum(getComputedStyle(document.querySelector('.nbpipe-run-view')).backgroundColor) };
    }""")
    assert colours["node"] < 0.25 and colours["root"] < 0.25 and colours["text"] > 0.7, colours
    rv_page.screenshot(path=str(rv_artifacts / "run_view_dark.png"))
    rv_page.evaluate("() => window.view.select('train_forest')")
    rv_page.screenshot(path=str(rv_artifacts / "run_view_dark_error.png"))
