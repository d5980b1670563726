// The DAG canvas: HTML step nodes over an SVG edge layer, with pan, wheel zoom and fit.
//
// Layout runs once per graph shape (and when a loop is collapsed or expanded); after that an update
// touches only the nodes whose visible fields changed (each node keeps a signature of what it
// shows), the edges next to them and the labels of their groups. A collapsed loop's iteration
// steps have no node: their template shows their counts as a summary node.
// Non-goals: run header, details pane, data (the caller passes the run object).

import { NODE_H, NODE_W, WRAP_AT, edgePath, layoutGraph } from "./run_view_layout.js";
import { STATE_ICONS, STEP_ACTIVE, elapsedOf, formatDuration } from "./run_view_state.js";
import { h, svg } from "./run_view_preview.js";
import { FrameLayer, deriveGroups, isCollapsed, summaryOf, summaryParts, visibleSteps } from "./run_view_groups.js";
import { LARGE_AT, OverviewCanvas, SpatialIndex, paintOverview } from "./run_view_virtual.js";

const MIN_ZOOM = 0.04;
const FIT_FLOOR = 0.12;
const MAX_ZOOM = 2.5;
const DETAIL_ZOOM = 0.3; // below this, nodes drop their text and show as state-coloured blocks
const READABLE_ZOOM = 0.55; // selecting a step zooms in to at least this, so its label can be read
const EDGE_DONE = new Set(["succeeded", "cached"]);
const VERTICAL_MAX = 400; // graphs up to this many visible steps may flow top-down on a narrow canvas
const VERTICAL_GAIN = 1.15; // ...when that fits them at least this much larger than left-to-right

/** Steps side by side that a top-down layout may put in a row of a ``w`` px canvas, still readable. */
function narrowColumns(w) {
  return Math.max(1, Math.floor(((w - 16) / 0.85 + 14) / (NODE_W + 14)));
}

/** Zoom at which ``L`` fits a ``w`` × ``hgt`` canvas (room left for the zoom tools). */
function fitZoom(L, w, hgt) {
  return Math.min((w - 16) / L.width, (hgt - 64) / L.height);
}

/**
 * Top-down on a narrow, tall canvas (the Lab side panel) when that shows the steps larger than
 * left-to-right would; ``dims`` holds both layouts' sizes.
 */
function preferVertical(dims, w, hgt) {
  if (!dims || !w || !hgt || !dims.vertical) return false;
  const lr = fitZoom(dims.horizontal, w, hgt), tb = fitZoom(dims.vertical, w, hgt);
  return lr < 0.75 && tb > lr * VERTICAL_GAIN;
}

/** Edge look from its ends: done when every source is, failed if one is, active while a target runs. */
function edgeClass(run, sources, targets) {
  let done = true, failed = false, active = false;
  for (const n of sources) {
    const st = (run.byName.get(n) || {}).state;
    if (!EDGE_DONE.has(st)) done = false;
    if (st === "failed") failed = true;
  }
  for (const n of targets) if (STEP_ACTIVE.has((run.byName.get(n) || {}).state)) { active = true; break; }
  return `rv-edge${sources.length + targets.length > 2 ? " rv-trunk" : ""}${done ? " rv-edge-done" : ""}${active ? " rv-edge-active" : ""}${failed ? " rv-edge-failed" : ""}`;
}

/** "3 workers" while all run alike, else "3 workers: 1 failed, 2 stopped" (a distributed step's gang). */
export function workersText(workers) {
  if (!Array.isArray(workers) || workers.length < 2) return "";
  const counts = {};
  for (const w of workers) counts[w.state] = (counts[w.state] || 0) + 1;
  const states = Object.keys(counts);
  if (states.length === 1 && (states[0] === "running" || states[0] === "succeeded")) return `${workers.length} workers`;
  return `${workers.length} workers: ${states.map((st) => `${counts[st]} ${st}`).join(", ")}`;
}

