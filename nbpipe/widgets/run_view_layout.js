// Layered left-to-right layout of the step graph (Sugiyama style), computed once per graph shape;
// top-to-bottom (``vertical``) for a narrow canvas such as the Lab side panel: the same layout
// computed with the axes swapped, so labels stay readable instead of a row of slivers.
//
// 1. layers by longest path from the sources; 2. long edges split by virtual points so they route
// around nodes; 3. barycenter sweeps (down and up) order each layer, keeping the ordering with the
// fewest crossings (counted by merge-sort inversions); 4. y positions pulled toward neighbours while
// keeping order and spacing, so chains come out straight. Very wide layers wrap into grid blocks
// whose edges are bundled into trunks; a group's steps stay together and get a frame.
// Non-goals: drawing, states, incremental layout (the graph shape of a run does not change).

export const NODE_W = 196;
export const NODE_H = 52;
const GAP_X = 64;
const GAP_Y = 16;
const VIRTUAL_H = 10;
const PAD = 24;
const GRID_GAP_X = 14; // between the columns of a wrapped layer's grid block
const GRID_GAP_Y = 10;
export const WRAP_AT = 16; // more steps of one group in one layer than this wrap into a grid block
export const FRAME_PAD = 12; // group frame: padding around its steps
export const FRAME_LABEL = 36; // ...and the strip on top that holds its label
const SWEEPS = 6;
const ROW_GAP = 56; // between the rows of a wrapped long graph (``rows``)

/** Longest-path layer per step; steps on a cycle (which the compiler forbids) go after the rest. */
function assignLayers(steps, byName) {
  const indeg = new Map(), down = new Map(), layer = new Map();
  for (const s of steps) { indeg.set(s.name, 0); down.set(s.name, []); }
  for (const s of steps) {
    for (const u of new Set(s.upstream)) {
      if (!byName.has(u) || u === s.name) continue;
      indeg.set(s.name, indeg.get(s.name) + 1);
      down.get(u).push(s.name);
    }
  }
  const queue = steps.filter((s) => indeg.get(s.name) === 0).map((s) => s.name);
  for (const n of queue) layer.set(n, 0);
  for (let i = 0; i < queue.length; i += 1) {
    const n = queue[i];
    for (const d of down.get(n)) {
      layer.set(d, Math.max(layer.get(d) ?? 0, layer.get(n) + 1));
      indeg.set(d, indeg.get(d) - 1);
      if (indeg.get(d) === 0) queue.push(d);
    }
  }
  let top = 0;
  for (const v of layer.values()) top = Math.max(top, v);
  for (const s of steps) if (!layer.has(s.name)) layer.set(s.name, top + 1);
  return { layer, down };
}

/** Count crossings between two adjacent layers: inversions of target positions, sorted by source. */
function crossingsBetween(edges, posA, posB) {
  const seq = edges.map(([a, b]) => [posA.get(a), posB.get(b)]).sort((p, q) => p[0] - q[0] || p[1] - q[1]).map((p) => p[1]);
  const tmp = new Array(seq.length);
  const sort = (lo, hi) => {
    if (hi - lo < 2) return 0;
    const mid = (lo + hi) >> 1;
    let n = sort(lo, mid) + sort(mid, hi), i = lo, j = mid, k = lo;
    while (i < mid && j < hi) {
      if (seq[i] <= seq[j]) tmp[k++] = seq[i++];
      else { tmp[k++] = seq[j++]; n += mid - i; }
    }
    while (i < mid) tmp[k++] = seq[i++];
    while (j < hi) tmp[k++] = seq[j++];
    for (let t = lo; t < hi; t += 1) seq[t] = tmp[t];
    return n;
  };
  return sort(0, seq.length);
}

function totalCrossings(layers, layerEdges) {
  const pos = new Map(); // item ids are unique across layers: one map of positions serves all of them
  for (const ids of layers) ids.forEach((id, i) => pos.set(id, i));
  let n = 0;
  for (let l = 0; l + 1 < layers.length; l += 1) if (layerEdges[l].length > 1) n += crossingsBetween(layerEdges[l], pos, pos);
  return n;
}

