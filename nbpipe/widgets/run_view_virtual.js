// Large run graphs (more than LARGE_AT steps on screen at once, e.g. a 10,000-step fan-out or
// chain): the layout is computed once as for any graph, but only the steps near the viewport get
// DOM nodes (and only the edges near it get SVG paths). Zoomed far out, where a step is a
// state-coloured block anyway, every step in view is painted on one <canvas> instead, and the
// DOM holds only the selected and focused steps. A uniform grid over the layout answers "what is
// in this rectangle" and "which step is at this point" without a scan.
// Non-goals: layout (run_view_layout.js), node contents (run_view_graph.js).

import { NODE_H, NODE_W } from "./run_view_layout.js";
import { h } from "./run_view_preview.js";

export const LARGE_AT = 1000; // more visible steps than this: virtualised nodes (500-step graphs are drawn whole)
const CELL = 1024; // grid cell, in layout pixels
const WIDE_EDGE = 256; // an edge whose box spans more cells than this is checked on every query
const CANVAS_STATES = ["pending", "running", "retrying", "succeeded", "cached", "failed", "cancelled", "skipped"];

const cellKey = (cx, cy) => cx * 1048576 + cy;

/** Grid of layout cells → step names and edge indices. */
export class SpatialIndex {
  constructor(layout) {
    this.cells = new Map();
    this.edgeCells = new Map();
    this.wide = [];
    for (const [name, p] of layout.nodes) this.put(this.cells, cellKey(Math.floor(p.x / CELL), Math.floor(p.y / CELL)), name);
    this.boxes = layout.edges.map((e, i) => {
      let x0 = Infinity, y0 = Infinity, x1 = -Infinity, y1 = -Infinity;
      for (const [x, y] of e.points) { x0 = Math.min(x0, x); y0 = Math.min(y0, y); x1 = Math.max(x1, x); y1 = Math.max(y1, y); }
      const cx0 = Math.floor(x0 / CELL), cx1 = Math.floor(x1 / CELL), cy0 = Math.floor(y0 / CELL), cy1 = Math.floor(y1 / CELL);
      if ((cx1 - cx0 + 1) * (cy1 - cy0 + 1) > WIDE_EDGE) this.wide.push(i);
      else for (let cx = cx0; cx <= cx1; cx += 1) for (let cy = cy0; cy <= cy1; cy += 1) this.put(this.edgeCells, cellKey(cx, cy), i);
      return { x0, y0, x1, y1 };
    });
    this.layout = layout;
  }

  put(map, key, value) {
    const list = map.get(key);
    if (list) list.push(value);
    else map.set(key, [value]);
  }

  /** Steps whose box meets the rectangle (layout pixels). */
  nodesIn(x0, y0, x1, y1) {
    const out = [];
    const cx0 = Math.floor((x0 - NODE_W) / CELL), cx1 = Math.floor(x1 / CELL);
    const cy0 = Math.floor((y0 - NODE_H) / CELL), cy1 = Math.floor(y1 / CELL);
    for (let cx = cx0; cx <= cx1; cx += 1) {
      for (let cy = cy0; cy <= cy1; cy += 1) {
        for (const name of this.cells.get(cellKey(cx, cy)) || []) {
          const p = this.layout.nodes.get(name);
          if (p.x <= x1 && p.x + NODE_W >= x0 && p.y <= y1 && p.y + NODE_H >= y0) out.push(name);
        }
      }
    }
    return out;
  }

  /** Indices into layout.edges of the edges whose box meets the rectangle. */
  edgesIn(x0, y0, x1, y1) {
    const out = new Set();
    const meets = (i) => { const b = this.boxes[i]; return b.x0 <= x1 && b.x1 >= x0 && b.y0 <= y1 && b.y1 >= y0; };
    for (const i of this.wide) if (meets(i)) out.add(i);
    for (let cx = Math.floor(x0 / CELL); cx <= Math.floor(x1 / CELL); cx += 1) {
      for (let cy = Math.floor(y0 / CELL); cy <= Math.floor(y1 / CELL); cy += 1) {
        for (const i of this.edgeCells.get(cellKey(cx, cy)) || []) if (meets(i)) out.add(i);
      }
    }
    return out;
  }

  /** The step drawn at (x, y), or null. */
  at(x, y) {
    return this.nodesIn(x, y, x, y)[0] || null;
  }
}

