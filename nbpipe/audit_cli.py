"""``nbpipe audit``: who submitted, cancelled, re-ran or deployed what on a shared runner (admins).

Reads ``GET /api/v1/audit``; filters by user, action, profile, target (a run id, schedule id or
endpoint name) and age (``--since 2h``). ``--json`` prints the runner's answer as it is.
Registered by :mod:`nbpipe.cli` like :mod:`.lineage_cli`.
"""

from __future__ import annotations

import argparse
import json
import re
import time
from typing import Any

from .errors import NbpipeError

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_since(text: str | None, now: float | None = None) -> float | None:
    """``90s``/``15m``/``2h``/``7d`` ago, or an epoch timestamp, as epoch seconds."""
    if not text:
        return None
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*", text)
    if not m:
        raise NbpipeError(f"--since {text!r} is not a duration", hint="Use e.g. 30m, 2h, 7d (or epoch seconds).")
    value, unit = float(m.group(1)), m.group(2)
    if not unit:
        return value
    return (now or time.time()) - value * _UNITS[unit]


def format_rows(rows: list[dict[str, Any]]) -> list[str]:
    if not rows:
        return ["(no audit records match)"]
    out = [f"{'WHEN':19}  {'USER':14} {'ACTION':12} {'PROFILE':14} TARGET"]
    for r in rows:
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(r["ts"]))
        extra = " ".join(f"{k}={v}" for k, v in sorted((r.get("detail") or {}).items()))
        out.append(f"{when:19}  {r['user'][:14]:14} {r['action'][:12]:12} {r['profile'][:14]:14} {r['target']}"
                   + (f"  ({extra})" if extra else ""))
    return out


def cmd_audit(args: argparse.Namespace) -> int:
    from .cli import _client

    params = {k: v for k, v in (("user", args.user), ("action", args.action), ("profile", args.audit_profile),
                                ("target", args.target), ("since", parse_since(args.since)),
                                ("limit", args.limit)) if v is not None}
    rows = _client(args)._request("GET", "/api/v1/audit", params=params).json()
    if args.json:
        print(json.dumps(rows, indent=2))
    else:
        print("\n".join(format_rows(rows)))
    return 0


def register(sub: Any) -> None:
    p = sub.add_parser("audit", help="who submitted, cancelled, re-ran or deployed what (runner admins)")
    p.add_argument("--user", default=None)
    p.add_argument("--action", default=None, help="submit, cancel, rerun, deploy, schedule, …")
    p.add_argument("--in-profile", dest="audit_profile", default=None, metavar="PROFILE",
                   help="only changes in this profile")
    p.add_argument("--target", default=None, help="a run id, schedule id or endpoint name")
    p.add_argument("--since", default=None, help="e.g. 30m, 2h, 7d")
    p.add_argument("--limit", type=int, default=100)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_audit)
