"""Browser tests of nbpipe/widgets/run_view.js in real Chromium (no mocks of the renderer or the DOM).

Covers the graph and its states, the event vocabulary of nbpipe/events.py, the details pane and
every preview type, escaping of untrusted text, the anywidget entry loaded from a blob: URL (as
anywidget does) with a fake model standing in for the kernel comm, and a 500-step timing budget.
Screenshots land in test-artifacts/ for a human to look at.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


MOUNT = """([snapshot, withActions]) => {
  window.calls = { select: [], action: [], logs: [], images: [] };
  document.querySelector('#app').replaceChildren();
  const host = document.createElement('div');
  document.querySelector('#app').append(host);
  window.view = window.RV.createRunView(host, {
    onSelect: (name) => window.calls.select.push(name),
    onAction: withActions ? (a, p) => window.calls.action.push([a, p]) : undefined,
    loadLogs: async (step, attempt) => { window.calls.logs.push([step, attempt]); return `full log of ${step} attempt ${attempt}\\n`; },
    loadImage: async (preview) => {
      window.calls.images.push(preview.digest);
      const c = document.createElement('canvas'); c.width = 64; c.height = 32;
      const g = c.getContext('2d'); g.fillStyle = '#3b82f6'; g.fillRect(0, 0, 64, 32);
      g.fillStyle = '#fff'; g.fillRect(8, 8, 16, 16);
      return c.toDataURL('image/png');
    },
  });
  if (snapshot) window.view.setSnapshot(snapshot);
}"""


def mount(page: Any, snapshot: Any, *, actions: bool = True) -> None:
    page.evaluate(MOUNT, [snapshot, actions])


def node(page: Any, name: str) -> Any:
    return page.locator(f'.rv-node[data-step="{name}"]')


def open_tab(page: Any, name: str, tab: str) -> None:
    """Fit the graph (an earlier selection may have panned it), click step ``name``, open ``tab``."""
    page.get_by_role("button", name="Fit graph to view").click()
    node(page, name).click()
    page.locator(f'.rv-tab[data-tab="{tab}"]').click()


def test_graph_renders_every_step_with_its_state(rv_page: Any, rv_fixture: Any, rv_artifacts: Path) -> None:
    snap = rv_fixture("ml_run.json")
    mount(rv_page, snap)
    for step in snap["steps"]:
        n = node(rv_page, step["name"])
        assert n.get_attribute("class").split()[:2] == ["rv-node", f"rv-state-{step['state']}"], step["name"]
        assert step["state"] in n.get_attribute("aria-label")
        assert n.get_attribute("tabindex") == "0"
        assert n.locator(".rv-node-title").text_content() == (step["display_name"] or step["name"])
    edges = sum(len(s["upstream"]) for s in snap["steps"])
    assert rv_page.locator(".rv-edge").count() == edges
    assert node(rv_page, "tune").locator(".rv-node-meta").text_content().startswith("retrying 2/3 · ")
    assert "cached" in node(rv_page, "scale").text_content()
    assert node(rv_page, "train_svm").locator(".rv-node-meta").text_content() == "13 s"
    assert node(rv_page, "train_forest").locator(".rv-icon").text_content() == "✗"
    # Layered left to right: every edge goes from a column to a later one.
    xs = rv_page.evaluate("() => Object.fromEntries([...document.querySelectorAll('.rv-node')].map(n => [n.dataset.step, n.getBoundingClientRect().x]))")
    for s in snap["steps"]:
        for u in s["upstream"]:
            assert xs[u] < xs[s["name"]], (u, s["name"])
    header = rv_page.locator(".rv-header")
    assert header.locator(".rv-run-name").text_content() == snap["name"]
    assert header.locator(".rv-pill-text").text_content() == "running"
    assert header.locator('.rv-chip[data-state="succeeded"]').text_content() == "✓4 succeeded"
    assert "test_size= 0.2" in header.locator(".rv-params").text_content()
    rv_page.screenshot(path=str(rv_artifacts / "run_view_graph_light.png"))


def test_a_float_parameter_shows_as_a_float(rv_page: Any, rv_fixture: Any) -> None:
    """JSON makes 1.0 the JS number 1: the chip must still say 1.0 for a float (an int stays 1)."""
    from nbpipe.widgets.snapshot import mark_floats

    snap = rv_fixture("ml_run.json")
    snap["params"] = {"c": 1.0, "n": 1, "big": -3.0, "C": 10.0}
    mount(rv_page, mark_floats(snap))
    chips = rv_page.locator(".rv-header .rv-param")
    assert chips.all_text_contents() == ["c= 1.0", "n= 1", "big= -3.0", "C= 10.0"]
    assert chips.first.get_attribute("title") == "c = 1.0"
    # the step's Inputs tab says the same as the header (it said C = 10)
    node(rv_page, "train_svm").click()
    rv_page.locator('.rv-tab[data-tab="inputs"]').click()
    assert rv_page.locator(".rv-inputs tr").nth(2).locator("td").text_content() == "paramC = 10.0"


def test_events_move_a_step_from_pending_to_running_to_succeeded(rv_page: Any, rv_fixture: Any) -> None:
    events = rv_fixture("linear_events.json")
    mount(rv_page, None)
    assert rv_page.locator(".rv-empty-graph").is_visible()
    apply = lambda evs: rv_page.evaluate("(evs) => evs.map((e) => window.view.applyEvent(e))", evs)  # noqa: E731
    assert apply(events[:2]) == [True, True]
    assert rv_page.locator(".rv-node").count() == 3
    assert node(rv_page, "fetch").get_attribute("class") == "rv-node rv-state-pending"
    assert rv_page.locator(".rv-header .rv-pill-text").text_content() == "running"
    apply(events[2:3])
    assert "rv-state-running" in node(rv_page, "fetch").get_attribute("class")
    assert rv_page.locator(".rv-edge-active").count() == 0  # fetch has no upstream edge
    rv_page.evaluate("() => window.view.select('fetch')")
    apply(events[3:5])
    log = rv_page.locator(".rv-log")
    assert log.text_content() == "downloading 3 files\nwarning: slow mirror\n"
    assert log.locator(".rv-log-stderr").text_content() == "warning: slow mirror\n"
    apply(events[5:7])
    assert "rv-state-succeeded" in node(rv_page, "fetch").get_attribute("class")
    assert node(rv_page, "fetch").locator(".rv-node-meta").text_content() == "2.5 s"
    assert rv_page.locator(".rv-edge-done").count() == 1
    # Already-included ids and unknown types are ignored.
    assert apply([events[2], {"type": "Bogus", "id": 999, "step": "fetch"}]) == [False, False]
    assert "rv-state-succeeded" in node(rv_page, "fetch").get_attribute("class")
    apply(events[7:9])
    assert "rv-state-retrying" in node(rv_page, "clean").get_attribute("class")
    assert node(rv_page, "clean").locator(".rv-node-meta").text_content().startswith("retrying")
    apply(events[9:])
    assert "attempt 2/2" in node(rv_page, "clean").text_content()
    assert "rv-state-failed" in node(rv_page, "fit").get_attribute("class")
    assert rv_page.locator(".rv-header .rv-pill-text").text_content() == "failed"
    assert rv_page.locator(".rv-run-reason").text_content() == "Step 'fit' failed: ZeroDivisionError: division by zero"  # where and what
    assert rv_page.evaluate("() => window.view.snapshot.last_event_id") == len(events)


def test_failed_step_opens_on_its_traceback(rv_page: Any, rv_fixture: Any, rv_artifacts: Path) -> None:
    snap = rv_fixture("ml_run.json")
    mount(rv_page, snap)
    node(rv_page, "train_forest").click()
    assert rv_page.locator('.rv-tab[aria-selected="true"]').text_content() == "Error"
    assert rv_page.locator(".rv-error-head").text_content() == "Step 'train_forest' failed (attempt 3/3)"
    assert rv_page.locator(".rv-error-reason").text_content() == "ValueError: Input X contains NaN."
    failed = next(s for s in snap["steps"] if s["name"] == "train_forest")
    assert rv_page.locator(".rv-traceback").text_content() == failed["traceback"]
    rv_page.screenshot(path=str(rv_artifacts / "run_view_error.png"))
    # Logs tab of a finished step without live logs asks loadLogs for the last attempt.
    rv_page.locator('.rv-tab[data-tab="logs"]').click()
    rv_page.wait_for_function("() => document.querySelector('.rv-log').textContent.includes('full log')")
    assert rv_page.evaluate("() => window.calls.logs") == [["train_forest", 3]]
    rv_page.get_by_role("button", name="attempt 1").click()
    rv_page.wait_for_function("() => document.querySelector('.rv-log').textContent.includes('attempt 1')")


def test_every_preview_type_renders(rv_page: Any, rv_fixture: Any, rv_artifacts: Path) -> None:
    mount(rv_page, rv_fixture("ml_run.json"))
    node(rv_page, "evaluate").click()
    rv_page.locator('.rv-tab[data-tab="outputs"]').click()
    assert rv_page.locator('.rv-tab[data-tab="outputs"]').text_content() == "Outputs 4"
    metrics = rv_page.locator('[data-output="metrics"] .rv-metrics tr')
    assert metrics.count() == 3 and metrics.first.text_content() == "accuracy0.9722"
    cells = rv_page.locator('[data-output="confusion"] td.rv-cell')
    assert cells.count() == 25
    assert cells.nth(0).text_content() == "33" and cells.nth(24).text_content() == "36"
    assert rv_page.locator('[data-output="confusion"] td.rv-diag').count() == 5
    assert "rv-hot" in cells.nth(24).get_attribute("class") and "rv-hot" not in cells.nth(1).get_attribute("class")
    curve = rv_page.locator('[data-output="roc"] path.rv-roc-curve').get_attribute("d")
    assert curve.startswith("M") and curve.count("L") == 7
    assert rv_page.locator('[data-output="roc"] line.rv-roc-diagonal').count() == 1
    assert rv_page.locator('[data-output="roc"] figcaption').text_content().startswith("AUC 0.9")
    img = rv_page.locator('[data-output="samples"] img')
    img.wait_for()
    assert img.get_attribute("src").startswith("data:image/png;base64,")
    assert rv_page.evaluate("() => window.calls.images") == ["4" * 64]
    rv_page.wait_for_function("() => document.querySelector('[data-output=samples] img').naturalWidth === 64")
    rv_page.screenshot(path=str(rv_artifacts / "run_view_outputs.png"))
    rv_page.locator('[data-output="roc"]').scroll_into_view_if_needed()
    rv_page.screenshot(path=str(rv_artifacts / "run_view_outputs_roc.png"))

    open_tab(rv_page, "load_data", "outputs")
    assert rv_page.locator('[data-output="raw"] tbody tr').count() == 5
    assert rv_page.locator('[data-output="raw"] .rv-table-wrap .rv-caption').text_content() == "1797 rows × 65 columns · first 5 shown"

    open_tab(rv_page, "split", "outputs")
    assert rv_page.locator('[data-output="x_train"]').text_content().endswith("array · 1437 × 64 · float64")
    assert "[0,1,2,3,4,9,5,7]" in rv_page.locator('[data-output="y_train"] pre').text_content()

    open_tab(rv_page, "report", "outputs")
    md = rv_page.locator('[data-output="summary"] .rv-markdown')
    assert md.locator("h4").text_content() == "Summary"
    assert md.locator("strong").text_content() == "SVM" and md.locator("em").text_content() == "97.2%"
    assert md.locator("li").count() == 2 and md.locator("code").text_content() == "evaluate"
    assert md.locator("a").count() == 1 and md.locator("a").get_attribute("href") == "https://example.org/docs"
    assert md.locator("script").count() == 0 and "<script>alert(1)</script>" in md.text_content()
    frame = rv_page.locator('[data-output="page"] iframe')
    assert frame.get_attribute("sandbox") == ""
    assert "<script>" in frame.evaluate("f => f.srcdoc")
    inner = rv_page.frame_locator('[data-output="page"] iframe')
    assert inner.locator("b").text_content() == "bold"
    assert inner.locator("body").get_attribute("data-ran") is None  # the sandbox blocked the script
    assert rv_page.evaluate("() => window.__pwned") is None
    assert rv_page.rv_blocked_scripts, "Chromium should report the blocked preview script"
    multi = rv_page.locator('[data-output="notes"] .rv-multi > *')
    assert multi.count() == 2 and json.loads(multi.nth(1).text_content())["rows"] == 360
    rv_page.screenshot(path=str(rv_artifacts / "run_view_report.png"))

    open_tab(rv_page, "scale", "outputs")
    assert rv_page.locator('[data-output="scaler"] .rv-output-body').text_content() == "File · 2.1 kB"


def test_click_and_keyboard_select_and_inputs_link_upstream(rv_page: Any, rv_fixture: Any, rv_artifacts: Path) -> None:
    mount(rv_page, rv_fixture("ml_run.json"))
    assert rv_page.locator(".rv-details").is_hidden()
    node(rv_page, "train_svm").click()
    assert rv_page.evaluate("() => window.calls.select") == ["train_svm"]
    assert "rv-selected" in node(rv_page, "train_svm").get_attribute("class")
    assert rv_page.locator(".rv-details h3").text_content() == "Train SVM"
    rv_page.locator('.rv-tab[data-tab="inputs"]').click()
    rows = rv_page.locator(".rv-inputs tr")
    assert [rows.nth(i).locator("th").text_content() for i in range(3)] == ["x", "y", "C"]
    assert rows.nth(2).locator("td").text_content() == "paramC = 10"
    rv_page.screenshot(path=str(rv_artifacts / "run_view_inputs.png"))
    rows.nth(0).get_by_role("button").click()  # scale.x → selects the upstream step
    assert rv_page.evaluate("() => window.calls.select") == ["train_svm", "scale"]
    assert "rv-selected" not in node(rv_page, "train_svm").get_attribute("class")
    node(rv_page, "publish").focus()
    rv_page.keyboard.press("Enter")
    assert rv_page.evaluate("() => window.view.selected") == "publish"
    rv_page.keyboard.press("ArrowLeft")
    assert rv_page.evaluate("() => document.activeElement.dataset.step") in {"report", "evaluate"}
    rv_page.locator(".rv-details .rv-button").click()  # Rerun from here
    rv_page.keyboard.press("Escape")
    assert rv_page.evaluate("() => window.calls.action") == [["rerun_from", {"step": "publish"}]]
    assert rv_page.locator(".rv-details").is_hidden()
    rv_page.get_by_role("button", name="Cancel", exact=True).click()
    assert rv_page.evaluate("() => window.calls.action")[-1] == ["cancel", {}]


def test_no_action_buttons_without_on_action(rv_page: Any, rv_fixture: Any) -> None:
    mount(rv_page, rv_fixture("ml_run.json"), actions=False)
    node(rv_page, "evaluate").click()
    assert rv_page.locator(".rv-button").count() == 0


def test_untrusted_names_and_logs_stay_text(rv_page: Any, rv_fixture: Any) -> None:
    evil = '<img src=x onerror="window.__xss=1">'
    snap = {"id": "r-x", "name": evil, "state": "running", "params": {evil: evil}, "last_event_id": 0,
            "steps": [{"name": evil, "display_name": "", "upstream": [], "state": "running", "attempt": 1, "max_attempts": 1,
                       "inputs": {evil: {"value": evil}}, "outputs": {evil: {"preview": {"type": "text", "text": evil}}}}]}
    mount(rv_page, snap)
    rv_page.evaluate("(e) => { window.view.select(e); window.view.setLogs(e, e + '\\n'); }", evil)
    assert rv_page.locator(".nbpipe-run-view img").count() == 0
    assert rv_page.locator(".rv-node-title").text_content() == evil
    assert rv_page.locator(".rv-run-name").text_content() == evil
    assert rv_page.locator(".rv-log").text_content() == evil + "\n"
    rv_page.locator('.rv-tab[data-tab="outputs"]').click()
    assert rv_page.locator(".rv-output pre").text_content() == evil
    assert rv_page.locator(".nbpipe-run-view img").count() == 0
    assert rv_page.evaluate("() => window.__xss") is None


def test_live_log_tail_follows_only_when_at_bottom(rv_page: Any, rv_fixture: Any) -> None:
    mount(rv_page, rv_fixture("ml_run.json"))
    rv_page.evaluate("() => window.view.select('report')")
    rv_page.evaluate("""() => { let id = 100;
      for (let i = 0; i < 200; i += 1) window.view.applyEvent({type: 'StepLog', id: id++, run_id: 'r', ts: 0, step: 'report', attempt: 1, stream: 'stdout', text: `line ${i}\\n`}); }""")
    at_bottom = "() => { const p = document.querySelector('.rv-log'); return p.scrollHeight > p.clientHeight && p.scrollTop + p.clientHeight >= p.scrollHeight - 2; }"
    assert rv_page.evaluate(at_bottom)
    rv_page.evaluate("() => { document.querySelector('.rv-log').scrollTop = 0; }")
    rv_page.evaluate("() => window.view.applyEvent({type: 'StepLog', id: 500, run_id: 'r', ts: 0, step: 'report', attempt: 1, stream: 'stderr', text: 'boom\\n'})")
    assert rv_page.evaluate("() => document.querySelector('.rv-log').scrollTop") == 0
    assert rv_page.locator(".rv-log").text_content().endswith("line 199\nboom\n")
    rv_page.evaluate("() => window.view.setLogs('report', 'replaced\\n'.repeat(300))")
    assert rv_page.evaluate("() => document.querySelector('.rv-log').scrollTop") == 0


def test_anywidget_entry_from_blob_url_with_fake_model(rv_page: Any, rv_fixture: Any, rv_bundle: str) -> None:
    snap = rv_fixture("ml_run.json")
    result = rv_page.evaluate("""async ([source, snap]) => {
      const url = URL.createObjectURL(new Blob([source], { type: 'text/javascript' }));
      const mod = await import(url);  // exactly how anywidget loads _esm
      URL.revokeObjectURL(url);
      const listeners = new Map(), sent = [], saved = [];
      const state = { snapshot: snap, logs: { split: 'split says hi\\n' }, images: {}, selected: '' };
      const model = {
        get: (k) => state[k],
        set: (k, v) => { state[k] = v; },
        on: (n, f) => { if (!listeners.has(n)) listeners.set(n, new Set()); listeners.get(n).add(f); },
        off: (n, f) => listeners.get(n)?.delete(f),
        save_changes: () => saved.push({ ...state }),
        send: (m) => sent.push(m),
      };
      const emit = (n, arg) => (listeners.get(n) || []).forEach((f) => f(arg));
      const el = document.createElement('div');
      document.querySelector('#app').replaceChildren(el);
      const cleanup = await mod.default.render({ model, el });
      const out = { nodes: el.querySelectorAll('.rv-node').length };
      el.querySelector('.rv-node[data-step="split"]').click();
      out.selected = state.selected; out.saves = saved.length;
      out.log = el.querySelector('.rv-log').textContent;
      state.logs = { split: 'split says hi\\nand more\\n' }; emit('change:logs');
      out.log2 = el.querySelector('.rv-log').textContent;
      [...el.querySelectorAll('.rv-run-actions button')].find((b) => b.textContent === 'Cancel').click();
      out.sent = sent;
      state.selected = 'evaluate'; emit('change:selected');
      out.details = el.querySelector('.rv-details h3').textContent;
      el.querySelector('.rv-tab[data-tab="outputs"]').click();
      out.imgBefore = el.querySelector('[data-output="samples"] img') !== null;
      state.images = { ['4'.repeat(64)]: 'data:image/gif;base64,R0lGODlhAQABAIAAAAAAAP///ywAAAAAAQABAAACAUwAOw==' }; emit('change:images');
      out.imgAfter = el.querySelector('[data-output="samples"] img')?.getAttribute('src');
      emit('msg:custom', { type: 'event', event: { type: 'StepFinished', id: 58, run_id: snap.id, ts: 0, step: 'report', state: 'succeeded', attempt: 1, duration: 3 } });
      await Promise.resolve();
      out.report = el.querySelector('.rv-node[data-step="report"]').className;
      state.snapshot = { ...snap, state: 'succeeded', last_event_id: 99 }; emit('change:snapshot');
      out.pill = el.querySelector('.rv-header .rv-pill-text').textContent;
      out.rerunVisible = [...el.querySelectorAll('.rv-run-actions button')].find((b) => b.textContent === 'Rerun').hidden === false;
      cleanup();
      out.after = el.children.length;
      out.listeners = [...listeners.values()].reduce((n, s) => n + s.size, 0);
      return out;
    }""", [rv_bundle, snap])
    assert result["nodes"] == len(snap["steps"])
    assert result["selected"] == "split" and result["saves"] == 1
    assert result["log"] == "split says hi\n" and result["log2"] == "split says hi\nand more\n"
    # the run it was on: the kernel drops a click on a run the graph no longer shows (a double-click's 2nd)
    assert result["sent"] == [{"type": "action", "action": "cancel", "payload": {"shown": snap["id"]}}]
    assert result["details"] == "Evaluate"
    assert result["imgBefore"] is False and result["imgAfter"].startswith("data:image/gif")
    assert "rv-state-succeeded" in result["report"]
    assert result["pill"] == "succeeded" and result["rerunVisible"]
    assert result["after"] == 0 and result["listeners"] == 0
