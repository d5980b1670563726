// Layered left-to-right layout of the step graph (Sugiyama style), computed once per graph shape.
//
// 1. layers by longest path from the sources; 2. long edges split by virtual points so they route
// around nodes; 3. barycenter sweeps (down and up) order each layer, keeping the ordering with the
// fewest crossings (counted by merge-sort inversions); 4. y positions pulled toward neighbours while
// keeping order and spacing, so chains come out straight.
// Non-goals: drawing, states, incremental layout (the graph shape of a run does not change).

export const NODE_W = 196;
export const NODE_H = 52;
const GAP_X = 64;
const GAP_Y = 16;
const VIRTUAL_H = 10;
const PAD = 24;
const SWEEPS = 6;

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

function positions(layers) {
  return layers.map((ids) => new Map(ids.map((id, i) => [id, i])));
}

function totalCrossings(layers, layerEdges) {
  const pos = positions(layers);
  let n = 0;
  for (let l = 0; l + 1 < layers.length; l += 1) n += crossingsBetween(layerEdges[l], pos[l], pos[l + 1]);
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
function placeLayer(ids, want, heights) {
  const y = ids.map((id) => want.get(id));
  for (let i = 1; i < ids.length; i += 1) {
    const min = y[i - 1] + heights.get(ids[i - 1]) / 2 + GAP_Y + heights.get(ids[i]) / 2;
    if (y[i] < min) y[i] = min;
  }
  // Shift the whole block so its mean error is zero (keeps a fan centred on its source).
  let err = 0;
  ids.forEach((id, i) => { err += want.get(id) - y[i]; });
  const shift = ids.length ? err / ids.length : 0;
  return y.map((v) => v + shift);
}

/**
 * Lay out ``steps`` ({name, upstream}). Returns {nodes: Map name→{x, y, layer}, edges: [{from, to,
 * points: [[x, y], …]}], width, height, crossings}. Node x/y is the top-left corner.
 */
export function layoutGraph(steps) {
  const byName = new Map(steps.map((s) => [s.name, s]));
  const { layer } = assignLayers(steps, byName);
  const nLayers = steps.length ? Math.max(...layer.values()) + 1 : 0;
  const layers = Array.from({ length: nLayers }, () => []);
  for (const s of steps) layers[layer.get(s.name)].push(s.name);
  const up = new Map(), down = new Map(), heights = new Map();
  const link = (a, b) => {
    if (!down.has(a)) down.set(a, []);
    if (!up.has(b)) up.set(b, []);
    down.get(a).push(b); up.get(b).push(a);
  };
  for (const s of steps) heights.set(s.name, NODE_H);
  const chains = [];
  const layerEdges = Array.from({ length: Math.max(0, nLayers - 1) }, () => []);
  for (const s of steps) {
    for (const u of new Set(s.upstream)) {
      if (!byName.has(u) || u === s.name) continue;
      const lu = layer.get(u), lv = layer.get(s.name);
      if (lv <= lu) { chains.push({ from: u, to: s.name, ids: [u, s.name] }); continue; } // cycle: draw back-edge directly
      const ids = [u];
      for (let l = lu + 1; l < lv; l += 1) {
        const vid = `\u0000${u}\u0000${s.name}\u0000${l}`;
        layers[l].push(vid);
        heights.set(vid, VIRTUAL_H);
        ids.push(vid);
      }
      ids.push(s.name);
      for (let i = 0; i + 1 < ids.length; i += 1) { link(ids[i], ids[i + 1]); layerEdges[lu + i].push([ids[i], ids[i + 1]]); }
      chains.push({ from: u, to: s.name, ids });
    }
  }
  const ordered = orderLayers(layers, up, down, layerEdges);
  // Initial y: stack each layer, centred on the tallest layer.
  const ys = new Map();
  const stackHeight = (ids) => ids.reduce((h, id) => h + heights.get(id), 0) + GAP_Y * Math.max(0, ids.length - 1);
  const tallest = Math.max(0, ...ordered.layers.map(stackHeight));
  for (const ids of ordered.layers) {
    let y = (tallest - stackHeight(ids)) / 2;
    for (const id of ids) { ys.set(id, y + heights.get(id) / 2); y += heights.get(id) + GAP_Y; }
  }
  // Relax: alternate pulling layers toward upstream and downstream neighbours.
  for (let it = 0; it < 4; it += 1) {
    const downward = it % 2 === 0;
    const order = downward ? ordered.layers : ordered.layers.slice().reverse();
    for (const ids of order) {
      const want = new Map(ids.map((id) => {
        const ns = (downward ? up : down).get(id) || [];
        return [id, ns.length ? ns.reduce((a, n) => a + ys.get(n), 0) / ns.length : ys.get(id)];
      }));
      placeLayer(ids, want, heights).forEach((y, i) => ys.set(ids[i], y));
    }
  }
  let minY = Infinity, maxY = -Infinity;
  for (const [id, y] of ys) { minY = Math.min(minY, y - heights.get(id) / 2); maxY = Math.max(maxY, y + heights.get(id) / 2); }
  if (!Number.isFinite(minY)) { minY = 0; maxY = 0; }
  const cx = (l) => PAD + l * (NODE_W + GAP_X);
  const cy = (id) => PAD + ys.get(id) - minY;
  const nodes = new Map();
  for (const s of steps) {
    const l = layer.get(s.name);
    nodes.set(s.name, { x: cx(l), y: cy(s.name) - NODE_H / 2, layer: l, order: ordered.layers[l].indexOf(s.name) });
  }
  const edges = chains.map(({ from, to, ids }) => {
    const points = [[nodes.get(from).x + NODE_W, cy(from)]];
    for (const vid of ids.slice(1, -1)) {
      const l = Number(vid.split("\u0000")[3]);
      points.push([cx(l), cy(vid)], [cx(l) + NODE_W, cy(vid)]);
    }
    points.push([nodes.get(to).x, cy(to)]);
    return { from, to, points };
  });
  return {
    nodes, edges, layers: ordered.layers.map((ids) => ids.filter((id) => byName.has(id))), crossings: ordered.crossings,
    width: PAD * 2 + Math.max(0, nLayers * (NODE_W + GAP_X) - GAP_X), height: PAD * 2 + (maxY - minY),
  };
}

/** SVG path through ``points``: horizontal S-curves between columns, straight runs across virtual points. */
export function edgePath(points) {
  const f = (v) => Math.round(v * 10) / 10;
  let d = `M${f(points[0][0])},${f(points[0][1])}`;
  for (let i = 1; i < points.length; i += 1) {
    const [x0, y0] = points[i - 1], [x1, y1] = points[i];
    if (i % 2 === 0) { d += ` L${f(x1)},${f(y1)}`; continue; } // across a virtual point (same y)
    const dx = Math.max(24, (x1 - x0) / 2);
    d += ` C${f(x0 + dx)},${f(y0)} ${f(x1 - dx)},${f(y1)} ${f(x1)},${f(y1)}`;
  }
  return d;
}
