// The DAG canvas: HTML step nodes over an SVG edge layer, with pan, wheel zoom and fit.
//
// Layout runs once per graph shape; after that an update touches only the nodes whose visible
// fields changed (each node keeps a signature of what it shows) and the edges next to them.
// Non-goals: run header, details pane, data (the caller passes the run object).

import { NODE_H, NODE_W, edgePath, layoutGraph } from "./run_view_layout.js";
import { STATE_ICONS, STEP_ACTIVE, elapsedOf, formatDuration } from "./run_view_state.js";
import { h, svg } from "./run_view_preview.js";

const MIN_ZOOM = 0.04;
const FIT_FLOOR = 0.12;
const MAX_ZOOM = 2.5;
const DETAIL_ZOOM = 0.3; // below this, nodes drop their text and show as state-coloured blocks
const READABLE_ZOOM = 0.6; // selecting a step zooms in to at least this, so its label can be read

export function stepLabel(step) {
  return step.display_name || step.name;
}

export function stepAria(step) {
  const attempt = step.max_attempts > 1 && step.attempt ? `, attempt ${step.attempt} of ${step.max_attempts}` : "";
  return `${stepLabel(step)}: ${step.state}${attempt}`;
}

export class GraphView {
  constructor(host, { onSelect }) {
    this.onSelect = onSelect;
    this.nodes = new Map(); // name → {el, icon, meta, sig}
    this.edgesByStep = new Map(); // name → [{el, from, to}]
    this.layout = null;
    this.view = { x: 0, y: 0, k: 1 };
    this.userMoved = false;
    this.selected = null;
    this.defsId = `rv-arrow-${Math.random().toString(36).slice(2, 9)}`;
    this.world = h("div", { class: "rv-world" });
    this.edgeLayer = svg("svg", { class: "rv-edges", "aria-hidden": "true" });
    this.world.append(this.edgeLayer);
    this.fitButton = h("button", { class: "rv-tool", type: "button", title: "Fit graph to view", "aria-label": "Fit graph to view", text: "Fit", onclick: () => this.fit() });
    this.tools = h("div", { class: "rv-tools" },
      h("button", { class: "rv-tool", type: "button", title: "Zoom in", "aria-label": "Zoom in", text: "+", onclick: () => this.zoomBy(1.25) }),
      h("button", { class: "rv-tool", type: "button", title: "Zoom out", "aria-label": "Zoom out", text: "−", onclick: () => this.zoomBy(0.8) }),
      this.fitButton);
    this.canvas = h("div", { class: "rv-canvas", role: "group", "aria-label": "Run graph" }, this.world, this.tools);
    host.append(this.canvas);
    this.bindPointer();
    this.resizeObserver = new ResizeObserver(() => this.refit());
    this.resizeObserver.observe(this.canvas);
  }

  /** Rebuild nodes and edges for a new graph shape. */
  rebuild(run) {
    this.layout = layoutGraph(run.steps);
    const L = this.layout;
    for (const n of this.nodes.values()) n.el.remove();
    // Fit before the nodes go in: reading the canvas size then costs one cheap reflow, and the
    // nodes get laid out once, already at their final zoom level (far or near).
    this.userMoved = false;
    this.fit();
    this.nodes.clear();
    this.edgesByStep.clear();
    this.edgeLayer.replaceChildren();
    this.edgeLayer.setAttribute("width", L.width);
    this.edgeLayer.setAttribute("height", L.height);
    this.edgeLayer.append(this.arrowDefs());
    const edgeGroup = svg("g");
    for (const e of L.edges) {
      const el = svg("path", { class: "rv-edge", d: edgePath(e.points), "marker-end": `url(#${this.defsId})` });
      edgeGroup.append(el);
      const rec = { el, from: e.from, to: e.to };
      for (const k of [e.from, e.to]) {
        if (!this.edgesByStep.has(k)) this.edgesByStep.set(k, []);
        this.edgesByStep.get(k).push(rec);
      }
    }
    this.edgeLayer.append(edgeGroup);
    const frag = document.createDocumentFragment();
    for (const step of run.steps) {
      const pos = L.nodes.get(step.name);
      const icon = h("span", { class: "rv-icon", "aria-hidden": "true" });
      const title = h("span", { class: "rv-node-title", text: stepLabel(step) });
      const meta = h("span", { class: "rv-node-meta" });
      const el = h("div", { class: "rv-node", tabindex: "0", role: "button", "data-step": step.name },
        icon, h("span", { class: "rv-node-body" }, title, meta));
      el.style.transform = `translate(${pos.x}px, ${pos.y}px)`;
      el.addEventListener("click", () => this.onSelect(step.name));
      el.addEventListener("keydown", (ev) => this.onNodeKey(ev, step.name));
      // Keyboard focus (Tab) brings the step into view; mouse focus must not move the graph mid-click.
      el.addEventListener("focus", () => { if (el.matches(":focus-visible")) this.reveal(step.name); });
      this.nodes.set(step.name, { el, icon, title, meta, sig: "" });
      frag.append(el);
    }
    this.world.append(frag);
    this.world.style.width = `${L.width}px`;
    this.world.style.height = `${L.height}px`;
    this.update(run, run.steps.map((s) => s.name));
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
    const edges = new Set();
    for (const name of names) {
      const step = run.byName.get(name), node = this.nodes.get(name);
      if (!step || !node) continue;
      const duration = formatDuration(elapsedOf(step, now));
      const attempt = step.max_attempts > 1 && step.attempt ? `${step.attempt}/${step.max_attempts}` : "";
      const label = stepLabel(step);
      const sig = `${step.state}|${duration}|${attempt}|${label}|${name === this.selected}`;
      if (sig === node.sig) continue;
      const prevState = node.sig.split("|", 1)[0];
      node.sig = sig;
      if (prevState !== step.state) {
        node.el.className = `rv-node rv-state-${step.state}${name === this.selected ? " rv-selected" : ""}`;
        node.icon.textContent = STATE_ICONS[step.state] ?? "?";
        for (const e of this.edgesByStep.get(name) || []) edges.add(e);
      }
      node.el.classList.toggle("rv-selected", name === this.selected);
      if (node.title.textContent !== label) node.title.textContent = label;
      const parts = [];
      if (step.state === "cached") parts.push("cached");
      if (step.state === "retrying") parts.push(`retrying${attempt ? ` ${attempt}` : ""}`);
      if (duration) parts.push(duration);
      if (attempt && step.state !== "retrying") parts.push(`attempt ${attempt}`);
      const metaText = parts.join(" · ") || step.state;
      if (node.meta.textContent !== metaText) node.meta.textContent = metaText;
      const aria = stepAria(step);
      node.el.setAttribute("aria-label", aria);
      node.el.title = step.name === label ? aria : `${aria}\nstep ${step.name} · component ${step.component}`;
    }
    for (const e of edges) {
      const a = run.byName.get(e.from), b = run.byName.get(e.to);
      const done = a && (a.state === "succeeded" || a.state === "cached");
      const cls = `rv-edge${done ? " rv-edge-done" : ""}${b && STEP_ACTIVE.has(b.state) ? " rv-edge-active" : ""}${a && a.state === "failed" ? " rv-edge-failed" : ""}`;
      if (e.el.getAttribute("class") !== cls) e.el.setAttribute("class", cls);
    }
  }