/** Reorder layer ``l`` by the mean position of its neighbours in the fixed layer. */
function sweepLayer(ids, neighbours, fixedPos) {
  const keyed = ids.map((id, i) => {
    const ns = neighbours.get(id) || [];
    let sum = 0, n = 0;
    for (const x of ns) { const p = fixedPos.get(x); if (p != null) { sum += p; n += 1; } }
    return { id, key: n ? sum / n : i, i };
  });
  keyed.sort((a, b) => a.key - b.key || a.i - b.i);
  return keyed.map((k) => k.id);
}

function orderLayers(layers, up, down, layerEdges) {
  let best = layers.map((l) => l.slice()), bestN = totalCrossings(best, layerEdges);
  let cur = best.map((l) => l.slice());
  for (let it = 0; it < SWEEPS && bestN > 0; it += 1) {
    const downward = it % 2 === 0;
    const range = downward ? [...cur.keys()].slice(1) : [...cur.keys()].reverse().slice(1);
    for (const l of range) {
      const fixed = new Map(cur[downward ? l - 1 : l + 1].map((id, i) => [id, i]));
      cur[l] = sweepLayer(cur[l], downward ? up : down, fixed);
    }
    const n = totalCrossings(cur, layerEdges);
    if (n < bestN) { bestN = n; best = cur.map((l) => l.slice()); }
  }
  return { layers: best, crossings: bestN };
}

/** Place one layer: pull each item toward ``want`` then resolve overlaps keeping order. */
function placeLayer(ids, want, heights, gap) {
  const y = want.slice();
  for (let i = 1; i < ids.length; i += 1) {
    const min = y[i - 1] + heights.get(ids[i - 1]) / 2 + gap(ids[i - 1], ids[i]) + heights.get(ids[i]) / 2;
    if (y[i] < min) y[i] = min;
  }
  // Shift the whole block so its mean error is zero (keeps a fan centred on its source).
  let err = 0;
  ids.forEach((id, i) => { err += want[i] - y[i]; });
  const shift = ids.length ? err / ids.length : 0;
  return y.map((v) => v + shift);
}

/** Columns of a grid block of ``n`` steps whose own width:height comes out near ``aspect``. */
function gridColumns(n, aspect) {
  const cellW = NODE_W + GRID_GAP_X, cellH = NODE_H + GRID_GAP_Y;
  return Math.max(1, Math.min(n, Math.ceil(Math.sqrt((n * cellH * aspect) / cellW))));
}

/** Keep each group's items next to each other in a layer (its frame must not enclose strangers). */
function keepGroupsTogether(ids, groupOf) {
  if (ids.length < 2 || !ids.some((id) => groupOf(id))) return ids;
  const first = new Map();
  ids.forEach((id, i) => { const g = groupOf(id) || `\u0003${id}`; if (!first.has(g)) first.set(g, i); });
  return ids.map((id, i) => ({ id, i, k: first.get(groupOf(id) || `\u0003${id}`) })).sort((a, b) => a.k - b.k || a.i - b.i).map((e) => e.id);
}

/**
 * A group spanning several layers gets one frame over all of them: in each of those layers, push
 * the other items (steps, edge points) above or below the frame's band, keeping their order.
 */
function keepOutOfFrames(layers, ys, heights, groupOf, gap) {
  const spans = new Map();
  layers.forEach((ids, l) => ids.forEach((id) => {
    const g = groupOf(id);
    if (!g) return;
    const half = heights.get(id) / 2, y = ys.get(id);
    if (!spans.has(g)) spans.set(g, { top: Infinity, bottom: -Infinity, layers: new Set() });
    const sp = spans.get(g);
    sp.top = Math.min(sp.top, y - half); sp.bottom = Math.max(sp.bottom, y + half); sp.layers.add(l);
  }));
  for (const [g, sp] of spans) {
    if (sp.layers.size < 2) continue;
    for (const l of sp.layers) {
      const ids = layers[l];
      const first = ids.findIndex((id) => groupOf(id) === g), last = ids.findLastIndex((id) => groupOf(id) === g);
      let limit = sp.top - FRAME_PAD - FRAME_LABEL; // bottom edge allowed for the item above
      for (let i = first - 1; i >= 0; i -= 1) {
        const half = heights.get(ids[i]) / 2, room = gap(ids[i], ids[i + 1]) - (i + 1 === first ? FRAME_PAD + FRAME_LABEL : 0);
        if (ys.get(ids[i]) + half > limit - Math.max(GAP_Y, room)) ys.set(ids[i], limit - Math.max(GAP_Y, room) - half);
        limit = ys.get(ids[i]) - half;
      }
      limit = sp.bottom + FRAME_PAD;
      for (let i = last + 1; i < ids.length; i += 1) {
        const half = heights.get(ids[i]) / 2, room = gap(ids[i - 1], ids[i]) - (i - 1 === last ? FRAME_PAD : 0);
        if (ys.get(ids[i]) - half < limit + Math.max(GAP_Y, room)) ys.set(ids[i], limit + Math.max(GAP_Y, room) + half);
        limit = ys.get(ids[i]) + half;
      }
    }
  }
}

