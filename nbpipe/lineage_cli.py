"""``nbpipe lineage RUN STEP [OUTPUT]``: where an artifact came from and where it went.

Prints, for each output of the step (or only OUTPUT): the run and step that computed it (through
the cache: a cached step names the earlier run that really ran), its inputs and code digest, the
runs that reused it from the cache, and every step in any run that consumed it. ``--json``
prints the runner's answer as it is. Registered by :mod:`nbpipe.cli` like :mod:`.flow_cli`.

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


def cmd_lineage(args: argparse.Namespace) -> int:
    from .cli import _client

    body = fetch_lineage(_client(args), args.run, args.step, args.output)
    if args.json:
        print(json.dumps(body, indent=2, default=str))
    else:
        print("\n".join(format_lineage(body)))
    return 0


def register(sub: Any) -> None:
    p = sub.add_parser("lineage", help="where a step's output came from (run, step, inputs, code) and who used it")
    p.add_argument("run")
    p.add_argument("step")
    p.add_argument("output", nargs="?", default=None, help="one output of the step (default: all of them)")
    p.add_argument("--json", action="store_true", help="print the runner's answer as JSON")
    p.set_defaults(func=cmd_lineage)