export function stepLabel(step) {
  return step.display_name || step.name;
}

export function stepAria(step) {
  const attempt = step.max_attempts > 1 && step.attempt ? `, attempt ${step.attempt} of ${step.max_attempts}` : "";
  return `${stepLabel(step)}: ${step.state}${attempt}`;
}

/** "train [3]" → "train": a loop template's label without an index. */
function baseLabel(step) {
  return stepLabel(step).replace(/\s*\[[^\]]*\]$/, "");
}

export class GraphView {
  constructor(host, { onSelect }) {
    this.onSelect = onSelect;
    this.nodes = new Map(); // name → {el, icon, meta, sig, group?}
    this.edgesByStep = new Map(); // name → [{el, sources, targets}]
    this.groups = new Map();
    this.overrides = new Map(); // group id → collapsed (the user's choice)
    this.hiddenTo = new Map(); // copy of a collapsed loop → its template (summary node)
    this.run = null;
    this.layout = null;
    this.view = { x: 0, y: 0, k: 1 };
    this.userMoved = false;
    this.selected = null;
    this.defsId = `rv-arrow-${Math.random().toString(36).slice(2, 9)}`;
    this.world = h("div", { class: "rv-world" });
    this.edgeLayer = svg("svg", { class: "rv-edges", "aria-hidden": "true" });
    this.world.append(this.edgeLayer);
    this.frameLayer = new FrameLayer(this.world, { onToggle: (id, collapse) => this.toggleGroup(id, collapse) });
    this.fitButton = h("button", { class: "rv-tool", type: "button", title: "Fit graph to view", "aria-label": "Fit graph to view", text: "Fit", onclick: () => this.fit() });
    this.tools = h("div", { class: "rv-tools" },
      h("button", { class: "rv-tool", type: "button", title: "Zoom in", "aria-label": "Zoom in", text: "+", onclick: () => this.zoomBy(1.25) }),
      h("button", { class: "rv-tool", type: "button", title: "Zoom out", "aria-label": "Zoom out", text: "−", onclick: () => this.zoomBy(0.8) }),
      this.fitButton);
    this.canvas = h("div", { class: "rv-canvas", role: "group", "aria-label": "Run graph" }, this.world, this.tools);
    host.append(this.canvas);
    // Large graphs (run_view_virtual.js): DOM only near the viewport, the rest painted when far out.
    this.large = false;
    this.index = null;
    this.overview = null; // made when the first large graph comes
    this.edgeRecs = [];
    this.bindPointer();
    this.resizeObserver = new ResizeObserver(() => this.refit());
    this.resizeObserver.observe(this.canvas);
  }

