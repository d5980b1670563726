"""A static picture of a run for the notebook file: an SVG graph and a one-line summary.

``RunView`` puts these next to its widget view in the output it displays (and updates them when
the run changes state), so a saved notebook shows the run's last state where the live widget
cannot run: on GitHub and nbviewer, and in JupyterLab after a kernel restart (the nbpipe Lab
extension shows the snapshot instead of "model not found" and offers to re-connect).

The SVG is self-contained (no script, no external CSS or fonts, no links), so it renders as an
image anywhere. Loops collapse like in the live view: a loop with more than ``COLLAPSE_AT``
iterations is one summary node with per-state counts. Graphs with many nodes switch to a compact
layout (small state-coloured chips per layer, no edges) so 500 steps stay readable and small.

Non-goals: interaction (the live widget does that), matching the live view pixel for pixel.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from typing import Any

MIME = "application/vnd.nbpipe.run-snapshot+json"
COLLAPSE_AT = 12  # as run_view_groups.js: a loop with more iterations starts collapsed
COMPACT_AT = 60  # more visible nodes than this: the compact layout
STATE_ORDER = ("running", "retrying", "pending", "succeeded", "cached", "failed", "cancelled", "skipped")
ICONS = {"pending": "○", "queued": "○", "running": "●", "retrying": "↻", "succeeded": "✓", "cached": "⚡",
         "failed": "✗", "cancelled": "⊘", "skipped": "↷"}
COLORS = {"pending": "#8c959f", "queued": "#8c959f", "running": "#1f6feb", "retrying": "#b35900",
          "succeeded": "#1a7f37", "cached": "#0e8a8a", "failed": "#cf222e", "cancelled": "#8c959f",
          "skipped": "#8c959f"}
_CLS = {"pending": "p", "queued": "q", "running": "r", "retrying": "y", "succeeded": "s", "cached": "c",
        "failed": "f", "cancelled": "x", "skipped": "k"}  # short CSS classes: 500 chips stay small
GROUP_ICONS = {"condition": "◇", "exit": "↳"}  # as run_view_groups.js marks those frames
_COPY = re.compile(r"^(.*)-it(\d+)$")
_BAD_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")
FONT = "-apple-system,BlinkMacSystemFont,'Segoe UI',Helvetica,Arial,sans-serif"

# full layout: node boxes with edges
NODE_W, NODE_H, COL_GAP, ROW_GAP = 196, 44, 44, 10
# compact layout: chips per layer, wrapped into sub-columns
CHIP_W, CHIP_H, CHIP_ROWS = 132, 16, 20
HEAD_H, PAD = 46, 12


def mark_floats(snap: dict[str, Any]) -> dict[str, Any]:
    """Name the run's float parameters in ``snap`` (``float_params``): JSON turns ``1.0`` into the
    JS number 1, so the views would show ``c = 1`` for a float without this."""
    params = snap.get("params") or {}
    snap["float_params"] = [k for k, v in params.items() if isinstance(v, float)]
    return snap


def _x(text: Any) -> str:
    """``text`` safe inside an XML element or a double-quoted attribute."""
    s = _BAD_XML.sub("", str(text))
    return s.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace('"', "&quot;")


def _cls(state: str) -> str:
    return _CLS.get(state, "p")


def _clip(text: str, n: int) -> str:
    return text if len(text) <= n else text[: n - 1] + "…"


def fmt_duration(seconds: Any) -> str:
    """``129 ms``, ``5.6 s``, ``2 min 5 s``, ``1 h 3 min`` (as the live view); empty for no duration."""
    if not isinstance(seconds, (int, float)) or isinstance(seconds, bool) or not math.isfinite(seconds) or seconds < 0:
        return ""
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    if seconds < 60:
        return f"{seconds:.1f} s"
    m, s = divmod(int(round(seconds)), 60)
    if m < 60:
        return f"{m} min {s} s" if s else f"{m} min"
    h, m = divmod(m, 60)
    return f"{h} h {m} min" if m else f"{h} h"


def _counts(states: list[str]) -> str:
    c = Counter(states)
    return ", ".join(f"{c[s]} {s}" for s in STATE_ORDER if c[s]) + "".join(
        f", {n} {s}" for s, n in c.items() if s not in STATE_ORDER)


def summary(snap: dict[str, Any]) -> str:
    """One line for ``text/plain``: ``nbpipe run r1 digits: succeeded in 5.6 s (4 steps: 4 succeeded)``."""
    steps = snap.get("steps") or []
    state = str(snap.get("state") or "queued")
    name = str(snap.get("name") or snap.get("pipeline") or "")
    head = f"nbpipe run {snap.get('id', '')}" + (f" {name}" if name else "")
    took = fmt_duration(snap.get("duration"))
    if state in ("succeeded", "failed", "cancelled"):
        what = f"{state} in {took}" if took else state
    else:
        what = state
    reason = str(snap.get("reason") or "").strip().splitlines()
    tail = f" — {_clip(reason[0], 120)}" if state in ("failed", "cancelled") and reason else ""
    n = len(steps)
    return f"{head}: {what} ({n} step{'s' if n != 1 else ''}: {_counts([str(s.get('state')) for s in steps]) or 'none'}){tail}"


# ---------------------------------------------------------------------------------- graph model


def _nodes(snap: dict[str, Any]) -> list[dict[str, Any]]:
    """Visible nodes in step order: steps, with big loops folded into their template.

    Each node: name, label, state, meta (second line), upstream (visible names), title (tooltip).
    """
    steps = [s for s in snap.get("steps") or [] if isinstance(s, dict) and s.get("name")]
    groups = {str(g["id"]): g for g in snap.get("groups") or [] if isinstance(g, dict) and g.get("id")}
    by_name = {str(s["name"]): s for s in steps}
    root: dict[str, str] = {}  # loop copy → its template (the root of its copy chain)
    for s in steps:
        name = str(s["name"])
        cur, m = name, _COPY.match(name)
        while m and m.group(1) in by_name and by_name[m.group(1)].get("group") == s.get("group"):
            cur = m.group(1)
            m = _COPY.match(cur)
        if cur != name:
            root[name] = cur
    copies: dict[str, list[str]] = {}
    for c, r in root.items():
        copies.setdefault(r, []).append(c)
    bases = {m.group(1) for c in root for m in [_COPY.match(c)] if m}  # copies that have copies (nested loops)
    leaves = {r: [c for c in cs if c not in bases] for r, cs in copies.items()}
    collapsed = {r for r, ls in leaves.items() if len(ls) > COLLAPSE_AT}
    # where a hidden step is drawn: a copy of a collapsed loop → its template; copies of open loops
    # are drawn themselves and their template (a summary) is hidden
    rep: dict[str, str | None] = {}
    for name in by_name:
        r = root.get(name)
        if r is not None and r in collapsed:
            rep[name] = r
        elif name in copies and name not in collapsed:
            rep[name] = None
        else:
            rep[name] = name
    nodes = []
    for s in steps:
        name = str(s["name"])
        if rep[name] != name:
            continue
        up: dict[str, None] = {}  # ordered set: a 10,000-way join must not be quadratic
        members = [name] + (copies.get(name, []) if name in collapsed else [])
        for m in members:
            for u in by_name[m].get("upstream") or []:
                v = rep.get(str(u), None)
                if v is None and str(u) in copies:  # an open loop's template upstream: its copies
                    for c in leaves.get(str(u), []):
                        cv = rep.get(c)
                        if cv and cv != name:
                            up[cv] = None
                elif v and v != name:
                    up[v] = None
        label = str(s.get("display_name") or name)
        state = str(s.get("state") or "pending")
        took = fmt_duration(s.get("duration"))
        if name in collapsed:
            its = [str(by_name[c].get("state") or "pending") for c in leaves[name]]
            c = Counter(its)
            state = next((st for st in ("running", "retrying", "failed", "pending", "cancelled")
                          if c[st]), "cached" if c["cached"] == len(its) else "succeeded")
            meta = f"⟳ {len(its)} iterations · " + " ".join(f"{c[st]} {ICONS[st]}" for st in STATE_ORDER if c[st])
            title = f"{name}: loop of {len(its)} iterations ({_counts(its)})"
        else:
            meta = state + (f" · {took}" if took and state not in ("pending", "skipped") else "")
            if s.get("attempt") and int(s.get("max_attempts") or 1) > 1:
                meta += f" · try {s.get('attempt')}/{s.get('max_attempts')}"
            title = f"{name}: {meta}"
            reason = str(s.get("reason") or "").strip()
            if reason:
                title += f"\n{_clip(reason, 300)}"
        kind = _group_kind(str(s.get("group") or ""), groups)
        if kind in GROUP_ICONS and name not in collapsed:
            meta = f"{GROUP_ICONS[kind]} {meta}"  # inside an If/Elif/Else branch or an exit handler
        nodes.append({"name": name, "label": label, "state": state, "meta": meta, "upstream": list(up),
                      "title": title, "group": str(s.get("group") or "")})
    return nodes


def _group_kind(group: str, meta: dict[str, dict[str, Any]]) -> str:
    """As run_view_groups.js: the group's ``kind`` metadata, else its id's prefix (``condition-2``)."""
    if not group:
        return ""
    if meta.get(group, {}).get("kind"):
        return str(meta[group]["kind"])
    return next((k for k in ("for", "condition", "exit") if group.startswith(f"{k}-")), "group")


def _layers(nodes: list[dict[str, Any]]) -> list[list[dict[str, Any]]]:
    """Longest-path layering (a cycle, which a valid run never has, is cut), ordered by parents."""
    index = {n["name"]: n for n in nodes}
    depth: dict[str, int] = {}
    for n in nodes:  # depth-first without recursion (500-step chains); an edge back into the path is cut
        if n["name"] in depth:
            continue
        path, on_path = [(n["name"], iter(index[n["name"]]["upstream"]))], {n["name"]}
        while path:
            name, ups = path[-1]
            nxt = next((u for u in ups if u in index and u not in depth and u not in on_path), None)
            if nxt is not None:
                path.append((nxt, iter(index[nxt]["upstream"])))
                on_path.add(nxt)
                continue
            depth[name] = 1 + max((depth[u] for u in index[name]["upstream"] if u in depth), default=-1)
            on_path.discard(name)
            path.pop()
    layers: list[list[dict[str, Any]]] = [[] for _ in range(1 + max(depth.values(), default=0))]
    for n in nodes:
        layers[depth[n["name"]]].append(n)
    pos: dict[str, float] = {}
    for layer in layers:  # barycentre of the parents' rows: fewer crossing edges
        def key(n: dict[str, Any]) -> float:
            ps = [pos[u] for u in n["upstream"] if u in pos]
            return sum(ps) / len(ps) if ps else math.inf
        layer.sort(key=key)
        for i, n in enumerate(layer):
            pos[n["name"]] = i
    return [layer for layer in layers if layer]


# ---------------------------------------------------------------------------------- drawing

_STYLE = (
    "<style>"
    f"text{{font-family:{FONT};font-size:12px;fill:#1f2328}}"
    ".h{font-size:14px;font-weight:600}.m{fill:#59636e;font-size:11px}.i{font-size:12px;font-weight:700}"
    ".n{fill:#fff;stroke:#d0d7de}.e{fill:none;stroke:#afb8c1;stroke-width:1.2}"
    ".c text{font-size:10px}"
    + "".join(f".{_CLS[s]}{{fill:{c}}}" for s, c in COLORS.items())
    + "</style>"
)


def _header(snap: dict[str, Any], width: int, nodes: int) -> str:
    state = str(snap.get("state") or "queued")
    name = str(snap.get("name") or snap.get("pipeline") or "run")
    took = fmt_duration(snap.get("duration"))
    steps = snap.get("steps") or []
    right = f"{ICONS.get(state, '')} {state}" + (f" in {took}" if took and state not in ("queued", "running") else "")
    sub = f"run {snap.get('id', '')} · {len(steps)} step{'s' if len(steps) != 1 else ''}: " + (
        _counts([str(s.get("state")) for s in steps]) or "none")
    if nodes < len(steps):
        sub += " · loops collapsed"
    return (
        f'<text class="h" x="{PAD}" y="20">{_x(_clip(name, 60))}</text>'
        f'<text class="h {_cls(state)}" x="{width - PAD}" y="20" text-anchor="end">{_x(right)}</text>'
        f'<text class="m" x="{PAD}" y="37">{_x(_clip(sub, 160))}</text>'
    )


def render_svg(snap: dict[str, Any]) -> str:
    """The run's graph as a standalone SVG document (UTF-8 text)."""
    nodes = _nodes(snap)
    layers = _layers(nodes)
    if len(nodes) > COMPACT_AT:
        return _compact(snap, nodes, layers)
    width = max(420, 2 * PAD + len(layers) * NODE_W + max(0, len(layers) - 1) * COL_GAP)
    rows = max((len(layer) for layer in layers), default=0)
    height = HEAD_H + PAD + max(1, rows) * (NODE_H + ROW_GAP)
    at: dict[str, tuple[int, int]] = {}
    for li, layer in enumerate(layers):
        top = HEAD_H + (rows - len(layer)) * (NODE_H + ROW_GAP) // 2
        for ri, n in enumerate(layer):
            at[n["name"]] = (PAD + li * (NODE_W + COL_GAP), top + ri * (NODE_H + ROW_GAP))
    out = [_open(width, height, snap), _STYLE, _header(snap, width, len(nodes))]
    for n in nodes:
        x1, y1 = at[n["name"]]
        for u in n["upstream"]:
            if u not in at:
                continue
            x0, y0 = at[u]
            ax, ay, bx, by = x0 + NODE_W, y0 + NODE_H // 2, x1, y1 + NODE_H // 2
            mid = (ax + bx) // 2
            out.append(f'<path class="e" d="M{ax} {ay}C{mid} {ay} {mid} {by} {bx} {by}"/>')
    if not nodes:
        out.append(f'<text class="m" x="{PAD}" y="{HEAD_H + 16}">No steps.</text>')
    for n in nodes:
        x, y = at[n["name"]]
        st = _cls(n["state"])
        dashed = ' stroke-dasharray="4 3"' if n["state"] == "skipped" else ""
        out.append(
            f'<g><title>{_x(n["title"])}</title>'
            f'<rect class="n" x="{x}" y="{y}" width="{NODE_W}" height="{NODE_H}" rx="6"{dashed}/>'
            f'<rect class="{st}" x="{x}" y="{y}" width="4" height="{NODE_H}" rx="2"/>'
            f'<text class="i {st}" x="{x + 12}" y="{y + 18}">{_x(ICONS.get(n["state"], "?"))}</text>'
            f'<text x="{x + 28}" y="{y + 18}">{_x(_clip(n["label"], 26))}</text>'
            f'<text class="m" x="{x + 28}" y="{y + 34}">{_x(_clip(n["meta"], 30))}</text></g>'
        )
    out.append("</svg>")
    return "".join(out)


