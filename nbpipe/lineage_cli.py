"""``nbpipe lineage RUN [STEP [OUTPUT]]``: where an artifact came from and where it went.

Prints, for each output of the step (or only OUTPUT): the run and step that computed it (through
the cache: a cached step names the earlier run that really ran), its inputs and code digest, the
runs that reused it from the cache, and every step in any run that consumed it. ``--json``
prints the runner's answer as it is. With RUN alone it lists the run's steps and their outputs (what
there is to ask about). Registered by :mod:`nbpipe.cli` like :mod:`.flow_cli`.

Non-goals: walking the whole graph (run ``nbpipe lineage`` again on an input to go further up).
"""

from __future__ import annotations

import argparse
import json
import time
from typing import Any
from urllib.parse import quote


def fetch_lineage(client: Any, run: str, step: str, output: str | None = None) -> dict[str, Any]:
    """The runner's lineage answer for a step's outputs (``GET /api/v1/lineage/...``)."""
    params = {"output": output} if output else {}
    path = f"/api/v1/lineage/runs/{quote(run, safe='')}/steps/{quote(step, safe='')}"
    return client._request("GET", path, params=params).json()  # type: ignore[no-any-return]


def _size(n: Any) -> str:
    if not isinstance(n, (int, float)):
        return ""
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return ""


def _when(ts: Any) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ts)) if ts else ""


def _value(v: Any) -> str:
    text = json.dumps(v, default=str)
    return text if len(text) <= 60 else text[:57] + "…"


def _run_label(art: dict[str, Any], run_id: str) -> str:
    name = (art.get("runs", {}).get(run_id) or {}).get("name") or ""
    return f"run {run_id}" + (f" ({name})" if name and name != run_id else "")


def format_lineage(body: dict[str, Any]) -> list[str]:
    """Plain-text lines for one lineage answer (what the command prints)."""
    lines: list[str] = []
    for art in body.get("artifacts", []):
        facts = " · ".join(x for x in (art.get("kind"), art.get("format"), _size(art.get("size"))) if x)
        lines.append(f"{art['step']}.{art['output']}  ({facts} · sha256 {art['digest'][:12]})")
        p = art["producer"]
        d = p.get("duration")
        took = "" if not isinstance(d, (int, float)) else f", {d * 1000:.0f} ms" if d < 1 else f", {d:.1f} s"
        lines.append(f"  made by    {p['step']} in {_run_label(art, p['run'])}, {_when(p.get('finished_at'))}{took}")
        if art.get("cached"):
            lines.append(f"             this run ({art['run']}) reused it from the cache")
        lines.append(f"  code       sha256 {p['code_digest'][:12] or '?'} (component {p['component']})")
        ins = p.get("inputs") or []
        for i, inp in enumerate(ins):
            head = "  inputs     " if i == 0 else "             "
            kind = inp["kind"]
            if kind == "artifact":
                where = "" if inp["run"] == p["run"] else f" of {_run_label(art, inp['run'])}"
                lines.append(f"{head}{inp['name']} ← {inp['step']}.{inp['output']}{where}  sha256 {str(inp['digest'])[:12]}")
            elif kind == "parameter":
                lines.append(f"{head}{inp['name']} = {_value(inp['value'])}  (parameter {inp['parameter']})")
            elif kind == "collected":
                lines.append(f"{head}{inp['name']} ← every {inp['step']}.{inp['output']} of a loop")
            else:
                lines.append(f"{head}{inp['name']} = {_value(inp.get('value'))}")
        if not ins:
            lines.append("  inputs     (none)")
        reused = [o for o in art.get("occurrences", []) if o["how"] == "cached"]
        same = [o for o in art.get("occurrences", []) if o["how"] == "same content"]
        for i, o in enumerate(reused):
            head = "  reused by  " if i == 0 else "             "
            lines.append(f"{head}{_run_label(art, o['run'])}: {o['step']} (from the cache)")
        for i, o in enumerate(same):
            head = "  same bytes " if i == 0 else "             "
            lines.append(f"{head}{_run_label(art, o['run'])}: {o['step']}.{o['output']} (computed independently)")
        cons = art.get("consumers", [])
        for i, c in enumerate(cons):
            head = "  used by    " if i == 0 else "             "
            state = c["state"] + (" (cached)" if c["cached"] and c["state"] != "cached" else "")
            lines.append(f"{head}{c['step']}.{c['input']} in {_run_label(art, c['run'])}  {state}")
        if not cons:
            lines.append("  used by    no step yet")
        lines.append("")
    return lines[:-1] if lines else lines


