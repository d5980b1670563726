"""The ``nbpipe`` command line: runner, run, runs, show, logs, cancel, rerun (+ export, inspect).

Thin: every command is a call into :mod:`nbpipe.client`. Errors print one line and exit 1.
Non-goal: anything the Python API cannot do.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import json
import os
import re
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .errors import NbpipeError


def _parse_value(raw: str, type_name: str) -> Any:
    t = type_name.removeprefix("Optional[").rstrip("]").split("[", 1)[0]
    if raw in ("None", "null") and type_name.startswith("Optional["):
        return None
    try:
        if t == "str":
            return raw
        if t == "int":
            return int(raw)
        if t == "float":
            return float(raw)
        if t == "bool":
            if raw.lower() in ("true", "1", "yes", "on"):
                return True
            if raw.lower() in ("false", "0", "no", "off"):
                return False
            raise ValueError(raw)
        return json.loads(raw)
    except ValueError:
        if t in ("list", "dict", "int", "float", "bool"):
            raise NbpipeError(f"--param value {raw!r} is not a valid {type_name}") from None
        return raw


def parse_params(pairs: list[str], parameters: list[dict[str, Any]]) -> dict[str, Any]:
    """``k=v`` strings → typed values, using the pipeline's parameter types."""
    types = {p["name"]: p["type"] for p in parameters}
    out: dict[str, Any] = {}
    for pair in pairs:
        if "=" not in pair:
            raise NbpipeError(f"--param {pair!r} is not NAME=VALUE")
        k, v = pair.split("=", 1)
        if k not in types:
            raise NbpipeError(f"The pipeline has no parameter {k!r}", f"Its parameters are: {', '.join(types) or 'none'}.")
        out[k] = _parse_value(v, types[k])
    return out


def load_target(target: str) -> tuple[Any, list[dict[str, Any]]]:
    """A package path, ``NOTEBOOK.ipynb[:pipeline]`` (exported as ``nbpipe export`` does), ``module:pipeline``
    or ``file.py:pipeline`` → (runnable, parameters)."""
    from .package import read_package
    from .pipeline import Pipeline

    notebook = re.fullmatch(r"(.+\.ipynb)(?::([^:/\\]+))?", target)
    if notebook:
        from .export import export_notebook

        pkg = read_package(export_notebook(notebook.group(1), pipeline=notebook.group(2)))
        return pkg.data, pkg.parameters
    if target.endswith(".py") and Path(target).is_file():  # a file, no :pipeline: name the ones it has
        found = _pipelines_in(import_target(target))
        raise NbpipeError(f"{target} is a Python file; say which pipeline to run",
                          hint=f"Use {target}:{found[0]}" + (f" (its pipelines: {', '.join(found)})." if len(found) > 1
                                                              else ".") if found else "It defines no @nbpipe.pipeline.")
    if ":" not in target or Path(target).exists():
        pkg = read_package(target)
        return pkg.data, pkg.parameters
    mod_name, _, attr = target.rpartition(":")
    module = import_target(mod_name, hint="Use module:pipeline with the module importable, or "
                                          "path/to/file.py:pipeline.")
    obj = getattr(module, attr, None)
    if not isinstance(obj, Pipeline):
        from .errors import did_you_mean

        found = _pipelines_in(module)
        what = f"has no {attr!r}" if obj is None else f"has {attr!r}, which is not an @nbpipe.pipeline " \
                                                      f"(it is a {type(obj).__name__})"
        raise NbpipeError(f"{mod_name} {what}.{did_you_mean(attr, found)}",
                          f"Its pipelines: {', '.join(found)}" if found else "It defines no @nbpipe.pipeline")
    return obj, obj.parameters


def _pipelines_in(module: Any) -> list[str]:
    """The names of the ``@nbpipe.pipeline`` objects a module defines."""
    from .pipeline import Pipeline

    return [k for k, v in vars(module).items() if isinstance(v, Pipeline) and not k.startswith("_")]