  /** Rebuild nodes and edges for a new graph shape. */
  rebuild(run) {
    this.run = run;
    this.groups = deriveGroups(run);
    const collapsed = (g) => isCollapsed(g, this.overrides.get(g.id));
    const { steps, hiddenTo } = visibleSteps(run, this.groups, collapsed);
    this.hiddenTo = hiddenTo;
    const summaries = new Map(); // template → its collapsed group
    for (const g of this.groups.values()) if (collapsed(g)) for (const r of g.roots) summaries.set(r, g);
    const cw = this.canvas.clientWidth, ch = this.canvas.clientHeight;
    this.large = steps.length > LARGE_AT;
    if (this.large && !this.overview) this.overview = new OverviewCanvas(this.canvas, this.world);
    else if (!this.large && this.overview) this.overview.show(null);
    this.canvas.classList.toggle("rv-large", this.large);
    const horizontal = layoutGraph(steps, { aspect: cw && ch ? Math.min(4, Math.max(1, cw / ch)) : 2.5, rows: this.large });
    const cols = cw ? narrowColumns(cw) : Infinity;
    const vertical = steps.length <= VERTICAL_MAX
      ? layoutGraph(steps, { aspect: cw && ch ? Math.min(2, Math.max(0.5, cw / ch)) : 1, vertical: true,
        wrapAt: Math.min(WRAP_AT, cols), maxCols: cols }) : null;
    this.columns = cols;
    // Both sizes are kept, so a resize can switch direction (refit) without laying out again to decide.
    this.dims = { horizontal: { width: horizontal.width, height: horizontal.height },
      vertical: vertical && { width: vertical.width, height: vertical.height } };
    this.layout = vertical && preferVertical(this.dims, cw, ch) ? vertical : horizontal;
    const L = this.layout;
    this.canvas.dataset.direction = L.vertical ? "down" : "right";
    for (const n of this.nodes.values()) n.el.remove();
    this.nodes.clear();
    this.edgesByStep.clear();
    this.edgeLayer.replaceChildren();
    // A large graph's edges near the view only: the layer is not sized to the whole graph (its paths
    // overflow it, visible), so the browser does not keep a surface of millions of pixels for it.
    this.edgeLayer.setAttribute("width", this.large ? 1 : L.width);
    this.edgeLayer.setAttribute("height", this.large ? 1 : L.height);
    this.edgeLayer.append(this.arrowDefs());
    this.edgeGroup = svg("g");
    this.edgeLayer.append(this.edgeGroup);
    this.edgeRecs = L.edges.map((e) => ({ el: null, e, sources: e.sources, targets: e.targets }));
    for (const rec of this.edgeRecs) {
      for (const k of new Set([...rec.sources, ...rec.targets])) {
        if (!this.edgesByStep.has(k)) this.edgesByStep.set(k, []);
        this.edgesByStep.get(k).push(rec);
      }
    }
    this.frameLayer.rebuild(run, L, this.groups, collapsed);
    this.summaries = summaries;
    this.index = this.large ? new SpatialIndex(L) : null;
    this.world.style.width = `${L.width}px`;
    this.world.style.height = `${L.height}px`;
    // Fit before the nodes go in: reading the canvas size then costs one cheap reflow, and the
    // nodes get laid out once, already at their final zoom level (far or near). A large graph
    // makes the nodes in view only (fit -> apply -> renderWindow).
    this.userMoved = false;
    this.fit();
    if (this.large) return;
    const frag = document.createDocumentFragment();
    for (const rec of this.edgeRecs) this.edgeGroup.append(this.makeEdge(rec));
    for (const { name } of steps) frag.append(this.makeNode(name).el);
    this.world.append(frag);
    this.update(run, steps.map((s) => s.name));
  }

  makeEdge(rec) {
    rec.el = svg("path", { class: "rv-edge", d: edgePath(rec.e.points, this.layout.vertical, rec.e.routed), "marker-end": `url(#${this.defsId})` });
    return rec.el;
  }

  /** The DOM node of a step (or of a collapsed loop's summary), registered in ``this.nodes``. */
  makeNode(name) {
    const step = this.run.byName.get(name), pos = this.layout.nodes.get(name);
    const icon = h("span", { class: "rv-icon", "aria-hidden": "true" });
    const title = h("span", { class: "rv-node-title", text: stepLabel(step) });
    const meta = h("span", { class: "rv-node-meta" });
    const group = this.summaries.get(name) || null;
    const body = h("span", { class: "rv-node-body" }, title, meta);
    const el = h("div", { class: "rv-node", tabindex: "0", role: "button", "data-step": step.name }, icon, body);
    if (group) {
      el.dataset.summary = group.id;
      el.setAttribute("aria-expanded", "false");
      body.append(h("span", { class: "rv-summary-bar" }));
    }
    el.style.transform = `translate(${pos.x}px, ${pos.y}px)`;
    el.addEventListener("click", () => (group ? this.toggleGroup(group.id, false) : this.onSelect(step.name)));
    el.addEventListener("keydown", (ev) => this.onNodeKey(ev, step.name));
    // Keyboard focus (Tab) brings the step into view; mouse focus must not move the graph mid-click.
    el.addEventListener("focus", () => { if (el.matches(":focus-visible")) this.reveal(step.name); });
    const node = { el, icon, title, meta, body, group, sig: "" };
    this.nodes.set(step.name, node);
    return node;
  }