/**
 * Lay out ``steps`` ({name, upstream, group}). Returns {nodes: Map name→{x, y, layer}, edges: [{from,
 * to, sources, targets, points: [[x, y], …]}], blocks, frames, layers, width, height, crossings}.
 * Node x/y is the top-left corner.
 *
 * A layer holding more than ``wrapAt`` steps of one group (a 500-way fan-out, a loop's iterations)
 * becomes one grid *block* of about ``aspect`` width:height (at most ``maxCols`` columns), and all
 * edges between the same two items (step or block) are drawn as one trunk, so "fit" can show the
 * whole run. ``vertical``: layers top to bottom (a narrow canvas passes a small ``wrapAt`` and
 * ``maxCols``, so a layer becomes a column of readable steps instead of a row too wide to read).
 */
export function layoutGraph(steps, { aspect = 2.5, wrapAt = WRAP_AT, vertical = false, maxCols = Infinity, rows = false } = {}) {
  // Layout space: layers along x, a layer's items along y. Vertical: computed there with each
  // node's width and height swapped, then x and y swapped back (see ``toReal`` below).
  const NW = vertical ? NODE_H : NODE_W, NH = vertical ? NODE_W : NODE_H;
  const byName = new Map(steps.map((s) => [s.name, s]));
  const index = new Map(steps.map((s, i) => [s.name, i]));
  const { layer } = assignLayers(steps, byName);
  const nLayers = steps.length ? Math.max(...layer.values()) + 1 : 0;
  // Items: a step, or a block of one layer's steps of one group; virtual points of long edges.
  const itemOf = new Map(), itemLayer = new Map(), itemGroup = new Map(), size = new Map(), members = new Map();
  const layers = Array.from({ length: nLayers }, () => []);
  const byLayerGroup = Array.from({ length: nLayers }, () => new Map());
  for (const s of steps) {
    const m = byLayerGroup[layer.get(s.name)], g = s.group || "";
    if (!m.has(g)) m.set(g, []);
    m.get(g).push(s.name);
  }
  byLayerGroup.forEach((m, l) => {
    for (const [g, names] of m) {
      const wrap = names.length > wrapAt;
      const ids = wrap ? [`\u0001${l}\u0001${g}`] : names;
      if (wrap) {
        const cols = Math.max(1, Math.min(maxCols, gridColumns(names.length, aspect))), rows = Math.ceil(names.length / cols);
        members.set(ids[0], names);
        const realW = cols * (NODE_W + GRID_GAP_X) - GRID_GAP_X, realH = rows * (NODE_H + GRID_GAP_Y) - GRID_GAP_Y;
        size.set(ids[0], vertical ? { w: realH, h: realW, cols } : { w: realW, h: realH, cols });
        for (const n of names) itemOf.set(n, ids[0]);
      } else {
        for (const n of names) { itemOf.set(n, n); size.set(n, { w: NW, h: NH }); }
      }
      for (const id of ids) { layers[l].push(id); itemLayer.set(id, l); itemGroup.set(id, g); }
    }
  });
  // Item edges: every step edge between the same two items shares one trunk.
  const bundles = new Map();
  for (const s of steps) {
    for (const u of new Set(s.upstream)) {
      if (!byName.has(u) || u === s.name) continue;
      const a = itemOf.get(u), b = itemOf.get(s.name), key = `${a}\u0002${b}`;
      if (!bundles.has(key)) bundles.set(key, { a, b, sources: new Set(), targets: new Set() });
      bundles.get(key).sources.add(u);
      bundles.get(key).targets.add(s.name);
    }
  }
  const up = new Map(), down = new Map(), vLayer = new Map();
  const link = (a, b) => {
    if (!down.has(a)) down.set(a, []);
    if (!up.has(b)) up.set(b, []);
    down.get(a).push(b); up.get(b).push(a);
  };
  const chains = [];
  const layerEdges = Array.from({ length: Math.max(0, nLayers - 1) }, () => []);
  for (const { a, b, sources, targets } of bundles.values()) {
    const la = itemLayer.get(a), lb = itemLayer.get(b);
    const ids = [a];
    if (lb > la) {
      for (let l = la + 1; l < lb; l += 1) {
        const vid = `\u0000${a}\u0000${b}\u0000${l}`;
        layers[l].push(vid);
        size.set(vid, { w: 0, h: VIRTUAL_H });
        vLayer.set(vid, l);
        itemGroup.set(vid, "");
        ids.push(vid);
      }
    }
    ids.push(b);
    if (lb > la) for (let i = 0; i + 1 < ids.length; i += 1) { link(ids[i], ids[i + 1]); layerEdges[la + i].push([ids[i], ids[i + 1]]); }
    chains.push({ ids, sources: [...sources], targets: [...targets] }); // lb <= la: a back-edge (cycle), drawn directly
  }
  const groupOf = (id) => itemGroup.get(id) || "";
  const ordered = orderLayers(layers, up, down, layerEdges);
  ordered.layers = ordered.layers.map((ids) => keepGroupsTogether(ids, groupOf));
  ordered.crossings = totalCrossings(ordered.layers, layerEdges);
  const heights = new Map([...size].map(([id, sz]) => [id, sz.h]));
  // Between two groups leave room for frame padding, and for the label strip of the lower frame.
  const gap = (a, b) => {
    const ga = groupOf(a), gb = groupOf(b);
    return ga === gb ? (members.has(a) || members.has(b) ? GAP_Y * 2 : GAP_Y) : GAP_Y + (ga ? FRAME_PAD : 0) + (gb ? FRAME_PAD + FRAME_LABEL : 0);
  };
  const ys = new Map();
  const stackHeight = (ids) => ids.reduce((t, id, i) => t + heights.get(id) + (i ? gap(ids[i - 1], id) : 0), 0);
  const tallest = Math.max(0, ...ordered.layers.map(stackHeight));
  for (const ids of ordered.layers) {
    let y = (tallest - stackHeight(ids)) / 2;
    ids.forEach((id, i) => { if (i) y += gap(ids[i - 1], id); ys.set(id, y + heights.get(id) / 2); y += heights.get(id); });
  }
  // Relax: alternate pulling layers toward upstream and downstream neighbours, ending with a pull
  // toward upstream so a chain (and a group spanning layers) comes out level.
  for (let it = 0; it < 5; it += 1) {
    const downward = it % 2 === 0;
    const order = downward ? ordered.layers : ordered.layers.slice().reverse();
    for (const ids of order) {
      const want = ids.map((id) => {
        const ns = (downward ? up : down).get(id) || [];
        return ns.length ? ns.reduce((t, n) => t + ys.get(n), 0) / ns.length : ys.get(id);
      });
      placeLayer(ids, want, heights, gap).forEach((y, i) => ys.set(ids[i], y));
    }
  }
  keepOutOfFrames(ordered.layers, ys, heights, groupOf, gap);
  // x: each layer as wide as its widest item; narrower items centred in it.
  const layerW = ordered.layers.map((ids) => Math.max(NW, ...ids.map((id) => size.get(id).w)));
  const layerX = [];
  layerW.forEach((w, l) => layerX.push(l ? layerX[l - 1] + layerW[l - 1] + GAP_X : 0));
  const box = (id) => {
    const l = itemLayer.get(id), sz = size.get(id);
    return { x: layerX[l] + (layerW[l] - sz.w) / 2, y: ys.get(id) - sz.h / 2, w: sz.w, h: sz.h };
  };
  const nodes = new Map(), blocks = [], rank = new Map();
  ordered.layers.forEach((ids, l) => {
    ids.forEach((id, i) => {
      if (!byName.has(id) && !members.has(id)) return;
      if (byName.has(id)) { const b = box(id); nodes.set(id, { x: b.x, y: b.y, layer: l, order: i }); rank.set(id, 0); return; }
      // A block: order its steps like their upstream steps (so chained loops line up), then as given.
      const b = box(id), cols = size.get(id).cols;
      const key = (n) => { const r = byName.get(n).upstream.map((u) => rank.get(u)).filter((v) => v != null); return r.length ? Math.min(...r) : 0; };
      const names = members.get(id).map((n) => ({ n, k: key(n), i: index.get(n) })).sort((p, q) => p.k - q.k || p.i - q.i).map((e) => e.n);
      names.forEach((n, j) => {
        const across = (j % cols) * (NODE_W + GRID_GAP_X), down = Math.floor(j / cols) * (NODE_H + GRID_GAP_Y);
        // Vertical: the block's real columns run along layout-space y (swapped back below).
        nodes.set(n, vertical ? { x: b.x + down, y: b.y + across, layer: l, order: i } : { x: b.x + across, y: b.y + down, layer: l, order: i });
        rank.set(n, j);
      });
      blocks.push({ id, group: groupOf(id), layer: l, members: names, ...b });
    });
  });
  const edges = chains.map(({ ids, sources, targets }) => {
    const a = box(ids[0]), b = box(ids[ids.length - 1]);
    const la = itemLayer.get(ids[0]), lb = itemLayer.get(ids[ids.length - 1]);
    const points = [[a.x + a.w, a.y + a.h / 2]];
    // An item narrower than its layer (beside a grid block) leaves and enters it in a straight line.
    if (lb > la && a.x + a.w < layerX[la] + layerW[la] - 1) points.push([layerX[la] + layerW[la], a.y + a.h / 2]);
    for (const vid of ids.slice(1, -1)) {
      const l = vLayer.get(vid);
      points.push([layerX[l], ys.get(vid)], [layerX[l] + layerW[l], ys.get(vid)]);
    }
    if (lb > la && b.x > layerX[lb] + 1) points.push([layerX[lb], b.y + b.h / 2]);
    points.push([b.x, b.y + b.h / 2]);
    return { from: sources.length === 1 ? sources[0] : ids[0], to: targets.length === 1 ? targets[0] : ids[ids.length - 1], sources, targets, points };
  });
  if (rows && !vertical) wrapRows(nodes, blocks, edges, layerX, layerW, aspect);
  if (vertical) { // back to real space: swap the axes of everything placed so far
    for (const p of nodes.values()) { const x = p.x; p.x = p.y; p.y = x; }
    for (const b of blocks) { const { x, y, w, h: bh } = b; Object.assign(b, { x: y, y: x, w: bh, h: w }); }
    for (const e of edges) e.points = e.points.map(([x, y]) => [y, x]);
  }
  // Group frames: around each group's steps, with a label strip on top.
  const frames = [];
  const grouped = new Map();
  for (const s of steps) if (s.group) { if (!grouped.has(s.group)) grouped.set(s.group, []); grouped.get(s.group).push(s.name); }
  for (const [group, names] of grouped) {
    let x0 = Infinity, y0 = Infinity, x1 = -Infinity, y1 = -Infinity;
    for (const n of names) { const p = nodes.get(n); x0 = Math.min(x0, p.x); y0 = Math.min(y0, p.y); x1 = Math.max(x1, p.x + NODE_W); y1 = Math.max(y1, p.y + NODE_H); }
    frames.push({ group, x: x0 - FRAME_PAD, y: y0 - FRAME_PAD - FRAME_LABEL, w: x1 - x0 + 2 * FRAME_PAD, h: y1 - y0 + 2 * FRAME_PAD + FRAME_LABEL, steps: names });
  }
  // Move everything so the drawing starts at PAD.
  let minX = Infinity, minY = Infinity, maxX = -Infinity, maxY = -Infinity;
  const extend = (x, y, w, h) => { minX = Math.min(minX, x); minY = Math.min(minY, y); maxX = Math.max(maxX, x + w); maxY = Math.max(maxY, y + h); };
  for (const p of nodes.values()) extend(p.x, p.y, NODE_W, NODE_H);
  for (const f of frames) extend(f.x, f.y, f.w, f.h);
  for (const e of edges) for (const [x, y] of e.points) extend(x, y, 0, 0);
  if (!Number.isFinite(minX)) { minX = minY = maxX = maxY = 0; }
  const dx = PAD - minX, dy = PAD - minY;
  for (const p of nodes.values()) { p.x += dx; p.y += dy; }
  for (const r of [...blocks, ...frames]) { r.x += dx; r.y += dy; }
  for (const e of edges) e.points = e.points.map(([x, y]) => [x + dx, y + dy]);
  const realLayers = ordered.layers.map((ids) => ids.flatMap((id) => (members.has(id) ? blocks.find((b) => b.id === id).members : byName.has(id) ? [id] : [])));
  return {
    nodes, edges, blocks, frames, layers: realLayers, crossings: ordered.crossings, vertical,
    width: maxX - minX + 2 * PAD, height: maxY - minY + 2 * PAD,
  };
}

