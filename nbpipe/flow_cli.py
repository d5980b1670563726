"""``nbpipe experiments``, ``nbpipe compare`` and ``nbpipe schedules``: thin CLI commands over the client.

Registered by :mod:`nbpipe.cli` like the export commands. Non-goal: anything the Python API
(:func:`nbpipe.compare`, ``Client.create_schedule`` …) cannot do.
"""

from __future__ import annotations

import argparse
import json
import time
from typing import Any


def _fmt(v: Any) -> str:
    if v is None or (isinstance(v, float) and v != v):
        return ""
    if isinstance(v, float):
        return f"{v:.4g}"
    return v if isinstance(v, str) else json.dumps(v)


def _table(columns: list[str], rows: list[list[Any]]) -> None:
    from rich.table import Table

    from .cli import _console

    t = Table(box=None)
    for c in columns:
        t.add_column(c)
    for r in rows:
        t.add_row(*[_fmt(v) for v in r])
    _console().print(t)


def cmd_experiments(args: argparse.Namespace) -> int:
    from .cli import _ago, _client

    exps = _client(args).experiments()
    _table(["experiment", "runs", "last run"], [[e["name"], str(e["runs"]), _ago(e["last_run_at"])] for e in exps])
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    from .cli import _client
    from .comparison import compare

    from ._progress import _fmt as duration_text

    df = compare(args.runs, client=_client(args))
    rows = [[col, *(df[col].map(duration_text) if col == "duration" else df[col]).tolist()] for col in df.columns]
    _table(["", *df.index.tolist()], rows)  # runs side by side; durations as `nbpipe show` writes them
    return 0


def cmd_schedules(args: argparse.Namespace) -> int:
    from .cli import _client, load_target, parse_params
    from .errors import NbpipeError

    c = _client(args)
    if args.action == "list":
        rows = []
        for s in c.schedules():
            when = s["cron"] or (f"every {s['interval']:g} s" if s["interval"] else
                                 f"files in {s['trigger'].get('folder') or s['trigger'].get('prefix')}")
            nxt = "" if s["kind"] == "trigger" else time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(s["next_fire_at"]))
            rows.append([s["id"], s["name"], when, "paused" if s["paused"] else "active", nxt,
                         str(s["fires"]), str(s["skipped"]), str(s["active_runs"])])
        _table(["schedule", "name", "when", "state", "next", "fires", "skipped", "running"], rows)
        return 0
    if args.action == "create":
        if not args.target:
            raise NbpipeError("nbpipe schedules create needs a TARGET (package or module:pipeline)")
        given = [o for o, v in (("--cron", args.cron), ("--interval", args.interval), ("--folder", args.folder))
                 if v is not None]
        if len(given) != 1:  # (the runner would say "exactly one of cron, interval or trigger", in Python's words)
            raise NbpipeError(f"nbpipe schedules create needs one of --cron, --interval or --folder (got "
                              f"{' and '.join(given) or 'none'})", hint="e.g. --cron '0 3 * * *' (03:00 UTC daily), "
                              "--interval 3600, or --folder /data/in (a run when new files arrive).")
        if args.interval is not None and not args.interval > 0:  # (the runner would say "body.interval: ...")
            raise NbpipeError(f"--interval must be a number of seconds > 0, e.g. 3600 (got {args.interval:g})")
        runnable, parameters = load_target(args.target)
        trigger = {"folder": args.folder, "param": args.param_name, "poll": args.poll} if args.folder else None
        s = c.create_schedule(runnable, parse_params(args.param or [], parameters), cron=args.cron,
                              interval=args.interval, trigger=trigger, name=args.name or "",
                              experiment=args.experiment, max_concurrency=args.max_concurrency, catchup=args.catchup)
        print(s["id"])
        return 0
    if not args.target:
        raise NbpipeError(f"nbpipe schedules {args.action} needs a schedule id")
    if args.action == "delete":
        c.delete_schedule(args.target)
        print(f"deleted {args.target}")
    else:
        s = c.pause_schedule(args.target) if args.action == "pause" else c.resume_schedule(args.target)
        print(f"{s['id']} {'paused' if s['paused'] else 'active'}")
    return 0


def register(sub: Any) -> None:
    p = sub.add_parser("experiments", help="list experiments and their run counts")
    p.set_defaults(func=cmd_experiments)

    p = sub.add_parser("compare", help="parameters and metrics of runs side by side")
    p.add_argument("runs", nargs="+", metavar="RUN")
    p.set_defaults(func=cmd_compare)

    p = sub.add_parser("schedules", help="recurring runs and data triggers: list, create, pause, resume, delete")
    p.add_argument("action", choices=["list", "create", "pause", "resume", "delete"])
    p.add_argument("target", nargs="?", help="create: PACKAGE or module:pipeline; others: the schedule id")
    p.add_argument("--cron", default=None, help="cron expression (UTC), e.g. '0 3 * * *'")
    p.add_argument("--interval", type=float, default=None, help="seconds between runs")
    p.add_argument("--folder", default=None, help="start a run when new files appear in this folder")
    p.add_argument("--param-name", default="files", help="pipeline parameter receiving the new files' paths")
    p.add_argument("--poll", type=float, default=5.0, help="seconds between folder listings")
    p.add_argument("--param", "-p", action="append", metavar="NAME=VALUE")
    p.add_argument("--name", default=None)
    p.add_argument("--experiment", default="Default")
    p.add_argument("--max-concurrency", type=int, default=1)
    p.add_argument("--catchup", action="store_true", help="fire every slot missed while the runner was down")
    p.set_defaults(func=cmd_schedules)