  /**
   * Large graphs: make the DOM match the view. Near (readable zoom): nodes and edges within half a
   * canvas of the viewport; far: none but the selected and focused step, the rest painted on the
   * overview canvas. Nodes that leave are removed, so the DOM stays bounded by the canvas size.
   */
  renderWindow() {
    if (!this.large || !this.layout || !this.run) return;
    const { x, y, k } = this.view, w = this.canvas.clientWidth, hgt = this.canvas.clientHeight;
    const mx = w / 2, my = hgt / 2;
    const rect = { x0: (-x - mx) / k, y0: (-y - my) / k, x1: (w - x + mx) / k, y1: (hgt - y + my) / k };
    const far = k < DETAIL_ZOOM;
    const focused = document.activeElement && this.world.contains(document.activeElement) ? document.activeElement.dataset.step : null;
    const want = new Set(far ? [] : this.index.nodesIn(rect.x0, rect.y0, rect.x1, rect.y1));
    for (const name of [this.selected, focused]) if (name && this.layout.nodes.has(name)) want.add(name);
    for (const [name, node] of this.nodes) if (!want.has(name)) { node.el.remove(); this.nodes.delete(name); }
    const added = [], frag = document.createDocumentFragment();
    for (const name of want) if (!this.nodes.has(name)) { frag.append(this.makeNode(name).el); added.push(name); }
    this.world.append(frag);
    const edges = far ? new Set() : this.index.edgesIn(rect.x0, rect.y0, rect.x1, rect.y1);
    const fresh = new Set();
    this.edgeRecs.forEach((rec, i) => {
      if (rec.el && !edges.has(i)) { rec.el.remove(); rec.el = null; }
      else if (!rec.el && edges.has(i)) { this.edgeGroup.append(this.makeEdge(rec)); fresh.add(rec); }
    });
    if (added.length) this.update(this.run, added);
    for (const rec of fresh) rec.el.setAttribute("class", edgeClass(this.run, rec.sources, rec.targets));
    this.overview.show(far ? (ctx, dpr, colours) => paintOverview(ctx, {
      dpr, view: this.view, rect, index: this.index, layout: this.layout, colours, selected: this.selected,
      stateOf: (name) => (this.run.byName.get(name) || {}).state,
    }) : null);
  }

  /** The DOM node of ``name``, made now if the large graph had not made it yet. */
  nodeOf(name) {
    if (!this.nodes.has(name) && this.large && this.layout && this.layout.nodes.has(name)) {
      this.world.append(this.makeNode(name).el);
      this.update(this.run, [name]);
    }
    return this.nodes.get(name) || null;
  }

  /** Collapse or expand a loop's iterations (a new layout), keeping the step the user selected. */
  toggleGroup(id, collapse) {
    if (!this.run) return;
    this.overrides.set(id, collapse);
    this.rebuild(this.run);
    const frame = this.frameLayer.frames.get(id);
    const toggle = frame && frame.el.querySelector(".rv-frame-toggle");
    if (toggle) toggle.focus({ preventScroll: true });
  }

  arrowDefs() {
    const marker = svg("marker", { id: this.defsId, viewBox: "0 0 10 10", refX: 9, refY: 5, markerWidth: 7, markerHeight: 7, orient: "auto-start-reverse" });
    marker.append(svg("path", { d: "M0,1 L9,5 L0,9 z", class: "rv-arrow" }));
    const defs = svg("defs");
    defs.append(marker);
    return defs;
  }