/**
 * A very long graph (a 10,000-step chain is 2.6 million pixels wide) is cut into rows of
 * consecutive layers stacked top to bottom, like lines of text, so that fitting it shows a page
 * rather than a sliver. An edge that goes on to the next row turns down into the gap between the
 * rows and comes back in from the left (``routed``: drawn with straight segments).
 */
function wrapRows(nodes, blocks, edges, layerX, layerW, aspect) {
  const n = layerX.length;
  if (n < 3) return;
  let top = Infinity, bottom = -Infinity;
  for (const p of nodes.values()) { top = Math.min(top, p.y); bottom = Math.max(bottom, p.y + NODE_H); }
  for (const e of edges) for (const [, y] of e.points) { top = Math.min(top, y); bottom = Math.max(bottom, y); }
  const H = bottom - top + ROW_GAP, total = layerX[n - 1] + layerW[n - 1];
  const nRows = Math.floor(Math.sqrt(total / (H * aspect)));
  if (nRows < 2) return;
  const width = total / nRows, bandOf = new Array(n), start = [];
  for (let l = 0; l < n; l += 1) {
    if (!start.length || layerX[l] + layerW[l] - start[start.length - 1] > width) start.push(layerX[l]);
    bandOf[l] = start.length - 1;
  }
  const band = (x) => { // last band starting at or before x
    let lo = 0, hi = start.length - 1;
    while (lo < hi) { const mid = (lo + hi + 1) >> 1; if (start[mid] <= x + 0.5) lo = mid; else hi = mid - 1; }
    return lo;
  };
  for (const p of nodes.values()) { const b = bandOf[p.layer]; p.x -= start[b]; p.y += b * H; }
  for (const bl of blocks) { const b = bandOf[bl.layer]; bl.x -= start[b]; bl.y += b * H; }
  for (const e of edges) {
    const out = [];
    let prev = null;
    for (const [x, y] of e.points) {
      const b = band(x), q = [x - start[b], y + b * H];
      if (prev && b !== prev.b) {
        const gapY = bottom + Math.min(b, prev.b) * H + ROW_GAP / 2;
        out.push([prev.q[0] + GAP_X / 2, prev.q[1]], [prev.q[0] + GAP_X / 2, gapY], [q[0] - GAP_X / 2, gapY], [q[0] - GAP_X / 2, q[1]]);
        e.routed = true;
      }
      out.push(q);
      prev = { b, q };
    }
    e.points = out;
  }
}

