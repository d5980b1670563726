// Control-flow groups in the run graph: ParallelFor loops, If/Elif/Else branches, exit handlers.
//
// Steps carry ``group`` (the innermost group id, e.g. "for-1", "condition-2", "exit-1"). A loop's
// iteration steps are copies of a *template* step named ``<template>-it<i>`` (nested loops add more
// suffixes); the template stays in the graph as the loop's summary step (nbpipe/runner/expand.py).
// The snapshot may carry ``groups`` metadata ({id, kind, parent, items, branch, ...}); without it
// the structure is derived from the steps alone. A loop with many iterations is collapsed: its
// copies are hidden and each template is drawn as a summary node with per-state counts.
// Non-goals: layout (run_view_layout.js places the frames), step nodes (run_view_graph.js).

import { STATE_ICONS, STEP_ACTIVE, STEP_ORDER } from "./run_view_state.js";
import { h } from "./run_view_preview.js";

export const COLLAPSE_AT = 12; // a loop with more iterations than this starts collapsed
const COPY = /^(.*)-it(\d+)$/;
const KIND_ICONS = { for: "⟳", condition: "◇", exit: "↳" };
const ITERATION_DONE = new Set(["succeeded", "cached", "skipped"]);

function kindOf(id, meta, hasCopies) {
  if (meta && meta.kind) return String(meta.kind);
  for (const k of ["for", "condition", "exit"]) if (id.startsWith(`${k}-`)) return k;
  return hasCopies ? "for" : "group";
}

/**
 * The groups of ``run``: Map id → {id, kind, meta, steps, roots, copies, templateOf, iterations}.
 * ``templateOf`` maps every copy to its root template; ``iterations`` maps an iteration key
 * ("-it3", nested "-it0-it2") to the leaf copies that make that iteration.
 */
export function deriveGroups(run) {
  const meta = new Map((run.groups || []).filter((g) => g && g.id).map((g) => [String(g.id), g]));
  const groups = new Map();
  for (const s of run.steps) {
    if (!s.group) continue;
    if (!groups.has(s.group)) groups.set(s.group, { id: s.group, steps: [], roots: [], copies: [], templateOf: new Map(), iterations: new Map() });
    groups.get(s.group).steps.push(s.name);
  }
  for (const g of groups.values()) {
    const parent = new Map(), children = new Set();
    for (const name of g.steps) {
      const m = COPY.exec(name);
      const base = m && run.byName.get(m[1]);
      if (base && base.group === g.id) { parent.set(name, m[1]); children.add(m[1]); }
    }
    for (const name of g.steps) {
      if (!parent.has(name)) { g.roots.push(name); continue; }
      let root = name;
      while (parent.has(root)) root = parent.get(root);
      g.templateOf.set(name, root);
      g.copies.push(name);
      if (!children.has(name)) {
        const key = name.slice(root.length);
        if (!g.iterations.has(key)) g.iterations.set(key, []);
        g.iterations.get(key).push(name);
      }
    }
    g.meta = meta.get(g.id) || null;
    g.kind = kindOf(g.id, g.meta, g.copies.length > 0);
  }
  return groups;
}

/** Is ``g`` drawn collapsed? ``override`` is the user's choice (true/false) or undefined. */
export function isCollapsed(g, override) {
  if (g.kind !== "for" || !g.copies.length) return false;
  return override ?? g.iterations.size > COLLAPSE_AT;
}

/**
 * The steps to lay out: collapsed groups' copies are left out, and edges from them are moved to
 * their template. Returns {steps: [{name, upstream, group}], hiddenTo: Map copy → template}.
 */
export function visibleSteps(run, groups, collapsed) {
  const hiddenTo = new Map();
  for (const g of groups.values()) if (collapsed(g)) for (const [c, t] of g.templateOf) hiddenTo.set(c, t);
  const steps = [];
  for (const s of run.steps) {
    if (hiddenTo.has(s.name)) continue;
    const upstream = [...new Set(s.upstream.map((u) => hiddenTo.get(u) || u))].filter((u) => u !== s.name);
    steps.push({ name: s.name, upstream, group: s.group || "" });
  }
  return { steps, hiddenTo };
}

/** Count steps per state: {state: n}. */
export function countStates(run, names) {
  const n = {};
  for (const name of names) { const s = run.byName.get(name); if (s) n[s.state] = (n[s.state] || 0) + 1; }
  return n;
}

/** One state per loop iteration: failed > active > cancelled > done (all finished) > pending. */
function iterationState(run, names) {
  const states = names.map((n) => (run.byName.get(n) || {}).state);
  if (states.includes("failed")) return "failed";
  if (states.some((st) => STEP_ACTIVE.has(st))) return "running";
  if (states.includes("cancelled")) return "cancelled";
  if (states.every((st) => ITERATION_DONE.has(st))) return "succeeded";
  return states.some((st) => ITERATION_DONE.has(st)) ? "running" : "pending";
}

/** "a · b" of the non-zero counts, in the header's state order: "3 running · 12 succeeded". */
export function countsText(n, order = STEP_ORDER) {
  return order.filter((st) => n[st]).map((st) => `${n[st]} ${st}`).join(" · ");
}

function describeItems(items) {
  if (!items || typeof items !== "object") return "";
  if (items.step != null) return `${items.step}.${items.output ?? "output"}`;
  if (items.parameter != null) return String(items.parameter);
  if (Array.isArray(items.value)) return `${items.value.length} items`;
  return "";
}

