// Artifact previews by type (the ``preview`` dict of ArtifactSaved / step outputs) as DOM nodes.
//
// Every string from a preview is untrusted: text goes through textContent / createTextNode only,
// HTML previews go into an iframe with an empty ``sandbox`` (no scripts, no same origin), and
// links and image URLs are checked against a scheme allowlist.
// Non-goals: fetching artifacts (``loadImage`` is the caller's), charts beyond ROC / heatmap.

import { formatBytes, formatValue } from "./run_view_state.js";

const SVG_NS = "http://www.w3.org/2000/svg";

export function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  if (attrs) {
    for (const [k, v] of Object.entries(attrs)) {
      if (v == null || v === false) continue;
      if (k === "class") el.className = v;
      else if (k === "text") el.textContent = v;
      else if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
      else el.setAttribute(k, v === true ? "" : String(v));
    }
  }
  for (const c of children) if (c != null && c !== false) el.append(c);
  return el;
}

export function svg(tag, attrs) {
  const el = document.createElementNS(SVG_NS, tag);
  for (const [k, v] of Object.entries(attrs || {})) el.setAttribute(k, String(v));
  return el;
}

function safeUrl(url, { image = false } = {}) {
  const s = String(url || "").trim();
  if (image && /^data:image\/(png|jpe?g|gif|webp|svg\+xml);/i.test(s)) return s;
  if (/^(https?:|blob:)/i.test(s)) return s;
  if (!image && /^(mailto:|#)/i.test(s)) return s;
  return null;
}

function formatCell(v) {
  if (v == null) return "";
  if (typeof v === "number") return Number.isInteger(v) ? String(v) : String(Number(v.toPrecision(6)));
  return typeof v === "string" ? v : formatValue(v, 200);
}

function renderJSON(value) {
  let text;
  try { text = JSON.stringify(value, null, 2); } catch { text = String(value); }
  return h("pre", { class: "rv-pre rv-json", text: text ?? "undefined" });
}

function renderTable(p) {
  const columns = Array.isArray(p.columns) ? p.columns : [];
  const rows = Array.isArray(p.rows) ? p.rows : [];
  const head = h("tr", null, ...columns.map((c) => h("th", { scope: "col", text: formatCell(c) })));
  const body = rows.map((r) => h("tr", null, ...(Array.isArray(r) ? r : [r]).map((v) =>
    h("td", { class: typeof v === "number" ? "rv-num" : null, text: formatCell(v) }))));
  const shape = Array.isArray(p.shape) ? p.shape : [rows.length, columns.length];
  const note = `${shape[0]} rows × ${shape[1]} columns${shape[0] > rows.length ? ` · first ${rows.length} shown` : ""}`;
  return h("div", { class: "rv-table-wrap" },
    h("table", { class: "rv-table" }, h("thead", null, head), h("tbody", null, ...body)),
    h("div", { class: "rv-caption", text: note }));
}

function renderArray(p) {
  const shape = Array.isArray(p.shape) ? p.shape.join(" × ") : "?";
  const box = h("div", { class: "rv-array" }, h("div", { class: "rv-caption", text: `array · ${shape} · ${p.dtype || "?"}` }));
  if (p.values != null) box.append(h("pre", { class: "rv-pre", text: formatValue(p.values, 4000) }));
  return box;
}

function renderMetrics(p) {
  const entries = Object.entries(p.metrics || {});
  return h("table", { class: "rv-table rv-metrics" }, h("tbody", null, ...entries.map(([k, v]) =>
    h("tr", null, h("th", { scope: "row", text: k }), h("td", { class: "rv-num", text: formatCell(v) })))));
}

function renderConfusion(p) {
  const cats = (p.categories || []).map(String);
  const m = Array.isArray(p.matrix) ? p.matrix : [];
  let max = 0;
  for (const row of m) for (const v of row || []) max = Math.max(max, Number(v) || 0);
  const table = h("table", { class: "rv-confusion", "aria-label": "Confusion matrix: rows actual, columns predicted" });
  table.append(h("tr", null, h("th", { class: "rv-confusion-corner", text: "actual \\ predicted" }),
    ...cats.map((c) => h("th", { scope: "col", text: c }))));
  m.forEach((row, i) => {
    const tr = h("tr", null, h("th", { scope: "row", text: cats[i] ?? String(i) }));
    (row || []).forEach((v, j) => {
      const heat = max ? (Number(v) || 0) / max : 0;
      const td = h("td", { class: `rv-cell${i === j ? " rv-diag" : ""}${heat > 0.55 ? " rv-hot" : ""}`, text: formatCell(v),
        title: `actual ${cats[i] ?? i}, predicted ${cats[j] ?? j}: ${v}` });
      td.style.setProperty("--rv-heat", `${Math.round(heat * 100)}%`);
      tr.append(td);
    });
    table.append(tr);
  });
  return h("div", { class: "rv-confusion-wrap" }, table);
}

function renderRoc(p) {
  const pts = (p.points || []).map((q) => [Number(q.fpr), Number(q.tpr)]).filter(([x, y]) => Number.isFinite(x) && Number.isFinite(y));
  pts.sort((a, b) => a[0] - b[0] || a[1] - b[1]);
  let auc = 0;
  for (let i = 1; i < pts.length; i += 1) auc += (pts[i][0] - pts[i - 1][0]) * (pts[i][1] + pts[i - 1][1]) / 2;
  const S = 200, L = 48, T = 8, W = L + S + 10, H = T + S + 30;
  const X = (v) => L + v * S, Y = (v) => T + (1 - v) * S;
  const root = svg("svg", { class: "rv-roc", viewBox: `0 0 ${W} ${H}`, width: W, height: H, role: "img",
    "aria-label": `ROC curve, AUC ${auc.toFixed(3)}` });
  for (const t of [0, 0.25, 0.5, 0.75, 1]) {
    root.append(svg("line", { class: "rv-roc-grid", x1: X(t), x2: X(t), y1: Y(0), y2: Y(1) }));
    root.append(svg("line", { class: "rv-roc-grid", x1: X(0), x2: X(1), y1: Y(t), y2: Y(t) }));
    const lx = svg("text", { class: "rv-roc-tick", x: X(t), y: Y(0) + 13, "text-anchor": "middle" });
    lx.textContent = String(t);
    const ly = svg("text", { class: "rv-roc-tick", x: X(0) - 5, y: Y(t) + 3, "text-anchor": "end" });
    ly.textContent = String(t);
    root.append(lx, ly);
  }
  root.append(svg("line", { class: "rv-roc-diagonal", x1: X(0), y1: Y(0), x2: X(1), y2: Y(1) }));
  if (pts.length) {
    root.append(svg("path", { class: "rv-roc-area", d: `M${X(pts[0][0])},${Y(0)} ${pts.map(([x, y]) => `L${X(x)},${Y(y)}`).join(" ")} L${X(pts[pts.length - 1][0])},${Y(0)} Z` }));
    root.append(svg("path", { class: "rv-roc-curve", d: pts.map(([x, y], i) => `${i ? "L" : "M"}${X(x).toFixed(1)},${Y(y).toFixed(1)}`).join(" ") }));
  }
  const xl = svg("text", { class: "rv-roc-label", x: X(0.5), y: H - 2, "text-anchor": "middle" });
  xl.textContent = "false positive rate";
  const yl = svg("text", { class: "rv-roc-label", x: 10, y: Y(0.5), "text-anchor": "middle", transform: `rotate(-90 10 ${Y(0.5)})` });
  yl.textContent = "true positive rate";
  root.append(xl, yl);
  return h("figure", { class: "rv-roc-wrap" }, root, h("figcaption", { class: "rv-caption", text: `AUC ${auc.toFixed(3)} · ${pts.length} points` }));
}

function renderImage(p, ctx) {
  const box = h("div", { class: "rv-image rv-loading" }, h("span", { class: "rv-caption", text: "Loading image…" }));
  const show = (url) => {
    const safe = safeUrl(url, { image: true });
    if (!safe) throw new Error("unsupported image URL");
    box.replaceChildren(h("img", { src: safe, alt: `image preview (${p.mime || "image"})`, loading: "lazy" }));
    box.classList.remove("rv-loading");
  };
  const fail = (err) => {
    box.classList.remove("rv-loading");
    box.replaceChildren(h("span", { class: "rv-caption", text: `Image not available: ${err && err.message ? err.message : err}` }));
  };
  const known = ctx.images && ctx.images()[p.digest];
  if (known) { try { show(known); } catch (e) { fail(e); } return box; }
  if (!ctx.loadImage) { fail("no image loader"); return box; }
  Promise.resolve().then(() => ctx.loadImage(p)).then(show).catch(fail);
  return box;
}

function renderHtml(p) {
  const frame = h("iframe", { class: "rv-html", sandbox: "", referrerpolicy: "no-referrer", title: "HTML preview (sandboxed)" });
  frame.srcdoc = String(p.html ?? "");
  return frame;
}

// Markdown: a small safe subset. Inline: `code`, **bold**, *italic* / _italic_, [text](url).
const INLINE = /(`[^`]+`)|(\*\*[^*]+\*\*)|(\*[^*\s][^*]*\*|_[^_\s][^_]*_)|(\[[^\]]+\]\([^)\s]+\))/;

function inline(text) {
  const frag = document.createDocumentFragment();
  let rest = text;
  while (rest) {
    const m = INLINE.exec(rest);
    if (!m) { frag.append(rest); break; }
    if (m.index) frag.append(rest.slice(0, m.index));
    const tok = m[0];
    if (m[1]) frag.append(h("code", { text: tok.slice(1, -1) }));
    else if (m[2]) frag.append(h("strong", null, inline(tok.slice(2, -2))));
    else if (m[3]) frag.append(h("em", null, inline(tok.slice(1, -1))));
    else {
      const [, label, url] = /^\[([^\]]+)\]\(([^)\s]+)\)$/.exec(tok);
      const href = safeUrl(url);
      frag.append(href ? h("a", { href, target: "_blank", rel: "noopener noreferrer" }, inline(label)) : label);
    }
    rest = rest.slice(m.index + tok.length);
  }
  return frag;
}

export function renderMarkdown(src) {
  const root = h("div", { class: "rv-markdown" });
  const lines = String(src ?? "").replace(/\r\n?/g, "\n").split("\n");
  let para = [], list = null;
  const flush = () => {
    if (para.length) root.append(h("p", null, inline(para.join(" "))));
    para = [];
    list = null;
  };
  for (let i = 0; i < lines.length; i += 1) {
    const line = lines[i];
    let m;
    if (/^```/.test(line)) {
      flush();
      const code = [];
      for (i += 1; i < lines.length && !/^```/.test(lines[i]); i += 1) code.push(lines[i]);
      root.append(h("pre", { class: "rv-pre" }, h("code", { text: code.join("\n") })));
    } else if ((m = /^(#{1,6})\s+(.*)$/.exec(line))) {
      flush();
      root.append(h(`h${Math.min(6, m[1].length + 2)}`, null, inline(m[2])));
    } else if ((m = /^\s*([-*+]|\d+[.)])\s+(.*)$/.exec(line))) {
      if (para.length) flush();
      const tag = /\d/.test(m[1]) ? "ol" : "ul";
      if (!list || list.tagName.toLowerCase() !== tag) { list = h(tag); root.append(list); }
      list.append(h("li", null, inline(m[2])));
    } else if (/^\s*$/.test(line)) {
      flush();
    } else if ((m = /^>\s?(.*)$/.exec(line))) {
      flush();
      root.append(h("blockquote", null, inline(m[1])));
    } else {
      list = null;
      para.push(line.trim());
    }
  }
  flush();
  return root;
}

/** Render ``preview`` (may be null) for output ``out`` ({kind, format, size}). */
export function renderPreview(preview, ctx = {}, out = {}) {
  const p = preview && typeof preview === "object" ? preview : null;
  if (!p) return h("div", { class: "rv-caption", text: `No preview${out.format ? ` (${out.format})` : ""}` });
  switch (p.type) {
    case "json": return renderJSON(p.value);
    case "text": return h("pre", { class: "rv-pre", text: String(p.text ?? "") });
    case "table": return renderTable(p);
    case "array": return renderArray(p);
    case "image": return renderImage(p, ctx);
    case "metrics": return renderMetrics(p);
    case "confusion_matrix": return renderConfusion(p);
    case "roc": return renderRoc(p);
    case "html": return renderHtml(p);
    case "markdown": return renderMarkdown(p.text);
    case "file": return h("div", { class: "rv-caption", text: `File · ${formatBytes(p.size ?? out.size) || "size unknown"}` });
    case "multi": return h("div", { class: "rv-multi" }, ...(p.items || []).map((it) => renderPreview(it, ctx, out)));
    default: return h("div", { class: "rv-caption", text: `No renderer for preview type ${formatValue(p.type)}` });
  }
}