/**
 * SVG path through ``points``: straight runs where y stays (virtual points), horizontal S-curves
 * between; ``vertical`` layouts flow downward, so there x stays on straight runs and curves are vertical.
 */
export function edgePath(points, vertical = false, straight = false) {
  const f = (v) => Math.round(v * 10) / 10;
  let d = `M${f(points[0][0])},${f(points[0][1])}`;
  if (straight) return d + points.slice(1).map(([x, y]) => ` L${f(x)},${f(y)}`).join("");
  for (let i = 1; i < points.length; i += 1) {
    const [x0, y0] = points[i - 1], [x1, y1] = points[i];
    if (vertical) {
      if (Math.abs(x1 - x0) < 0.5) { d += ` L${f(x1)},${f(y1)}`; continue; }
      const dy = Math.max(16, (y1 - y0) / 2);
      d += ` C${f(x0)},${f(y0 + dy)} ${f(x1)},${f(y1 - dy)} ${f(x1)},${f(y1)}`;
      continue;
    }
    if (Math.abs(y1 - y0) < 0.5) { d += ` L${f(x1)},${f(y1)}`; continue; }
    const dx = Math.max(24, (x1 - x0) / 2);
    d += ` C${f(x0 + dx)},${f(y0)} ${f(x1 - dx)},${f(y1)} ${f(x1)},${f(y1)}`;
  }
  return d;
}
