// nbpipe run view: the one renderer of a live run graph, shared by the anywidget widget (default
// export) and the JupyterLab panel (which imports createRunView). Plain ES module, no dependencies.
//
// Data: the runner's run snapshot (GET /api/v1/runs/{id}) plus events from nbpipe/events.py,
// folded in by run_view_state.js. Styling: run_view.css, scoped under .nbpipe-run-view.
// Untrusted text (names, logs, previews) only ever reaches the DOM as text nodes.
//
// Sibling modules are imported relatively. anywidget loads ``_esm`` from a blob: URL, where
// relative imports cannot resolve, so the Python widget must send one inlined module: take the
// run_view_*.js files in import order, drop their `import … from "./run_view_….js";` lines and
// the `export` keyword of the siblings (top-level names are unique across files), then append
// this file the same way, keeping its exports. tests/browser/conftest.py (rv_bundle) does exactly
// that and the browser tests load the result from a blob: URL, as anywidget does.
//
// Non-goals: talking to the runner (callers feed snapshots and events), persisting UI state.

import { GraphView } from "./run_view_graph.js";
import { DetailsPane } from "./run_view_details.js";
import { h } from "./run_view_preview.js";
import {
  LogBook, RUN_ACTIVE, STATE_ICONS, STEP_ACTIVE, STEP_ORDER, applyRunEvent, elapsedOf, formatDuration, formatValue,
  graphKey, runFromSnapshot,
} from "./run_view_state.js";

const TICK_MS = 1000;
const JUMP_STATES = new Set(["failed", "running", "retrying"]); // large graphs: a click on the count shows one

function buildHeader(onAction) {
  const icon = h("span", { class: "rv-icon", "aria-hidden": "true" });
  const stateText = h("span", { class: "rv-pill-text" });
  const pill = h("span", { class: "rv-pill" }, icon, stateText);
  const name = h("h2", { class: "rv-run-name" });
  const sub = h("span", { class: "rv-subtitle" });
  const elapsedValue = h("span", { class: "rv-elapsed-value" });
  const elapsed = h("span", { class: "rv-elapsed", title: "Elapsed time" }, h("span", { class: "rv-elapsed-label", text: "elapsed" }), elapsedValue);
  const actions = h("div", { class: "rv-run-actions" });
  const buttons = {};
  if (onAction) {
    buttons.cancel = h("button", { class: "rv-button rv-danger", type: "button", text: "Cancel", onclick: () => onAction("cancel", {}) });
    buttons.rerun = h("button", { class: "rv-button", type: "button", text: "Rerun", title: "Run again with the same parameters",
      onclick: () => onAction("rerun", {}) });
    buttons.rerunFailed = h("button", { class: "rv-button", type: "button", text: "Rerun from failed", hidden: true,
      title: "Re-execute the failed step and everything after it; reuse the steps before it",
      onclick: () => onAction("rerun_failed", {}) });
    actions.append(buttons.cancel, buttons.rerunFailed, buttons.rerun);
  }
  const counts = h("div", { class: "rv-counts", "aria-label": "Steps per state" });
  const bar = h("div", { class: "rv-progress", role: "progressbar", "aria-label": "Steps finished" });
  const params = h("div", { class: "rv-params", "aria-label": "Parameters" });
  const reason = h("div", { class: "rv-run-reason", hidden: true });
  const notice = h("div", { class: "rv-notice", role: "status", hidden: true });
  const previous = h("div", { class: "rv-previous", hidden: true });
  const el = h("header", { class: "rv-header" },
    h("div", { class: "rv-title-row" }, pill, h("div", { class: "rv-title" }, name, sub), elapsed, actions),
    h("div", { class: "rv-summary-row" }, counts, params), bar, reason, notice, previous);
  return { el, icon, stateText, pill, name, sub, elapsed, elapsedValue, buttons, counts, bar, params, reason, notice, previous, sig: {} };
}

/** Write ``text`` to ``node`` only if it differs (keeps updates from touching the DOM). */
function setText(node, text) {
  if (node.textContent !== text) node.textContent = text;
}