def import_target(mod_name: str, context: str = "", hint: str = "") -> Any:
    """The module of a ``module:attr`` or ``file.py:attr`` target (a file is loaded by path)."""
    if mod_name.endswith(".py"):
        path = Path(mod_name).resolve()
        if not path.exists():
            raise NbpipeError(f"No file {mod_name}{context}")
        sys.path.insert(0, str(path.parent))
        spec = importlib.util.spec_from_file_location(path.stem, path)
        assert spec and spec.loader
        module = importlib.util.module_from_spec(spec)
        sys.modules[path.stem] = module
        spec.loader.exec_module(module)
        return module
    sys.path.insert(0, os.getcwd())
    try:
        return importlib.import_module(mod_name)
    except ImportError as exc:
        raise NbpipeError(f"Cannot import {mod_name!r}{context} ({exc})", hint=hint or None) from None


RUN_STATES = ("queued", "running", "succeeded", "failed", "cancelled")


def _positive_int(raw: str) -> int:
    """An argparse type: a whole number of at least 1 (the runner refuses 0 in its own words)."""
    try:
        value = int(raw)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"{raw!r} is not a whole number of at least 1")
    return value


def _client(args: argparse.Namespace) -> Any:
    from .client import Client

    if args.runner and not re.match(r"https?://[^/\s]", args.runner):
        # httpx would raise UnsupportedProtocol with a traceback for "localhost:8765"
        raise NbpipeError(f"--runner {args.runner!r} is not a runner URL",
                          hint="Use http://HOST:PORT, for example --runner http://127.0.0.1:8765.")
    profile = getattr(args, "profile", None)  # where new runs go (default: $NBPIPE_PROFILE, else the user's first)
    return Client(args.runner, token=os.environ.get("NBPIPE_TOKEN"), profile=profile) if args.runner \
        else Client(profile=profile)


def cmd_runner(args: argparse.Namespace) -> int:
    from ._embedded import ensure_local_runner, stop_local_runner

    if args.action == "start":
        if args.detach:
            print(ensure_local_runner())
            return 0
        from .runner.__main__ import hide_token_argument

        hide_token_argument(args.token)  # re-execs without it: a token on the command line is visible in ps
        from .runner.config import RunnerConfig
        from .runner.server import serve

        serve(RunnerConfig.from_env(host=args.host, port=args.port, data_dir=args.data_dir, token=args.token,
                                    parallelism=args.parallelism, executor=args.executor, token_file=args.token_file,
                                    store_name=args.store, store_options=args.store_options,
                                    executor_options=args.executor_options))
        return 0
    if args.action == "stop":
        print("stopped" if stop_local_runner() else "no embedded runner is running")
        return 0
    if not args.runner and not _embedded_running():
        # status only looks: starting the embedded runner here would always answer "ok"
        from ._embedded import nbpipe_home

        print(f"No embedded runner is running (NBPIPE_HOME={nbpipe_home()}). Start it with "
              "`nbpipe runner start --detach`; `nbpipe run` and notebooks also start it on first use.",
              file=sys.stderr)
        return 1
    c = _client(args)
    h = c.health()
    print(f"{c.url} {'(embedded) ' if c.embedded else ''}ok — nbpipe {h['version']}, executor {h['executor']}, "
          f"store {h['store']}, {h['active_runs']} active run(s), {h['running_steps']} step(s) running")
    return 0


def _embedded_running() -> bool:
    """True if a runner is configured (status asks it) or this NBPIPE_HOME's embedded runner answers."""
    from ._embedded import _alive, _read_info, nbpipe_home
    from .client import _configured

    if _configured()[0] is not None:
        return True
    info = _read_info(nbpipe_home() / "runner.json")
    return info is not None and _alive(str(info["url"]))