  setSelected(run, name) {
    const prev = this.selected;
    this.selected = name;
    this.update(run, [prev, name].filter(Boolean));
  }

  onNodeKey(ev, name) {
    if (ev.key === "Enter" || ev.key === " ") { ev.preventDefault(); this.onSelect(name); return; }
    const L = this.layout, pos = L && L.nodes.get(name);
    if (!pos) return;
    let target = null;
    if (ev.key === "ArrowUp" || ev.key === "ArrowDown") target = L.layers[pos.layer][L.layers[pos.layer].indexOf(name) + (ev.key === "ArrowUp" ? -1 : 1)];
    else if (ev.key === "ArrowLeft" || ev.key === "ArrowRight") {
      const row = L.layers[pos.layer + (ev.key === "ArrowLeft" ? -1 : 1)] || [];
      let best = Infinity;
      for (const n of row) { const d = Math.abs(L.nodes.get(n).y - pos.y); if (d < best) { best = d; target = n; } }
    }
    if (target) { ev.preventDefault(); this.nodes.get(target).el.focus({ preventScroll: true }); this.reveal(target); }
  }

  apply() {
    const { x, y, k } = this.view;
    this.world.style.transform = `translate(${x}px, ${y}px) scale(${k})`;
    this.canvas.classList.toggle("rv-far", k < DETAIL_ZOOM);
    this.canvas.dataset.zoom = k.toFixed(3);
  }

  fit() {
    const L = this.layout;
    const w = this.canvas.clientWidth, hgt = this.canvas.clientHeight;
    if (!L || !w || !hgt) return;
    const kw = (w - 16) / L.width, kh = (hgt - 16) / L.height;
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
    const pos = this.layout && this.layout.nodes.get(name);
    if (!pos) return;
    const { x, y } = this.view, w = this.canvas.clientWidth, hgt = this.canvas.clientHeight;
    const k = Math.max(this.view.k, READABLE_ZOOM);
    const sx = x + pos.x * k, sy = y + pos.y * k;
    if (k === this.view.k && sx >= 0 && sy >= 0 && sx + NODE_W * k <= w && sy + NODE_H * k <= hgt) return;
    this.view = { k, x: w / 2 - (pos.x + NODE_W / 2) * k, y: hgt / 2 - (pos.y + NODE_H / 2) * k };
    this.userMoved = true;
    this.apply();
  }

  /** Fit again if the user has not panned or zoomed (called when the canvas changes size). */
  refit() {
    if (!this.userMoved) this.fit();
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
      if (ev.button !== 0 || ev.target.closest(".rv-node, .rv-tools")) return;
      drag = { id: ev.pointerId, sx: ev.clientX, sy: ev.clientY, x: this.view.x, y: this.view.y };
      this.canvas.setPointerCapture(ev.pointerId);
      this.canvas.classList.add("rv-dragging");
    });
    this.canvas.addEventListener("pointermove", (ev) => {
      if (!drag || ev.pointerId !== drag.id) return;
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
    this.canvas.addEventListener("pointercancel", end);
    this.canvas.addEventListener("wheel", (ev) => {
      ev.preventDefault();
      const r = this.canvas.getBoundingClientRect();
      const dy = ev.deltaMode === 1 ? ev.deltaY * 16 : ev.deltaY;
      this.zoomBy(Math.exp(-dy * 0.0015), ev.clientX - r.left, ev.clientY - r.top);
    }, { passive: false });
  }

  destroy() {
    this.resizeObserver.disconnect();
    this.canvas.remove();
  }
}