/**
 * The far-zoom picture of a large graph: one canvas over the whole graph area, in screen pixels,
 * repainted (at most once a frame) when the view moves or steps change state. Colours are read
 * from the stylesheet (hidden probe nodes styled as far-zoom nodes), so themes apply.
 */
export class OverviewCanvas {
  constructor(host, before) {
    this.el = h("canvas", { class: "rv-overview", "aria-hidden": "true", hidden: true });
    this.probe = h("div", { class: "rv-probe", hidden: true, "aria-hidden": "true" },
      ...CANVAS_STATES.map((st) => h("div", { class: `rv-probe-node rv-state-${st}` })),
      h("div", { class: "rv-probe-selected" }), h("div", { class: "rv-probe-edge" }));
    host.insertBefore(this.el, before);
    host.append(this.probe);
    this.frame = 0;
    this.painter = null;
  }

  colours() {
    const out = {};
    const kids = this.probe.children;
    CANVAS_STATES.forEach((st, i) => { out[st] = getComputedStyle(kids[i]).backgroundColor; });
    out.selected = getComputedStyle(kids[CANVAS_STATES.length]).color;
    out.edge = getComputedStyle(kids[CANVAS_STATES.length + 1]).color;
    return out;
  }

  /** Paint (now) with ``painter``, or hide the canvas when ``painter`` is null. */
  show(painter) {
    this.painter = painter;
    this.el.hidden = !painter;
    if (painter) this.paint();
  }

  /** Repaint at the next animation frame (state changes arrive in bursts). */
  soon() {
    if (!this.painter || this.frame) return;
    this.frame = requestAnimationFrame(() => { this.frame = 0; if (this.painter) this.paint(); });
  }

  paint() {
    const el = this.el, parent = el.parentElement;
    if (!parent) return;
    const w = parent.clientWidth, hgt = parent.clientHeight, dpr = window.devicePixelRatio || 1;
    if (el.width !== Math.round(w * dpr) || el.height !== Math.round(hgt * dpr)) {
      el.width = Math.round(w * dpr);
      el.height = Math.round(hgt * dpr);
      el.style.width = `${w}px`;
      el.style.height = `${hgt}px`;
    }
    const ctx = el.getContext("2d");
    ctx.setTransform(1, 0, 0, 1, 0, 0);
    ctx.clearRect(0, 0, el.width, el.height);
    this.painter(ctx, dpr, this.colours());
  }

  destroy() {
    if (this.frame) cancelAnimationFrame(this.frame);
    this.frame = 0;
    this.painter = null;
  }
}

/**
 * Paint the steps and edges of ``layout`` inside the view rectangle: edges as polylines, steps as
 * blocks in their state's colour, the selected step outlined.
 */
export function paintOverview(ctx, { dpr, view, rect, index, layout, stateOf, selected, colours }) {
  const { x, y, k } = view;
  ctx.setTransform(dpr * k, 0, 0, dpr * k, dpr * x, dpr * y);
  ctx.lineWidth = Math.max(1.5, 1 / k);
  ctx.strokeStyle = colours.edge;
  ctx.beginPath();
  for (const i of index.edgesIn(rect.x0, rect.y0, rect.x1, rect.y1)) {
    const pts = layout.edges[i].points;
    ctx.moveTo(pts[0][0], pts[0][1]);
    for (let j = 1; j < pts.length; j += 1) ctx.lineTo(pts[j][0], pts[j][1]);
  }
  ctx.stroke();
  const byState = new Map();
  for (const name of index.nodesIn(rect.x0, rect.y0, rect.x1, rect.y1)) {
    const st = stateOf(name);
    if (!byState.has(st)) byState.set(st, []);
    byState.get(st).push(name);
  }
  const gap = Math.min(4, 1 / k); // at least a screen pixel between neighbours
  for (const [st, names] of byState) {
    ctx.fillStyle = colours[st] || colours.pending;
    for (const name of names) {
      const p = layout.nodes.get(name);
      ctx.fillRect(p.x, p.y, NODE_W - gap, NODE_H - gap);
    }
  }
  const p = selected && layout.nodes.get(selected);
  if (p) {
    ctx.strokeStyle = colours.selected;
    ctx.lineWidth = Math.max(3, 3 / k);
    ctx.strokeRect(p.x, p.y, NODE_W, NODE_H);
  }
}