def _follow_or_leave(run: Any, follow: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """Follow a submitted run; Ctrl-C stops the following, not the run, and says so (as the magics do)."""
    try:
        return follow()
    except KeyboardInterrupt:
        print(f"\nStopped following run {run.id}; it goes on in the runner. Cancel it with "
              f"`nbpipe cancel {run.id}`, see it with `nbpipe show {run.id}`.", file=sys.stderr)
        raise


def _report_failed_steps(snap: dict[str, Any]) -> None:
    """A failed run's failed steps: reason, the step's traceback and the command for its log."""
    for s in snap["steps"]:
        if s["state"] == "failed":
            print(f"\nStep '{s['name']}' failed: {s['reason']}", file=sys.stderr)
            if s.get("traceback"):
                print(s["traceback"].rstrip(), file=sys.stderr)
            print(f"Logs: nbpipe logs {snap['id']} {s['name']}", file=sys.stderr)


def cmd_run(args: argparse.Namespace) -> int:
    from ._progress import follow

    runnable, parameters = load_target(args.target)
    params = parse_params(args.param or [], parameters)
    client = _client(args)
    run = client.submit(runnable, params, experiment=args.experiment, name=args.name)
    if args.detach:
        print(run.id)
        return 0
    snap = _follow_or_leave(run, lambda: follow(run, show_logs=args.logs))
    if snap["state"] == "failed":
        _report_failed_steps(snap)
    return 0 if snap["state"] == "succeeded" else 1


def _ago(ts: float | None) -> str:
    if not ts:
        return ""
    d = time.time() - ts
    return f"{d:.0f}s ago" if d < 60 else f"{d / 60:.0f}m ago" if d < 3600 else time.strftime("%Y-%m-%d %H:%M", time.localtime(ts))


def _console() -> Any:
    from rich.console import Console

    return Console() if sys.stdout.isatty() else Console(width=200, no_color=True)


def cmd_runs(args: argparse.Namespace) -> int:
    from rich.table import Table

    from ._progress import _fmt as duration_text  # "24 ms", "20.4 s": as `nbpipe show` writes them

    runs = _client(args).runs(experiment=args.experiment, state=args.state, limit=args.limit, archived=args.archived)
    t = Table(box=None)
    for col in ("run", "pipeline", "experiment", "state", "steps", "duration", "created", "params"):
        t.add_column(col, no_wrap=col in ("run", "state", "pipeline"))
    for r in runs:
        counts = ", ".join(f"{n} {s}" for s, n in sorted(r.get("step_counts", {}).items()))
        t.add_row(r["id"], r["pipeline"], r["experiment"], r["state"], counts,
                  duration_text(r["duration"]), _ago(r["created_at"]),
                  json.dumps(r["params"])[:60])
    _console().print(t)
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    from ._progress import Progress

    snap = _client(args).get_run(args.run)
    console = _console()
    console.print(Progress(snap).table())
    console.print(f"state: {snap['state']}  params: {json.dumps(snap['params'])}  experiment: {snap['experiment']}")
    for s in snap["steps"]:
        for name, o in s.get("outputs", {}).items():
            p = o.get("preview") or {}
            shown = p.get("metrics") or p.get("value") or p.get("type", "")
            console.print(f"  {s['name']}.{name}: {o['format']} {o['size']} B  {json.dumps(shown, default=str)[:100]}")
        if s["state"] == "failed" and s.get("traceback"):
            console.print(f"[red]{s['name']}[/]: {s['reason']}\n{s['traceback']}", markup=True, highlight=False)
    return 0


def cmd_logs(args: argparse.Namespace) -> int:
    from . import events as ev

    client = _client(args)
    if args.step is None:  # as %nbpipe logs RUN: the run's failed step
        args.step = _failed_step(client.get_run(args.run))
    text = client.logs(args.run, args.step, args.attempt)
    if not text:
        _explain_empty_log(client.get_run(args.run), args.step, args.attempt)
    sys.stdout.write(text)
    if args.follow:
        snap = client.get_run(args.run)
        for e in client.events(args.run, after=snap["last_event_id"]):
            if isinstance(e, ev.StepLog) and e.step == args.step:
                sys.stdout.write(e.text)
                sys.stdout.flush()
            if isinstance(e, ev.StepFinished) and e.step == args.step and e.state not in ("retrying",):
                break
    return 0


def _failed_step(snap: dict[str, Any]) -> str:
    """The step ``nbpipe logs RUN`` shows: the run's (first) failed step; a run without one names its steps."""
    failed = [s["name"] for s in snap["steps"] if s["state"] == "failed"]
    if failed:
        return failed[0]
    steps = [s["name"] for s in snap["steps"]]
    raise NbpipeError(f"Run {snap['id']} has no failed step ({snap['state']}); name the step whose log to show",
                      hint=f"nbpipe logs {snap['id']} STEP (its steps: {', '.join(steps)}).")


def _explain_empty_log(snap: dict[str, Any], name: str, attempt: int | None) -> None:
    """An empty log is a typo, an attempt that never was, or a step that did not run: say which."""
    step = next((s for s in snap["steps"] if s["name"] == name), None)
    if step is None:
        raise NbpipeError(f"Run {snap['id']} has no step {name!r}",
                          hint=f"Its steps: {', '.join(s['name'] for s in snap['steps'])}.")
    if attempt is not None and attempt > step["attempt"]:
        raise NbpipeError(f"Step {name!r} of run {snap['id']} has no attempt {attempt}",
                          hint=f"It has {step['attempt']} attempt(s); leave out --attempt for the last one.")
    if step["attempt"] == 0 and step["state"] in ("skipped", "cached", "cancelled", "failed", "succeeded"):
        why = f" ({step['reason']})" if step.get("reason") else ""
        print(f"Step {name!r} is {step['state']}{why}: it has no log of its own in this run.", file=sys.stderr)


def cmd_cancel(args: argparse.Namespace) -> int:
    r = _client(args).cancel(args.run)
    print(f"cancelling {args.run}" if r.get("cancelling") else f"{args.run} is already {r.get('state')}")
    return 0


def cmd_rerun(args: argparse.Namespace) -> int:
    from ._progress import follow

    if args.from_step and args.failed:
        raise NbpipeError("Give --from STEP or --failed, not both")
    pipeline = load_target(args.with_target)[0] if args.with_target else None
    run = _client(args).rerun(args.run, args.from_step, pipeline=pipeline, from_failed=args.failed)
    start = run.last_snapshot.get("labels", {}).get("rerun_from")
    print(f"re-run {run.id} of {args.run}" + (f" from step '{start}' (it and the steps after it run again; "
                                              "the others are reused)" if start else ""))
    if args.detach:
        return 0
    snap = _follow_or_leave(run, lambda: follow(run))
    if snap["state"] == "failed":
        _report_failed_steps(snap)
    return 0 if snap["state"] == "succeeded" else 1


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="nbpipe", description="Turn notebook work into reproducible pipelines.")
    ap.add_argument("--runner", default=None, help="runner URL (default: configured, else the embedded runner)")
    ap.add_argument("--profile", default=None, help="the profile new runs go to on a shared runner "
                    "(default: $NBPIPE_PROFILE, else your first)")
    sub = ap.add_subparsers(dest="command", required=True)

    p = sub.add_parser("runner", help="start, stop or check a runner")
    p.add_argument("action", choices=["start", "stop", "status"])
    p.add_argument("--host", default=None, help="bind address (default 127.0.0.1; others need --token)")
    p.add_argument("--port", type=int, default=None, help="port (default 8765; 0 = any free port)")
    p.add_argument("--data-dir", default=None)
    p.add_argument("--token", default=None, help="require this token (default: $NBPIPE_TOKEN; visible in ps: "
                   "prefer --token-file; without any, one is generated into NBPIPE_HOME/runtime)")
    p.add_argument("--token-file", default=None, help="read the token from this file")
    p.add_argument("--parallelism", type=int, default=None, help="steps running at once")
    p.add_argument("--executor", default=None, help="local (default), kubernetes or an installed plugin's name "
                   "($NBPIPE_EXECUTOR)")
    p.add_argument("--executor-options", default=None, metavar="JSON", help="the executor's options as a JSON "
                   "object ($NBPIPE_EXECUTOR_OPTIONS)")
    p.add_argument("--store", default=None, help="local (default), s3 or an installed plugin's name ($NBPIPE_STORE)")
    p.add_argument("--store-options", default=None, metavar="JSON", help='the store\'s options as a JSON object, '
                   'e.g. \'{"root": "/data/nbpipe"}\' ($NBPIPE_STORE_OPTIONS; see docs/plugins.md)')
    p.add_argument("--detach", action="store_true", help="start the embedded runner in the background")
    p.set_defaults(func=cmd_runner)

    p = sub.add_parser("run", help="run a package or module:pipeline with live progress")
    p.add_argument("target", help="PACKAGE.nbpipe, NOTEBOOK.ipynb[:pipeline], module:pipeline or file.py:pipeline")
    p.add_argument("--param", "-p", action="append", metavar="NAME=VALUE")
    p.add_argument("--experiment", default="Default")
    p.add_argument("--name", default=None)
    p.add_argument("--detach", action="store_true", help="print the run id and return")
    p.add_argument("--logs", action="store_true", help="stream step logs too")
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("runs", help="list runs, newest first")
    p.add_argument("--experiment", default=None)
    p.add_argument("--state", default=None, choices=RUN_STATES)
    p.add_argument("--limit", type=_positive_int, default=20)
    p.add_argument("--archived", action="store_true", help="the archived runs (nbpipe archive RUN) instead")
    p.set_defaults(func=cmd_runs)

    p = sub.add_parser("show", help="a run's steps, outputs and errors")
    p.add_argument("run")
    p.set_defaults(func=cmd_show)

    p = sub.add_parser("logs", help="a step's log (-f to follow)")
    p.add_argument("run")
    p.add_argument("step", nargs="?", default=None, help="default: the run's failed step")
    p.add_argument("--attempt", type=int, default=None)
    p.add_argument("-f", "--follow", action="store_true")
    p.set_defaults(func=cmd_logs)

    p = sub.add_parser("cancel", help="cancel a run")
    p.add_argument("run")
    p.set_defaults(func=cmd_cancel)

    p = sub.add_parser("rerun", help="run a run again with its parameters (--from STEP: re-execute STEP and "
                                     "everything after it, reuse the steps before it)")
    p.add_argument("run")
    p.add_argument("--from", dest="from_step", default=None, metavar="STEP",
                   help="re-execute this step and everything downstream (never from the cache)")
    p.add_argument("--failed", action="store_true", help="re-execute from the run's first failed step")
    p.add_argument("--with", dest="with_target", default=None, metavar="TARGET",
                   help="run this version of the pipeline (PACKAGE.nbpipe, NOTEBOOK.ipynb, module:pipeline or file.py:pipeline, "
                        "e.g. with your fix); a step before the re-run step is reused only if unchanged")
    p.add_argument("--detach", action="store_true")
    p.set_defaults(func=cmd_rerun)

    for plugin in ("nbpipe.export.cli", "nbpipe.flow_cli", "nbpipe.lineage_cli", "nbpipe.endpoints_cli",
                   "nbpipe.audit_cli", "nbpipe.runs_cli"):
        try:
            mod = importlib.import_module(plugin)
        except ImportError:
            continue
        mod.register(sub)
    return ap


