"""``nbpipe archive|unarchive|delete RUN...``: Kubeflow's run storage actions on the command line.

``archive`` takes finished runs out of the run lists (``nbpipe runs --archived`` lists them; their
pages, logs and outputs stay), ``unarchive`` brings them back, ``delete`` removes runs' records and
step logs for good after asking (``--yes`` to skip the question; without a terminal it must be
given). Several runs at once: each is tried, each result printed, and the exit status is 1 if any
failed. What the runner keeps and why: :mod:`nbpipe.runner.run_storage`. Registered by
:mod:`nbpipe.cli` like :mod:`.lineage_cli`.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any, Callable

from .errors import NbpipeError


def _each(args: argparse.Namespace, act: Callable[[Any, str], str]) -> int:
    from .cli import _client

    client = _client(args)
    failed = 0
    for run_id in dict.fromkeys(args.runs):  # once each, in the order given
        try:
            print(act(client, run_id))
        except NbpipeError as exc:
            failed += 1
            print(f"{run_id}: {exc.message}", file=sys.stderr)
    return 1 if failed else 0


def cmd_archive(args: argparse.Namespace) -> int:
    return _each(args, lambda c, r: f"archived {r} (nbpipe runs --archived lists it; nbpipe unarchive {r} restores it)"
                 if c.archive_run(r)["archived"] else r)


def cmd_unarchive(args: argparse.Namespace) -> int:
    return _each(args, lambda c, r: f"restored {r} to the run list" if not c.unarchive_run(r)["archived"] else r)


def cmd_delete(args: argparse.Namespace) -> int:
    runs = list(dict.fromkeys(args.runs))
    if not args.yes:
        if not sys.stdin.isatty():
            raise NbpipeError(f"Deleting {len(runs)} run(s) cannot be undone, and there is no terminal to ask",
                              hint="Add --yes to delete them, or archive them instead (nbpipe archive RUN): "
                                   "archived runs can be restored.")
        answer = input(f"Delete {', '.join(runs)} for good (records and step logs; artifacts and the cache stay)? "
                       "[y/N] ")
        if answer.strip().lower() not in ("y", "yes"):
            print("nothing deleted")
            return 1
    return _each(args, lambda c, r: f"deleted {r}" if c.delete_run(r)["deleted"] else r)


def register(sub: Any) -> None:
    p = sub.add_parser("archive", help="take finished runs out of the run lists (nbpipe unarchive restores them)")
    p.add_argument("runs", nargs="+", metavar="RUN")
    p.set_defaults(func=cmd_archive)
    p = sub.add_parser("unarchive", help="restore archived runs to the run lists")
    p.add_argument("runs", nargs="+", metavar="RUN")
    p.set_defaults(func=cmd_unarchive)
    p = sub.add_parser("delete", help="delete finished runs for good (records and step logs; artifacts and the "
                                      "step cache stay)")
    p.add_argument("runs", nargs="+", metavar="RUN")
    p.add_argument("--yes", "-y", action="store_true", help="do not ask first")
    p.set_defaults(func=cmd_delete)