def _compact(snap: dict[str, Any], nodes: list[dict[str, Any]], layers: list[list[dict[str, Any]]]) -> str:
    """Many nodes: small chips (coloured state icon, short name) in dependency order, flowed into
    columns of a height that keeps the picture about 1.6 times wider than tall; no edges."""
    order = [n for layer in layers for n in layer]
    per_col = max(CHIP_ROWS, math.ceil(math.sqrt(len(order) * (CHIP_W + 6) / ((CHIP_H + 2) * 1.6))))
    cols = [order[i:i + per_col] for i in range(0, len(order), per_col)]
    rows = max((len(c) for c in cols), default=1)
    width = max(420, 2 * PAD + len(cols) * (CHIP_W + 6))
    height = HEAD_H + PAD + rows * (CHIP_H + 2)
    out = [_open(width, height, snap), _STYLE, _header(snap, width, len(nodes)), '<g class="c">']
    for ci, col in enumerate(cols):
        x = PAD + ci * (CHIP_W + 6)
        for ri, n in enumerate(col):
            y = HEAD_H + ri * (CHIP_H + 2)
            # no tooltips: every viewer shows the SVG as an image, where <title> never shows
            out.append(f'<text x="{x}" y="{y + 12}"><tspan class="{_cls(n["state"])}">'
                       f'{_x(ICONS.get(n["state"], "?"))}</tspan> {_x(_clip(n["label"], 20))}</text>')
    out.append("</g></svg>")
    return "".join(out)


def _open(width: int, height: int, snap: dict[str, Any]) -> str:
    label = _x(summary(snap))
    return (f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
            f'viewBox="0 0 {width} {height}" role="img" aria-label="{label}">'
            f'<rect width="100%" height="100%" fill="#f6f8fa" rx="8"/>')


def bundle(snap: dict[str, Any], view: str = "") -> dict[str, Any]:
    """The static parts of a RunView's output: SVG, summary text and the nbpipe snapshot mime entry."""
    return {
        "text/plain": summary(snap),
        "image/svg+xml": render_svg(snap),
        MIME: {"run_id": str(snap.get("id") or ""), "name": str(snap.get("name") or ""),
               "state": str(snap.get("state") or ""), "view": view, "version": 1},
    }