def _parse(parser: argparse.ArgumentParser, argv: list[str] | None) -> argparse.Namespace:
    """``parser.parse_args``, except that an argument the subcommand does not know is refused with the
    subcommand's own usage and a "did you mean" (argparse refuses it with the top-level usage, which
    lists the commands and not the option the user got wrong)."""
    import difflib

    args, extra = parser.parse_known_args(argv)
    if not extra:
        return args
    words = list(sys.argv[1:] if argv is None else argv)
    subs = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))  # noqa: SLF001
    sub = subs.choices[args.command]
    if extra[0] in words and args.command in words and words.index(extra[0]) < words.index(args.command):  # `nbpipe --bogus runs`: an option of nbpipe itself
        sub = parser
    known = sorted(s for s in sub._option_string_actions if s.startswith("--"))  # noqa: SLF001
    close = difflib.get_close_matches(extra[0].split("=", 1)[0], known, n=1, cutoff=0.6) \
        if extra[0].startswith("--") else []
    sub.error(f"unrecognized arguments: {' '.join(extra)}" + (f" (did you mean {close[0]}?)" if close else ""))
    raise AssertionError("unreachable")  # ArgumentParser.error exits


def main(argv: list[str] | None = None) -> int:
    args = _parse(build_parser(), argv)
    try:
        return int(args.func(args) or 0)
    except NbpipeError as exc:
        print(f"nbpipe: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