export function createRunView(el, options = {}) {
  const root = h("div", { class: "nbpipe-run-view", tabindex: "-1" });
  const header = buildHeader(options.onAction);
  const main = h("div", { class: "rv-main" });
  const empty = h("div", { class: "rv-empty-graph", text: "Waiting for the run graph…" });
  root.append(header.el, main);
  el.append(root);
  const logs = new LogBook();
  let run = runFromSnapshot(null);
  let shape = null;
  let selected = null;
  let active = [];
  let timer = null;
  const dirty = new Set();
  let dirtyRun = false;
  let scheduled = false;
  let destroyed = false;

  const selectStep = (name, notify) => {
    const step = name == null ? null : run.byName.get(String(name)) || null;
    selected = step ? step.name : null;
    graph.setSelected(run, selected);
    details.show(step);
    root.classList.toggle("rv-has-details", Boolean(step));
    graph.refit(); // the details pane changed the canvas width
    if (step) graph.reveal(step.name);
    if (notify && options.onSelect) options.onSelect(selected);
  };
  const graph = new GraphView(main, { onSelect: (name) => selectStep(name, true) });
  graph.canvas.append(empty);
  const details = new DetailsPane(main, {
    logs, loadLogs: options.loadLogs, loadImage: options.loadImage, images: options.images, onAction: options.onAction,
    onLineage: options.onLineage, // (step, output): the Lab run page opens the artifact's lineage
    onDownload: options.onDownload, // (step, output, out): Lab saves the output's bytes as a file
    selectStep: (name) => selectStep(name, true), close: () => { selectStep(null, true); },
    stepOf: (name) => run.byName.get(String(name)) || null, // an upstream step, for the values a step got
    paramOf: (name) => (run.params && Object.hasOwn(run.params, name) ? { value: run.params[name] } : null),
    isFloatParam: (name) => Boolean(run.float_params && run.float_params.has(name)), // 1.0, not 1 (JSON)
  });
  root.addEventListener("keydown", (ev) => {
    if (ev.key === "Escape" && selected) { selectStep(null, true); root.focus(); }
  });

  /** Select the next step in ``state`` after the selected one (in run order, wrapping around). */
  function jumpTo(state) {
    const steps = run.steps;
    const from = selected ? steps.findIndex((s) => s.name === selected) : -1;
    for (let i = 1; i <= steps.length; i += 1) {
      const s = steps[(from + i + steps.length) % steps.length];
      if (s.state === state) {
        selectStep(s.name, true);
        const node = graph.nodeOf(s.name);
        if (node) node.el.focus({ preventScroll: true });
        return;
      }
    }
  }

  function renderHeader(now) {
    const r = run;
    header.pill.className = `rv-pill rv-state-${r.state}`;
    setText(header.icon, STATE_ICONS[r.state] ?? "");
    setText(header.stateText, r.state);
    setText(header.name, r.name || r.id || "run");
    setText(header.sub, [r.pipeline, r.experiment, r.id].filter(Boolean).join(" · "));
    const dur = formatDuration(elapsedOf(r, now));
    header.elapsed.hidden = !dur;
    setText(header.elapsedValue, dur);
    if (header.buttons.cancel) {
      header.buttons.cancel.hidden = !RUN_ACTIVE.has(r.state);
      header.buttons.rerun.hidden = RUN_ACTIVE.has(r.state);
      header.buttons.rerunFailed.hidden = r.state !== "failed" || !r.steps.some((s) => s.state === "failed");
    }
    const n = {};
    for (const s of r.steps) n[s.state] = (n[s.state] || 0) + 1;
    const countKey = `${JSON.stringify(n)}|${graph.large}`;
    if (header.sig.counts !== countKey) {
      header.sig.counts = countKey;
      const order = STEP_ORDER.filter((st) => n[st]);
      header.counts.replaceChildren(h("span", { class: "rv-count-total", text: `${r.steps.length} step${r.steps.length === 1 ? "" : "s"}` }),
        ...order.map((st) => {
          const icon = h("span", { class: "rv-icon", "aria-hidden": "true", text: STATE_ICONS[st] });
          // In a graph too big to scan by eye, the counts of steps that need a look take you to them.
          if (graph.large && JUMP_STATES.has(st)) {
            return h("button", { class: `rv-chip rv-chip-button rv-state-${st}`, type: "button", "data-state": st,
              title: `Show the next ${st} step (${n[st]} ${st})`, onclick: () => jumpTo(st) }, icon, `${n[st]} ${st}`);
          }
          return h("span", { class: `rv-chip rv-state-${st}`, title: `${n[st]} ${st}`, "data-state": st }, icon, `${n[st]} ${st}`);
        }));
      const total = r.steps.length || 1;
      header.bar.replaceChildren(...["succeeded", "cached", "failed", "cancelled", "skipped", "running", "retrying"].filter((st) => n[st])
        .map((st) => { const seg = h("span", { class: `rv-seg rv-state-${st}` }); seg.style.width = `${(100 * n[st]) / total}%`; return seg; }));
      const finished = r.steps.length - (n.pending || 0) - (n.running || 0) - (n.retrying || 0);
      header.bar.setAttribute("aria-valuenow", String(finished));
      header.bar.setAttribute("aria-valuemax", String(r.steps.length));
    }
    const paramKey = JSON.stringify([r.params, [...r.float_params]]);
    if (header.sig.params !== paramKey) {
      header.sig.params = paramKey;
      header.params.replaceChildren(...Object.entries(r.params).map(([k, v]) =>
        h("span", { class: "rv-chip rv-param", title: `${k} = ${formatValue(v, 2000, r.float_params.has(k))}` }, h("span", { class: "rv-param-key", text: k }),
          `= ${formatValue(v, 40, r.float_params.has(k))}`)));
    }
    // "step 'train' failed" says where; the failed step's own reason says what (its first line)
    const failed = r.state === "failed" ? r.steps.find((s) => s.state === "failed" && s.reason) : null;
    const what = failed ? String(failed.reason).split("\n")[0].slice(0, 200) : "";
    const reason = r.reason && what && !r.reason.includes(what) ? `${r.reason}: ${what}` : r.reason;
    header.reason.hidden = !reason;
    setText(header.reason, reason);
    if (cancelOver(r, header.notice.textContent)) {
      header.notice.hidden = true; // the cancel is over: the header says how the run ended
    }
  }

  /** "Cancelling run …" is stale once the run ended (the kernel's note may arrive after the end). */
  function cancelOver(r, text) {
    return ["succeeded", "failed", "cancelled"].includes(r.state) && String(text || "").startsWith("Cancelling run");
  }

  function tick() {
    if (destroyed) return;
    const now = Date.now() / 1000;
    graph.update(run, active, now);
    renderHeader(now);
    if (selected && active.includes(selected)) details.refresh({ now });
  }

  function syncTimer() {
    active = run.steps.filter((s) => STEP_ACTIVE.has(s.state)).map((s) => s.name);
    const live = active.length > 0 || RUN_ACTIVE.has(run.state);
    if (live && !timer) timer = setInterval(tick, TICK_MS);
    else if (!live && timer) { clearInterval(timer); timer = null; }
  }

  function afterGraphChange() {
    const key = graphKey(run);
    empty.hidden = run.steps.length > 0;
    if (key !== shape) { shape = key; graph.rebuild(run); return true; }
    return false;
  }

  function flush() {
    scheduled = false;
    if (destroyed) return;
    const now = Date.now() / 1000;
    if (dirty.size) graph.update(run, [...dirty], now);
    if (dirtyRun || dirty.size) { renderHeader(now); syncTimer(); }
    if (selected && dirty.has(selected)) details.refresh({ now });
    dirty.clear();
    dirtyRun = false;
  }

  const view = {
    setSnapshot(snapshot) {
      const previousId = run.id;
      run = runFromSnapshot(snapshot);
      if (run.id) root.dataset.run = String(run.id); // Lab's "Open Run in a Tab" reads it
      const switched = Boolean(previousId && run.id !== previousId);
      if (switched) logs.byStep.clear(); // another run: its logs are not ours
      if (!afterGraphChange()) graph.update(run, run.steps.map((s) => s.name));
      renderHeader(Date.now() / 1000);
      syncTimer();
      const step = selected && run.byName.get(selected);
      if (selected && !step) selectStep(null, false);
      else if (step) {
        graph.setSelected(run, selected);
        details.show(step);
        if (switched) details.refresh({ force: true }); // the same step of another run: not the old run's log
      }
    },
    applyEvent(event) {
      const change = applyRunEvent(run, event);
      if (!change) return false;
      if (change.graph) {
        afterGraphChange();
        if (selected && !run.byName.get(selected)) selectStep(null, false);
      }
      if (event.type === "StepStarted") logs.started(change.steps[0], run.byName.get(change.steps[0]).attempt);
      if (change.log) {
        const { step, attempt, stream, text } = change.log;
        logs.append(step, attempt, stream, text);
        if (step === selected) details.appendLog({ attempt, stream, text });
      }
      for (const name of change.steps) dirty.add(name);
      dirtyRun = dirtyRun || change.run;
      if (!scheduled) { scheduled = true; queueMicrotask(flush); }
      return true;
    },
    setLogs(step, text) {
      logs.set(String(step), text);
      if (String(step) === selected) details.replaceLogs();
    },
    select(step) { selectStep(step, false); },
    /** A one-line message about the last action ({text, kind: "info" | "error"}; null hides it). */
    setNotice(notice) {
      const text = notice && notice.text ? String(notice.text) : "";
      header.notice.hidden = !text || cancelOver(run, text);
      header.notice.className = `rv-notice rv-notice-${notice && notice.kind === "error" ? "error" : "info"}`;
      setText(header.notice, text);
    },
    /** Runs shown before this one (newest last), each a link back: [{id, name, state}]. */
    setPrevious(runs) {
      const list = Array.isArray(runs) ? runs : [];
      header.previous.hidden = !list.length;
      header.previous.replaceChildren(...(list.length ? [h("span", { class: "rv-previous-label", text: "Previous runs:" })] : []),
        ...list.slice().reverse().map((p) => h("button", {
          class: "rv-link", type: "button", "data-run": String(p.id), title: `Show run ${p.id}${p.state ? ` (${p.state})` : ""}`,
          text: `${p.id}${p.state ? ` · ${p.state}` : ""}`,
          onclick: () => options.onAction && options.onAction("open", { run: String(p.id) }),
        })));
    },
    /** Rebuild the open tab (e.g. after new image data arrived). */
    refreshDetails() { if (selected) details.refresh({ force: true }); },
    get selected() { return selected; },
    get snapshot() { return run; },
    fit() { graph.fit(); },
    flush,
    destroy() {
      destroyed = true;
      if (timer) clearInterval(timer);
      graph.destroy();
      root.remove();
    },
  };
  return view;
}