  /** Repaint the named steps (only DOM that differs) and the edges touching them. */
  update(run, names, now = Date.now() / 1000) {
    this.run = run;
    const edges = new Set(), groups = new Set(), todo = new Set();
    for (const name of names) {
      if (name == null) continue;
      const step = run.byName.get(name);
      if (step && step.group) groups.add(step.group);
      todo.add(this.hiddenTo.get(name) || name);
    }
    if (this.frameLayer.frames.size) this.frameLayer.update(run, groups);
    let offscreen = false;
    for (const name of todo) {
      const step = run.byName.get(name), node = this.nodes.get(name);
      if (!node) offscreen = true;
      if (!step || !node) continue;
      const duration = formatDuration(elapsedOf(step, now));
      const attempt = step.max_attempts > 1 && step.attempt ? `${step.attempt}/${step.max_attempts}` : "";
      const summary = node.group ? summaryOf(run, node.group, name) : null;
      const label = summary ? `${baseLabel(step)} × ${summary.total}` : stepLabel(step);
      const workers = workersText(step.workers);
      const sig = `${step.state}|${duration}|${attempt}|${label}|${name === this.selected}|${summary ? JSON.stringify(summary.counts) : ""}|${step.reason}|${workers}`;
      if (sig === node.sig) continue;
      const prevState = node.sig.split("|", 1)[0];
      node.sig = sig;
      if (prevState !== step.state) {
        node.el.className = `rv-node rv-state-${step.state}${summary ? " rv-summary" : ""}${name === this.selected ? " rv-selected" : ""}`;
        node.icon.textContent = STATE_ICONS[step.state] ?? "?";
        for (const e of this.edgesByStep.get(name) || []) edges.add(e);
      }
      node.el.classList.toggle("rv-selected", name === this.selected);
      if (node.title.textContent !== label) node.title.textContent = label;
      const parts = [];
      if (step.state === "cached") parts.push("cached");
      if (step.state === "pending" && step.reason) parts.push("waiting"); // for an identical step: the tooltip says which
      if (step.state === "retrying") parts.push(`retrying${attempt ? ` ${attempt}` : ""}`);
      if (duration) parts.push(duration);
      if (attempt && step.state !== "retrying") parts.push(`attempt ${attempt}`);
      if (workers) parts.push(workers);
      if (summary) {
        const { bar, text } = summaryParts(summary);
        node.body.lastChild.replaceWith(bar);
        if (node.meta.textContent !== text) node.meta.textContent = text;
        const aria = `${label}: loop of ${summary.total} steps, ${Object.entries(summary.counts).map(([st, n]) => `${n} ${st}`).join(", ")}. Press Enter to show them.`;
        node.el.setAttribute("aria-label", aria);
        node.el.title = `${aria}\nClick to show every iteration.`;
        continue;
      }
      const metaText = parts.join(" · ") || step.state;
      if (node.meta.textContent !== metaText) node.meta.textContent = metaText;
      const aria = stepAria(step);
      node.el.setAttribute("aria-label", aria);
      const more = [step.name === label ? "" : `step ${step.name} · component ${step.component}`, step.reason].filter(Boolean).join("\n");
      node.el.title = more ? `${aria}\n${more}` : aria;
    }
    if (offscreen && this.large) this.overview.soon(); // painted steps: repaint the canvas next frame
    for (const e of edges) {
      if (!e.el) continue;
      const cls = edgeClass(run, e.sources, e.targets);
      if (e.el.getAttribute("class") !== cls) e.el.setAttribute("class", cls);
    }
  }

  setSelected(run, name) {
    const prev = this.selected;
    this.selected = name;
    if (this.large) {
      if (name) this.nodeOf(name); // the selected step always has its node (keyboard, details)
      this.overview.soon();
    }
    this.update(run, [prev, name].filter(Boolean));
  }

