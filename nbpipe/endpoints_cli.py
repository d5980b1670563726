"""``nbpipe endpoints list|deploy|rollback|delete|predict``: model-serving endpoints from a shell.

Registered by :mod:`nbpipe.cli` like the other command plugins; a thin layer over
:mod:`nbpipe.serving`. Non-goal: anything ``nbpipe.serve`` / :class:`~nbpipe.serving.Endpoint` cannot do.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from .errors import NbpipeError


def _function(target: str, what: str) -> Any:
    """``module:function`` or ``file.py:function`` → the function."""
    mod_name, _, attr = target.rpartition(":")
    if not mod_name or not attr:
        raise NbpipeError(f"--{what} {target!r} is not module:function or file.py:function")
    from .cli import import_target

    module = import_target(mod_name, f" (from --{what} {target})")
    fn = getattr(module, attr, None)
    if not callable(fn):
        raise NbpipeError(f"{target} is not a function (--{what})")
    return fn


def _endpoint(args: argparse.Namespace, name: str) -> Any:
    from .cli import _client
    from .serving import Endpoint

    c = _client(args)
    return Endpoint(c._request("GET", f"/api/v1/endpoints/{name}").json(), c)


def _show(ep: Any) -> None:
    print(f"{ep.name} version {ep.version} ({ep.info['state']}) {ep.info['infer_url'] or ''}"
          + (f"\n  {ep.info['reason']}" if ep.info.get("reason") else ""))


def cmd_endpoints(args: argparse.Namespace) -> int:
    from .cli import _ago, _client
    from .flow_cli import _table
    from .serving import Endpoint, serve

    if args.action == "list":
        c = _client(args)
        eps = [Endpoint(i, c) for i in c._request("GET", "/api/v1/endpoints").json()]
        if args.json:
            # without the endpoints' tokens: a listing gets pasted into issues and logs
            print(json.dumps([{k: v for k, v in e.info.items() if k != "token"} for e in eps], indent=2))
            return 0
        _table(["endpoint", "version", "versions", "state", "url", "updated"],
               [[e.name, e.version, ", ".join(e.versions), e.info["state"], e.info["infer_url"] or "",
                 _ago(e.info["updated_at"])] for e in eps])
        return 0
    if not args.name:
        raise NbpipeError(f"nbpipe endpoints {args.action} needs the endpoint NAME")
    if args.action == "deploy":
        if not args.predict:
            raise NbpipeError("nbpipe endpoints deploy needs --predict module:function (or file.py:function)",
                              hint="The function gets (model, inputs) and returns the predictions.")
        predict = _function(args.predict, "predict")
        load = _function(args.load, "load") if args.load else None
        ep = serve(args.model, predict=predict, load=load, name=args.name, version=args.version,
                   description=args.description or "", runner=_client(args))
        _show(ep)
    elif args.action == "rollback":
        ep = _endpoint(args, args.name).rollback(args.version)
        _show(ep)
    elif args.action == "delete":
        ep = _endpoint(args, args.name)
        if args.version:
            _show(ep.delete_version(args.version))
        else:
            ep.delete()
            print(f"deleted endpoint {args.name}")
    elif args.action == "predict":
        if args.data is None:
            raise NbpipeError("nbpipe endpoints predict needs --data: a v2 request ({\"inputs\": [...]}) "
                              "or a JSON array (sent as one tensor); '-' reads stdin")
        text = sys.stdin.read() if args.data == "-" else args.data
        try:
            data = json.loads(text)
        except ValueError as exc:
            raise NbpipeError(f"--data is not JSON: {exc}") from None
        ep = _endpoint(args, args.name)
        if isinstance(data, dict):
            out = ep.infer(data, args.version)
        else:
            from .serving.protocol import tensor

            try:
                t = tensor("input-0", data)
            except (TypeError, ValueError) as exc:
                raise NbpipeError(f"--data cannot be sent as a tensor: {exc}",
                                  hint="Every row needs the same length (e.g. [[1, 2], [3, 4]]); or send a v2 "
                                       'request: {"inputs": [{"name", "shape", "datatype", "data"}]}.') from None
            out = ep.infer({"inputs": [t]}, args.version)
        print(json.dumps(out))
    return 0


def register(sub: Any) -> None:
    p = sub.add_parser("endpoints", help="model-serving endpoints: list, deploy, rollback, delete, predict")
    p.add_argument("action", choices=["list", "deploy", "rollback", "delete", "predict"])
    p.add_argument("name", nargs="?", help="the endpoint (not for list)")
    p.add_argument("--model", default=None, help="deploy: a saved model file or folder")
    p.add_argument("--predict", default=None, metavar="MODULE:FUNCTION",
                   help="deploy: predict(model, inputs) as module:function or file.py:function")
    p.add_argument("--load", default=None, metavar="MODULE:FUNCTION", help="deploy: load(path) -> model")
    p.add_argument("--version", default=None,
                   help="deploy: the new version's name; rollback: the version to serve; delete: only this version; "
                        "predict: ask this version")
    p.add_argument("--description", default=None)
    p.add_argument("--data", default=None, help="predict: JSON (a v2 request or an array); '-' for stdin")
    p.add_argument("--json", action="store_true", help="list: print JSON")
    p.set_defaults(func=cmd_endpoints)