/**
 * The notebook cells (1-based) edited since they last ran, as JupyterLab marks them (jp-mod-dirty):
 * a re-run uses the kernel's pipeline, which does not have those edits, so the kernel says so.
 */
export function editedCells(el) {
  const nb = el && el.closest ? el.closest(".jp-Notebook") : null;
  if (!nb) return [];
  const all = [...nb.querySelectorAll(".jp-Cell")];
  return all.filter((c) => c.classList.contains("jp-mod-dirty"))
    .map((c) => (c.dataset.windowedListIndex != null ? Number(c.dataset.windowedListIndex) : all.indexOf(c)) + 1);
}

/** anywidget entry: traits ``snapshot``, ``logs``, ``images`` in; ``selected`` out; actions via send. */
export default {
  render({ model, el }) {
    const view = createRunView(el, {
      onSelect(name) { model.set("selected", name || ""); model.save_changes(); },
      onAction(action, payload) {
        const edited = action.startsWith("rerun") ? editedCells(el) : [];
        // The run the click was on: a double-click's second click reaches the kernel after the first
        // switched the graph to its new run, and must not act on that one (see RunView._on_msg).
        const shown = view.snapshot.id ? { shown: String(view.snapshot.id) } : {};
        model.send({ type: "action", action, payload: { ...payload, ...shown, ...(edited.length ? { edited_cells: edited } : {}) } });
      },
      images: () => model.get("images") || {},
      loadImage(preview) {
        const url = (model.get("images") || {})[preview.digest];
        return url ? Promise.resolve(url) : Promise.reject(new Error(`image ${String(preview.digest).slice(0, 12)} was not sent to the widget`));
      },
    });
    let shownLogs = {};
    const onSnapshot = () => { const s = model.get("snapshot"); if (s && Object.keys(s).length) view.setSnapshot(s); };
    const onLogs = () => {
      const next = model.get("logs") || {};
      for (const [step, text] of Object.entries(next)) if (shownLogs[step] !== text) view.setLogs(step, text);
      shownLogs = { ...next };
    };
    const onSelected = () => { const s = model.get("selected"); if ((s || null) !== view.selected) view.select(s || null); };
    const onImages = () => view.refreshDetails();
    const onNotice = () => view.setNotice(model.get("notice") || null);
    const onPrevious = () => view.setPrevious(model.get("previous") || []);
    // Live streams may also arrive as custom messages, so the kernel need not resend the snapshot per event.
    const onMsg = (msg) => {
      if (msg && msg.type === "error") view.setNotice({ text: msg.message, kind: "error" });
      else if (msg && msg.type === "event") view.applyEvent(msg.event);
      else if (msg && msg.type === "events") for (const e of msg.events || []) view.applyEvent(e);
    };
    onSnapshot();
    onLogs();
    onSelected();
    onNotice();
    onPrevious();
    model.on("change:notice", onNotice);
    model.on("change:previous", onPrevious);
    model.on("change:snapshot", onSnapshot);
    model.on("change:logs", onLogs);
    model.on("change:selected", onSelected);
    model.on("change:images", onImages);
    model.on("msg:custom", onMsg);
    return () => {
      model.off("change:snapshot", onSnapshot);
      model.off("change:logs", onLogs);
      model.off("change:selected", onSelected);
      model.off("change:images", onImages);
      model.off("change:notice", onNotice);
      model.off("change:previous", onPrevious);
      model.off("msg:custom", onMsg);
      view.destroy();
    };
  },
};