  onNodeKey(ev, name) {
    if (ev.key === "Enter" || ev.key === " ") { ev.preventDefault(); this.nodeOf(name).el.click(); return; }
    const dir = { ArrowUp: [0, -1], ArrowDown: [0, 1], ArrowLeft: [-1, 0], ArrowRight: [1, 0] }[ev.key];
    const L = this.layout, pos = L && L.nodes.get(name);
    if (!dir || !pos) return;
    // The nearest step in that direction (grids of wrapped layers included), straight lines first.
    let target = null, best = Infinity;
    for (const [n, p] of L.nodes) {
      const dx = p.x - pos.x, dy = p.y - pos.y;
      const along = dx * dir[0] + dy * dir[1], across = Math.abs(dx * dir[1]) + Math.abs(dy * dir[0]);
      if (along <= 0) continue;
      const score = along + 3 * across;
      if (score < best) { best = score; target = n; }
    }
    if (target) {
      ev.preventDefault();
      this.reveal(target); // a large graph makes the nodes near the target here
      this.nodeOf(target).el.focus({ preventScroll: true });
    }
  }

  apply() {
    const { x, y, k } = this.view;
    this.world.style.transform = `translate(${x}px, ${y}px) scale(${k})`;
    this.world.style.setProperty("--rv-zoom", String(k));
    this.canvas.classList.toggle("rv-far", k < DETAIL_ZOOM);
    this.canvas.dataset.zoom = k.toFixed(3);
    if (this.large) this.renderWindow();
  }

  fit() {
    const L = this.layout;
    const w = this.canvas.clientWidth, hgt = this.canvas.clientHeight;
    if (!L || !w || !hgt) return;
    // Leave room for the zoom tools in the bottom-right corner (they float over the canvas).
    const kw = (w - 16) / L.width, kh = (hgt - 64) / L.height;
    // A very tall graph (one wide fan-out layer) would fit as a sliver: keep blocks visible
    // instead, fit the width, start at the top and let the user pan down.
    const k = Math.min(1, Math.max(MIN_ZOOM, Math.min(kw, kh) < FIT_FLOOR ? Math.min(kw, FIT_FLOOR) : Math.min(kw, kh)));
    this.view = { k, x: (w - L.width * k) / 2, y: Math.max(8, (hgt - L.height * k) / 2) };
    this.userMoved = false;
    this.apply();
  }

  zoomBy(factor, cx = this.canvas.clientWidth / 2, cy = this.canvas.clientHeight / 2) {
    const { x, y, k } = this.view;
    const k2 = Math.min(MAX_ZOOM, Math.max(MIN_ZOOM, k * factor));
    this.view = { k: k2, x: cx - ((cx - x) * k2) / k, y: cy - ((cy - y) * k2) / k };
    this.userMoved = true;
    this.apply();
  }

  /** Pan so ``name`` is visible (centre it if outside the canvas), zooming in to a readable size. */
  reveal(name) {
    const template = this.hiddenTo.get(name);
    if (template) { // a step inside a collapsed loop: show the loop's iterations first
      const g = [...this.groups.values()].find((gr) => gr.templateOf.get(name) === template);
      if (g) this.toggleGroup(g.id, false);
    }
    const pos = this.layout && this.layout.nodes.get(name);
    if (!pos) return;
    const { x, y } = this.view, w = this.canvas.clientWidth, hgt = this.canvas.clientHeight;
    const k = Math.max(this.view.k, READABLE_ZOOM);
    const sx = x + pos.x * k, sy = y + pos.y * k;
    if (k === this.view.k && sx >= 0 && sy >= 0 && sx + NODE_W * k <= w && sy + NODE_H * k <= hgt) return;
    this.view = { k, x: w / 2 - (pos.x + NODE_W / 2) * k, y: hgt / 2 - (pos.y + NODE_H / 2) * k };
    this.userMoved = "reveal"; // an automatic move: undone by a resize once no step is selected
    this.apply();
  }