def _output_facts(o: dict[str, Any]) -> str:
    """``output (value · json · 3 B) = 3.0`` for one output of a run snapshot's step."""
    facts = " · ".join(x for x in (o.get("artifact_type") or o.get("kind"), o.get("format"), _size(o.get("size"))) if x)
    p = o.get("preview") or {}
    shown = p.get("metrics") if p.get("type") == "metrics" else p.get("value") if p.get("type") == "json" else None
    return f"({facts})" + (f" = {_value(shown)}" if shown is not None else "")


def format_run_outputs(snap: dict[str, Any]) -> list[str]:
    """``nbpipe lineage RUN``: the run's steps and their outputs, and how to ask for one's lineage."""
    steps = snap["steps"]
    width = max((len(s["name"]) for s in steps), default=0)
    lines = [f"Run {snap['id']} ({snap.get('pipeline', '')}, {snap.get('state', '')}): the outputs of its steps"]
    example = None
    for s in steps:
        state = s["state"] + (" (cached)" if s.get("cached") and s["state"] != "cached" else "")
        outs = s.get("outputs") or {}
        if not outs:
            iterations = [t["name"] for t in steps if t["name"].startswith(s["name"] + "-it")]
            why = (f"ran once per loop item, as {', '.join(iterations[:3])}{'…' if len(iterations) > 3 else ''}"
                   if iterations else "none stored" if s["state"] in ("succeeded", "cached") else "none")
            lines.append(f"  {s['name']:<{width}}  {state:<18} outputs: {why}")
            continue
        for i, (name, o) in enumerate(outs.items()):
            head = f"  {s['name']:<{width}}  {state:<18}" if i == 0 else " " * (width + 22)
            lines.append(f"{head} {name} {_output_facts(o)}")
            example = example or (s["name"], name)
    if example:
        lines.append(f"Where one came from and who used it: nbpipe lineage {snap['id']} STEP [OUTPUT], "
                     f"e.g. nbpipe lineage {snap['id']} {example[0]} {example[1]}")
    else:
        lines.append("No step of this run stored an output yet, so there is no lineage to show.")
    return lines


def _no_outputs(snap: dict[str, Any], step: str) -> str:
    """Why ``nbpipe lineage RUN STEP`` has nothing to show: the step stored no output (yet), or it is a loop."""
    found = next((s for s in snap["steps"] if s["name"] == step), {})
    iterations = [s["name"] for s in snap["steps"] if s["name"].startswith(step + "-it")]
    if iterations:
        return (f"Step '{step}' of run {snap['id']} ran once per loop item and has no outputs of its own. "
                f"Ask for one item: nbpipe lineage {snap['id']} {iterations[0]}.")
    return (f"Step '{step}' of run {snap['id']} ({found.get('state', '?')}) stored no outputs, so there is no "
            f"lineage to show. Its run's outputs: nbpipe lineage {snap['id']}.")


def cmd_lineage(args: argparse.Namespace) -> int:
    from .cli import _client

    client = _client(args)
    if args.step is None:
        snap = client.get_run(args.run)
        print(json.dumps(snap["steps"], indent=2, default=str) if args.json else "\n".join(format_run_outputs(snap)))
        return 0
    body = fetch_lineage(client, args.run, args.step, args.output)
    if args.json:
        print(json.dumps(body, indent=2, default=str))
    elif not body.get("artifacts"):
        print(_no_outputs(client.get_run(args.run), args.step))
    else:
        print("\n".join(format_lineage(body)))
    return 0


def register(sub: Any) -> None:
    p = sub.add_parser("lineage", help="where a step's output came from (run, step, inputs, code) and who used it "
                                       "(RUN alone: the run's steps and their outputs)")
    p.add_argument("run")
    p.add_argument("step", nargs="?", default=None, help="a step of the run (default: list the run's steps and outputs)")
    p.add_argument("output", nargs="?", default=None, help="one output of the step (default: all of them)")
    p.add_argument("--json", action="store_true", help="print the runner's answer as JSON")
    p.set_defaults(func=cmd_lineage)