/** {title, status, tooltip, skipped} for a group's frame label. */
export function groupLabel(run, g) {
  const m = g.meta || {};
  if (g.kind === "for") {
    const what = describeItems(m.items);
    const title = what ? `for each in ${what}` : `loop ${g.id}`;
    const n = g.iterations.size;
    if (!n) return { title, status: "waiting for items", tooltip: `${g.id}: the loop expands when its items are known`, skipped: false };
    const per = {};
    for (const names of g.iterations.values()) { const st = iterationState(run, names); per[st] = (per[st] || 0) + 1; }
    const bits = [];
    if (per.running) bits.push(`${per.running} of ${n} running`);
    if (per.succeeded) bits.push(per.succeeded === n ? `all ${n} done` : `${per.succeeded} done`);
    if (per.failed) bits.push(`${per.failed} failed`);
    if (per.cancelled) bits.push(`${per.cancelled} cancelled`);
    if (!bits.length) bits.push(`${n} iterations`);
    return { title, status: bits.join(" · "), tooltip: `${g.id}: ${n} iterations (${countsText(per)})`, skipped: false };
  }
  const states = g.steps.map((n) => (run.byName.get(n) || {}).state);
  const skipped = states.length > 0 && states.every((st) => st === "skipped");
  if (g.kind === "condition") {
    const first = g.steps.map((n) => run.byName.get(n)).find((s) => s && s.state === "skipped" && s.reason);
    const branch = m.branch || (first && /^the (\w+) condition/.exec(first.reason)?.[1]) || "if";
    return { title: `${branch} · ${g.id}`, status: skipped ? "skipped" : "", tooltip: first ? first.reason : `${branch} branch ${g.id}`, skipped };
  }
  if (g.kind === "exit") return { title: `exit handler · ${g.id}`, status: "", tooltip: `Steps guarded by exit handler ${m.handler || ""}`.trim(), skipped };
  return { title: g.id, status: "", tooltip: g.id, skipped };
}

/** Summary node text of a collapsed loop's template: its copies' states. */
export function summaryOf(run, g, template) {
  const leaves = [];
  for (const names of g.iterations.values()) for (const n of names) if (g.templateOf.get(n) === template) leaves.push(n);
  const n = countStates(run, leaves);
  return { total: leaves.length, counts: n };
}

/** Mini stacked bar + icon counts, for a summary node. */
export function summaryParts(summary) {
  const order = ["succeeded", "cached", "running", "retrying", "failed", "cancelled", "skipped", "pending"];
  const bar = h("span", { class: "rv-summary-bar", "aria-hidden": "true" });
  for (const st of order) {
    if (!summary.counts[st]) continue;
    const seg = h("span", { class: `rv-seg rv-state-${st}` });
    seg.style.flexGrow = String(summary.counts[st]);
    bar.append(seg);
  }
  const text = STEP_ORDER.filter((st) => summary.counts[st])
    .map((st) => `${STATE_ICONS[st] || "●"}${summary.counts[st]}`).join("  ");
  return { bar, text };
}

/** The frames behind the nodes: one labelled rounded box per group, with a collapse toggle for loops. */
export class FrameLayer {
  constructor(world, { onToggle }) {
    this.onToggle = onToggle;
    this.el = h("div", { class: "rv-frames" });
    world.prepend(this.el);
    this.frames = new Map(); // group id → {el, title, status, toggle, sig}
  }

  rebuild(run, layout, groups, collapsed) {
    this.frames.clear();
    const els = [];
    for (const b of layout.blocks) {
      if (b.group) continue; // a group's block sits inside its frame
      const el = h("div", { class: "rv-block", "aria-hidden": "true" });
      Object.assign(el.style, { transform: `translate(${b.x - 8}px, ${b.y - 8}px)`, width: `${b.w + 16}px`, height: `${b.h + 16}px` });
      els.push(el);
    }
    for (const f of layout.frames) {
      const g = groups.get(f.group);
      if (!g) continue;
      const title = h("span", { class: "rv-frame-title" });
      const status = h("span", { class: "rv-frame-status" });
      const head = h("div", { class: "rv-frame-head" }, h("span", { class: "rv-frame-kind", "aria-hidden": "true", text: KIND_ICONS[g.kind] || "▢" }), title);
      if (g.kind === "for" && g.copies.length) {
        const isC = collapsed(g);
        head.append(h("button", { class: "rv-frame-toggle", type: "button", "aria-expanded": String(!isC),
          text: isC ? `Show ${g.iterations.size}` : "Collapse", onclick: () => this.onToggle(g.id, !isC) }));
      }
      const label = h("div", { class: "rv-frame-label" }, head, status);
      const el = h("div", { class: `rv-frame rv-frame-${g.kind}`, "data-group": g.id, role: "group" }, label);
      Object.assign(el.style, { transform: `translate(${f.x}px, ${f.y}px)`, width: `${f.w}px`, height: `${f.h}px` });
      this.frames.set(g.id, { el, title, status, g, sig: "" });
      els.push(el);
    }
    this.el.replaceChildren(...els);
    this.update(run, [...this.frames.keys()]);
  }

  /** Refresh the labels of the given groups (only DOM that changed). */
  update(run, ids) {
    for (const id of ids) {
      const f = this.frames.get(id);
      if (!f) continue;
      const lab = groupLabel(run, f.g);
      const sig = `${lab.title}|${lab.status}|${lab.tooltip}|${lab.skipped}`;
      if (sig === f.sig) continue;
      f.sig = sig;
      f.title.textContent = lab.title;
      f.status.textContent = lab.status;
      f.status.hidden = !lab.status;
      f.el.title = lab.tooltip;
      f.el.setAttribute("aria-label", `${lab.title}${lab.status ? `, ${lab.status}` : ""}`);
      f.el.classList.toggle("rv-frame-skipped", lab.skipped);
    }
  }
}