  /** Fit again if the user has not panned or zoomed (called when the canvas changes size). */
  refit() {
    if (this.userMoved === true || (this.userMoved === "reveal" && this.selected)) return;
    const w = this.canvas.clientWidth, hgt = this.canvas.clientHeight;
    const turn = preferVertical(this.dims, w, hgt) !== Boolean(this.layout && this.layout.vertical);
    const rewrap = this.layout && this.layout.vertical && narrowColumns(w) !== this.columns;
    if (this.run && this.layout && w && hgt && (turn || rewrap)) {
      this.rebuild(this.run); // narrowed or widened past the point where the other direction reads better
      return;
    }
    this.fit();
  }

  bindPointer() {
    // Focus and scrollIntoView scroll even overflow:hidden boxes; turn that scroll into a pan.
    this.canvas.addEventListener("scroll", () => {
      const dx = this.canvas.scrollLeft, dy = this.canvas.scrollTop;
      if (!dx && !dy) return;
      this.canvas.scrollLeft = 0;
      this.canvas.scrollTop = 0;
      this.view = { ...this.view, x: this.view.x - dx, y: this.view.y - dy };
      this.userMoved = true;
      this.apply();
    });
    let drag = null;
    this.canvas.addEventListener("pointerdown", (ev) => {
      if (ev.button !== 0 || ev.target.closest(".rv-tools") || (this.large && ev.target.closest("button"))) return;
      // A large graph is wall-to-wall steps: a drag may start on one (a click on it still selects it).
      const onNode = Boolean(ev.target.closest(".rv-node"));
      if (onNode && !this.large) return;
      drag = { id: ev.pointerId, sx: ev.clientX, sy: ev.clientY, x: this.view.x, y: this.view.y, pending: onNode };
      if (onNode) return;
      this.canvas.setPointerCapture(ev.pointerId);
      this.canvas.classList.add("rv-dragging");
    });
    this.canvas.addEventListener("pointermove", (ev) => {
      if (!drag || ev.pointerId !== drag.id) return;
      if (drag.pending) {
        if (Math.abs(ev.clientX - drag.sx) + Math.abs(ev.clientY - drag.sy) <= 4) return;
        drag.pending = false;
        this.canvas.setPointerCapture(ev.pointerId);
        this.canvas.classList.add("rv-dragging");
      }
      this.view = { ...this.view, x: drag.x + ev.clientX - drag.sx, y: drag.y + ev.clientY - drag.sy };
      this.userMoved = true;
      this.apply();
    });
    const end = (ev) => {
      if (!drag || ev.pointerId !== drag.id) return;
      drag = null;
      this.canvas.classList.remove("rv-dragging");
    };
    this.canvas.addEventListener("pointerup", end);
    // A large graph zoomed far out is a painted picture: a click (not a drag) on a block selects its step.
    let down = null;
    this.canvas.addEventListener("pointerdown", (ev) => { down = [ev.clientX, ev.clientY]; }, true);
    this.canvas.addEventListener("click", (ev) => {
      if (!this.large || this.overview.el.hidden || !down || ev.target.closest(".rv-node, .rv-tools, .rv-frame-head")) return;
      if (Math.abs(ev.clientX - down[0]) + Math.abs(ev.clientY - down[1]) > 4) return;
      const r = this.canvas.getBoundingClientRect(), { x, y, k } = this.view;
      const name = this.index.at((ev.clientX - r.left - x) / k, (ev.clientY - r.top - y) / k);
      if (!name) return;
      const group = this.summaries.get(name);
      if (group) this.toggleGroup(group.id, false);
      else this.onSelect(name);
    });
    this.canvas.addEventListener("pointercancel", end);
    this.canvas.addEventListener("wheel", (ev) => {
      ev.preventDefault();
      const r = this.canvas.getBoundingClientRect();
      const dy = ev.deltaMode === 1 ? ev.deltaY * 16 : ev.deltaY;
      this.zoomBy(Math.exp(-dy * 0.0015), ev.clientX - r.left, ev.clientY - r.top);
    }, { passive: false });
  }

  destroy() {
    if (this.overview) this.overview.destroy();
    this.resizeObserver.disconnect();
    this.canvas.remove();
  }
}
