"""The ``%nbpipe`` line magic's commands: run, rerun, debug, runs, logs, cancel, config, pull, attach.

Each command is a few lines over :mod:`nbpipe.client` and :mod:`nbpipe.widgets`; argument
mistakes and SDK/runner errors surface as one-line ``UsageError``\\ s.

Non-goals: a second client (everything goes through ``nbpipe.client``) or waiting in the
background (``run`` returns at once; the widget follows the run on its own thread).
"""

from __future__ import annotations

import ast
import os
import re
import sys
import time
from typing import TYPE_CHECKING, Any

from IPython.core.error import UsageError
from IPython.core.magic_arguments import MagicArgumentParser

from nbpipe.errors import NbpipeError
from nbpipe.events import RUN_FINAL, STEP_OK
from nbpipe.pipeline import Pipeline

from .last_error import run_of_last_error
from .step_notes import no_log_note
from .suggest import check_runner_url, current_runner, note_other_pipelines, parse_command

if TYPE_CHECKING:
    from nbpipe.client import Run
    from nbpipe.widgets import RunView
    from nbpipe.widgets.actions import PipelineRef

    from .magics import NbpipeMagics


def parse_value(text: str) -> Any:
    """``k=v`` values: Python literals (``3``, ``0.5``, ``[1, 2]``, ``'a'``), else the text itself."""
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def _parser() -> MagicArgumentParser:
    parser = MagicArgumentParser(prog="%nbpipe", description="Run and inspect nbpipe pipelines.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=MagicArgumentParser)
    p = sub.add_parser("run", help="Submit a pipeline and show its live run graph.")
    p.add_argument(
        "args",
        nargs="*",
        help="[PIPELINE] [param=value ...]; without PIPELINE, the pipeline "
        "inferred from this notebook's %%%%component cells.",
    )
    p.add_argument("--experiment", default="Default", help="Experiment to file the run under.")
    p.add_argument("--name", help="Run name.")
    p = sub.add_parser("runs", help="List recent runs.")
    p.add_argument("--experiment", help="Only this experiment.")
    p.add_argument("--limit", type=int, default=20)
    p = sub.add_parser("logs", help="Print a step's logs.")
    p.add_argument("target", nargs="*", metavar="[RUN] [STEP]",
                   help="Run id (default: the last run) and step name (default: the run's failed step).")
    p.add_argument("--attempt", type=int, help="Attempt number (default: all).")
    p = sub.add_parser("cancel", help="Cancel a run.")
    p.add_argument("run", nargs="?", help="Run id (default: the last run of this kernel).")
    p = sub.add_parser(
        "config", help="Choose the runner: runner=URL token=T (runner=local: the embedded one)."
    )
    p.add_argument("settings", nargs="*", help="runner=URL and/or token=TOKEN (none: show the runner used now)")
    p = sub.add_parser(
        "pull", help="Wait for the run, then load step outputs into the notebook (a failed step: its inputs)."
    )
    p.add_argument("run", nargs="?", help="Run id (default: the last run of this kernel).")
    p.add_argument("step", nargs="?", help="Step name (default: every step).")
    p.add_argument("--timeout", type=float, help="Seconds to wait for an unfinished run.")
    p = sub.add_parser(
        "rerun",
        help="Run a run again with its parameters, with this kernel's current definitions; --from STEP "
        "re-executes STEP and everything after it and reuses the steps before it.",
    )
    p.add_argument("run", nargs="?", help="Run id (default: the last run of this kernel).")
    p.add_argument("--from", dest="from_step", metavar="STEP", help="Re-execute from this step on.")
    p.add_argument("--failed", action="store_true", help="Re-execute from the run's first failed step on.")
    p.add_argument(
        "--same-code",
        action="store_true",
        help="Run the run's own package again instead of the kernel's current pipeline.",
    )
    p = sub.add_parser(
        "debug",
        help="Call a step of a run in this kernel with that run's inputs and code; on an exception, "
        "%%debug (or --pdb) opens on the failing line.",
    )
    p.add_argument(
        "target",
        nargs="*",
        metavar="[RUN] [STEP]",
        help="Run id (default: the last run) and step name (default: the run's failed step).",
    )
    p.add_argument("--pdb", action="store_true", default=None, help="Open the debugger at once on an exception.")
    p.add_argument("--no-pdb", dest="pdb", action="store_false", help="Only show the traceback.")
    p = sub.add_parser("attach", help="Show an existing run's live graph (e.g. after a kernel restart).")
    p.add_argument("run", nargs="?", help="Run id (default: the last run of this kernel).")
    p = sub.add_parser(
        "export",
        help="Export this notebook's pipeline as a package (or Kubeflow YAML), built in a fresh process "
        "from the saved notebook.",
    )
    p.add_argument("pipeline", nargs="?", help="Pipeline name, when the notebook defines several.")
    p.add_argument("-o", "--output", help="Output file (default: next to the notebook).")
    p.add_argument("--format", choices=["nbpipe", "kfp"], default="nbpipe")
    p.add_argument("--image", help="KFP: the pushed step image to reference instead of nbpipe/base:pyX.Y.")
    p.add_argument("--notebook", help="Notebook path (default: this kernel's notebook).")
    p.add_argument(
        "--from-kernel",
        action="store_true",
        help="Package the pipeline object defined in this kernel instead of the saved notebook.",
    )
    return parser


RUN_ID = re.compile(r"^r\d{8}-\d{6}-[0-9a-f]{6}$")


def _failed_step(run: Run, what: str = "debug") -> str:
    """The step ``%nbpipe debug``/``logs`` with no step named takes: the run's (first) failed step."""
    snap = run.snapshot()
    steps = [s["name"] for s in snap.get("steps", [])]
    failed = [s["name"] for s in snap.get("steps", []) if s.get("state") == "failed"]
    if not failed:
        raise UsageError(
            f"Run {run.id} has no failed step ({snap.get('state')}); name the step{' to call' * (what == 'debug')}: "
            f"%nbpipe {what} {run.id} STEP" + (f" (its steps: {', '.join(steps)})." if steps else ".")
        )
    return str(failed[0])


def format_runs(runs: list[dict[str, Any]]) -> str:
    """A plain-text table of runs, newest first, as the runner lists them."""
    if not runs:
        return "No runs yet."
    rows = [("RUN", "PIPELINE", "STATE", "CREATED", "DURATION")]
    for r in runs:
        created = r.get("created_at")
        when = (
            time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(created))
            if isinstance(created, (int, float))
            else str(created or "")
        )
        dur = r.get("duration")
        rows.append(
            (
                str(r.get("id", "")),
                str(r.get("pipeline") or r.get("name") or ""),
                str(r.get("state", "")),
                when,
                f"{dur:.1f} s" if isinstance(dur, (int, float)) else "",
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in rows)


class NbpipeCommands:
    """The state ``%nbpipe`` keeps per kernel: the widgets it showed and the last run."""

    def __init__(self, shell: Any, magics: NbpipeMagics) -> None:
        self.shell = shell
        self.magics = magics
        self.parser = _parser()
        self.views: dict[str, RunView] = {}
        self.last_run: Run | None = None
        self.failed_wait: Run | None = None  # the run of the last failed wait() (see last_error.py)
        # how to find the current pipeline of a run started here (a name, or the %%component cells)
        self.refs: dict[str, PipelineRef] = {}

    def dispatch(self, line: str) -> Any:
        """Parse ``line`` and run the command; NbpipeError becomes a one-line UsageError."""
        __tracebackhide__ = True  # noqa: F841 - %nbpipe debug re-raises the user's exception
        words = line.split()
        if "-h" in words or "--help" in words:  # what the usage errors point to
            print(self._help(words[0] if words and not words[0].startswith("-") else ""))
            return None
        self._check_words(line)
        try:
            args = parse_command(self.parser, line)
        except UsageError as exc:  # argparse's "expected one argument": and how the command is written
            raise UsageError(f"{str(exc).rstrip('.')}. {self._usage(line)}") from None
        try:
            return getattr(self, f"cmd_{args.command}")(args)
        except NbpipeError as exc:
            raise UsageError(exc.message) from None

    # ------------------------------------------------------------------ helpers

    def _check_words(self, line: str) -> None:
        """A misspelled command or option gets "did you mean" (``%nbpipe rerun --form x``)."""
        import argparse
        import shlex

        from .suggest import check_options, did_you_mean

        try:
            tokens = shlex.split(line)
        except ValueError:
            tokens = line.split()
        action = next(a for a in self.parser._actions if isinstance(a, argparse._SubParsersAction))  # noqa: SLF001
        commands: dict[str, Any] = dict(action.choices)
        if not tokens:
            raise UsageError(
                f"%nbpipe needs a command: {', '.join(commands)} (e.g. %nbpipe run PIPELINE); "
                "%nbpipe --help says what each does."
            )
        if tokens[0].startswith("-"):
            return  # %nbpipe --help: argparse's own usage message
        if tokens[0] not in commands:
            raise UsageError(
                f"%nbpipe has no command {tokens[0]!r}.{did_you_mean(tokens[0], commands)} "
                f"Its commands: {', '.join(commands)}."
            )
        check_options(tokens[1:], commands[tokens[0]], f"%nbpipe {tokens[0]}")

    def _commands(self) -> Any:
        import argparse

        return next(a for a in self.parser._actions if isinstance(a, argparse._SubParsersAction))  # noqa: SLF001

    def _help(self, command: str) -> str:
        """``%nbpipe --help``: each command and what it does; ``%nbpipe CMD --help``: that command's usage."""
        action = self._commands()
        sub = action.choices.get(command)
        if sub is not None:
            return sub.format_help().replace("::\n\n", "").replace("%%", "%").strip()
        width = max(len(c.dest) for c in action._choices_actions)  # noqa: SLF001
        rows = [f"  {c.dest.ljust(width)}  {c.help}".replace("%%", "%") for c in action._choices_actions]  # noqa: SLF001
        return "\n".join(["%nbpipe COMMAND [ARGS] — %nbpipe COMMAND --help for its arguments.", *rows])

    def _usage(self, line: str) -> str:
        action = self._commands()
        sub = action.choices.get((line.split() or [""])[0])
        if sub is None:
            return "%nbpipe --help says what each command does."
        usage = " ".join(sub.format_usage().split()).replace(":: ", "").replace("%%", "%").replace(" [-h]", "")
        return f"Usage: {usage} (%nbpipe {sub.prog.split()[-1]} --help says more)."

    def _run_and_step(self, target: list[str], what: str) -> tuple[Run, str]:
        """``[RUN] [STEP]`` as ``%nbpipe debug`` and ``logs`` take them: the last run, its failed step."""
        if len(target) > 2:
            raise UsageError(f"Give a run id and a step name; got {' '.join(target)}.")
        if len(target) == 1 and (RUN_ID.match(target[0]) or self._run_variable(target[0]) is not None):
            target = [target[0], ""]  # %nbpipe debug RUN: that run's failed step
        elif len(target) == 1 and self._latest_run() is None:  # a STEP with no run for it, or a mistyped RUN
            raise UsageError(f"'{target[0]}' is not a run id or a variable holding a run, and this kernel has no "
                             f"run whose step it could be{self._newest()}.")
        run = self._run(target[0] if len(target) == 2 else None)
        return run, (target[-1] if target else "") or _failed_step(run, what)

    def _run(self, run_id: str | None) -> Run:
        import nbpipe.client

        if run_id is None:
            latest = self._latest_run()
            if latest is None:
                raise UsageError(f"No run yet in this kernel; start one with %nbpipe run, or name a run id{self._newest()}.")
            return latest
        if self.last_run is not None and self.last_run.id == run_id:
            return self.last_run
        return self._run_variable(run_id) or nbpipe.client.attach(run_id)

    def _run_variable(self, name: str) -> Run | None:
        """The run a notebook variable holds (``r = nbpipe.run(p)``, then ``%nbpipe cancel r``)."""
        from nbpipe.client import Run

        value = self.shell.user_ns.get(name) if name.isidentifier() else None
        return value if isinstance(value, Run) else None

    def _newest(self) -> str:
        """After a kernel restart the runner still has the runs: name its newest, the one meant most often."""
        from nbpipe.client import default_client

        try:
            runs = default_client().runs(limit=1)
        except NbpipeError:
            return ""
        if not runs:
            return ""
        r = runs[0]
        return (f" (the runner's newest is {r['id']}: {r.get('pipeline') or r.get('name')}, {r.get('state')}; "
                "%nbpipe runs lists them)")

    def _latest_run(self) -> Run | None:
        """The newest run this kernel knows: started by %nbpipe, by ``nbpipe.run`` (a ``Run`` in the
        notebook's variables) or by a run graph's buttons (the run a graph shows now), by the time
        the runner created it."""
        from nbpipe.client import Run
        from nbpipe.widgets.run_view import _SHOWN

        known = [self.last_run] if self.last_run is not None else []
        known += [view.run for view in list(_SHOWN)]
        known += [value for value in list(self.shell.user_ns.values()) if isinstance(value, Run)]
        self.failed_wait = run_of_last_error() or self.failed_wait  # nbpipe.run(p).wait() raised, kept no Run
        known += [self.failed_wait] if self.failed_wait is not None else []
        def created(run: Run) -> tuple[float, str]:
            try:
                return float(run.last_snapshot.get("created_at") or 0), run.id
            except NbpipeError:  # its runner is gone: the id still starts with its creation time
                return 0.0, run.id

        return max({id(run): run for run in known}.values(), key=created, default=None)

    def _show(self, run: Run, ref: PipelineRef = None) -> RunView:
        from nbpipe.widgets import show

        self.last_run = run
        if ref is not None:
            self.refs[run.id] = ref
        view = show(run, pipeline=ref if ref is not None else self.refs.get(run.id))
        self.views[run.id] = view
        return view

    def _ref(self, name: str | None, pipe: Any) -> PipelineRef:
        """Where a re-run finds this pipeline again at click time (its current definition)."""
        if isinstance(pipe, str):
            return None  # a package file: re-runs use the run's package
        if name is not None:
            return name
        if self.magics.cells or self.magics.failed:
            return lambda: self.magics.notebook_pipeline(self._inferred_name())
        ns = self.shell.user_ns
        return next((k for k, v in ns.items() if v is pipe and not k.startswith("_")), None)

    def _pipeline(self, name: str | None) -> Any:
        ns = self.shell.user_ns
        if name is None:
            found = [k for k, v in ns.items() if isinstance(v, Pipeline) and not k.startswith("_")]
            if self.magics.cells or self.magics.failed:
                return note_other_pipelines(self.magics.notebook_pipeline(self._inferred_name()), found)
            if len(found) == 1:
                return ns[found[0]]
            if found:
                raise UsageError(f"This notebook has {len(found)} pipelines ({', '.join(found)}); name one: "
                                 f"%nbpipe run {found[0]}")
            raise UsageError(
                "Nothing to run: define a pipeline (%%pipeline or @nbpipe.pipeline) or mark cells "
                "with %%component, then %nbpipe run."
            )
        value = ns.get(name)
        if isinstance(value, Pipeline):
            return value
        if name.endswith(".nbpipe"):
            return name  # a package file; nbpipe.run reads it
        what = "is not defined" if name not in ns else f"is a {type(value).__name__}, not a pipeline"
        raise UsageError(f"'{name}' {what}; run a pipeline made with %%pipeline or @nbpipe.pipeline.")

    def _wait(self, run: Run, timeout: float | None) -> dict[str, Any]:
        """Wait for a run to finish (and its widget to show that); return the final snapshot."""
        view = self.views.get(run.id)
        if view is not None:
            view.wait(timeout)
        else:
            run.wait(timeout, raise_on_failure=False)
        snap = run.snapshot()
        if snap["state"] not in RUN_FINAL:
            raise UsageError(f"Run {run.id} is still {snap['state']}; pull it when it finishes.")
        return snap

    # ------------------------------------------------------------------ commands

    def cmd_run(self, args: Any) -> None:
        import nbpipe.client

        target = [a for a in args.args if "=" not in a]
        if len(target) > 1:
            raise UsageError(f"Give one pipeline and param=value pairs ('{target[1]}' has no =VALUE).")
        params = {k: parse_value(v) for k, v in (a.split("=", 1) for a in args.args if "=" in a)}
        pipe = self._pipeline(target[0] if target else None)
        run = nbpipe.client.run(pipe, experiment=args.experiment, name=args.name, params=params)
        self._show(run, self._ref(target[0] if target else None, pipe))

    def cmd_rerun(self, args: Any) -> None:
        from nbpipe.errors import check_rerun_step
        from nbpipe.widgets.actions import current_pipeline

        run = self._run(args.run)
        if args.from_step and args.failed:
            raise UsageError("Give --from STEP or --failed, not both.")
        pipe = None
        if not args.same_code:
            pipe = current_pipeline(self.refs.get(run.id), str(run.last_snapshot.get("pipeline") or ""))
            check_rerun_step(run, pipe, args.from_step, args.failed)  # a step the pipeline lost: say so
        new = run.rerun(from_step=args.from_step, pipeline=pipe, from_failed=args.failed, same_code=args.same_code)
        start = new.last_snapshot.get("labels", {}).get("rerun_from")
        code = (
            f"this kernel's pipeline '{getattr(pipe, 'name', '')}'" if pipe is not None else "the run's own package"
        )
        print(f"Re-running run {run.id}{f' from step {start!r}' if start else ''} as {new.id}, with {code}.")
        self._show(new, self.refs.get(run.id))

    def cmd_debug(self, args: Any) -> Any:
        __tracebackhide__ = True  # noqa: F841 - the traceback starts at the user's function
        from nbpipe.debugging import call_step, load_step

        run, step = self._run_and_step(list(args.target), "debug")
        call = load_step(run, step)
        print(call.describe())
        if call.state != "failed":
            print("(It did not fail in that run; calling it here anyway.)")
        try:
            value = call_step(call, post_mortem=args.pdb)
        except Exception:
            print("Reproduced. Inspect it with %debug; the inputs are in _nbpipe_debug.inputs.", file=sys.stderr)
            self.shell.user_ns["_nbpipe_debug"] = call
            raise
        self.shell.user_ns["_nbpipe_debug"] = call
        print(call.passed_here())
        return value

    def cmd_attach(self, args: Any) -> None:
        import nbpipe.client

        run = self._run_variable(args.run) if args.run else None
        self._show(run or (self._run(None) if args.run is None else nbpipe.client.attach(args.run)))

    def cmd_runs(self, args: Any) -> None:
        from nbpipe.client import default_client

        if args.limit < 1:
            raise UsageError(f"--limit is how many runs to list: 1 or more (got {args.limit}).")
        print(format_runs(default_client().runs(experiment=args.experiment, limit=args.limit)))

    def cmd_logs(self, args: Any) -> None:
        from nbpipe.client import default_client

        from nbpipe.errors import did_you_mean

        run, step = self._run_and_step(list(args.target), "logs")
        attempts = {s["name"]: s.get("attempt") or 0 for s in run.snapshot()["steps"]}
        steps = list(attempts)
        if step not in steps:  # the runner has no logs of a step that never was: not "no logs yet"
            raise UsageError(f"Run {run.id} has no step '{step}'.{did_you_mean(step, steps)} "
                             f"Its steps: {', '.join(steps)}.")
        if args.attempt is not None and not 1 <= args.attempt <= max(attempts[step], 1):
            raise UsageError(f"Step '{step}' of run {run.id} has no attempt {args.attempt}: it ran "
                             f"{attempts[step]} attempt{'s' * (attempts[step] != 1)}; leave out --attempt for all.")
        text = default_client().logs(run.id, step, args.attempt)
        print(text if text else no_log_note(run, step))

    def cmd_cancel(self, args: Any) -> None:
        run = self._run(args.run)
        state = run.snapshot()["state"]
        if state in RUN_FINAL:
            print(f"Run {run.id} already {state}; nothing to cancel.")
            return
        run.cancel()
        print(f"Cancelling run {run.id}: its running steps are stopped, its waiting steps never start.")

    def cmd_config(self, args: Any) -> None:
        import nbpipe.client

        if not args.settings:  # which runner is used now (it was "the following arguments are required")
            print(current_runner())
            return
        settings: dict[str, str] = {}
        for item in args.settings:
            key, sep, value = item.partition("=")
            if not sep or key not in ("runner", "token"):
                raise UsageError(f"Unknown setting {item!r}; use runner=URL (runner=local for the embedded "
                                 "runner) and token=TOKEN.")
            settings[key] = value
        url = settings.get("runner")
        url = None if url in (None, "", "local", "embedded") else url
        check_runner_url(url)
        nbpipe.client.configure(url=url, token=settings.get("token"))
        print(f"nbpipe runner: {url or 'the embedded local runner (started on first use)'}"
              + (" with a token" if settings.get("token") else ""))

    def _inferred_name(self) -> str:
        """The plain-cell pipeline's name: the notebook's, as the Lab panel and export call it (so its
        runs, re-runs and exports agree), or "notebook" where the kernel does not know its notebook."""
        path = self._notebook_path()
        return os.path.splitext(os.path.basename(path))[0] if path else "notebook"

    def _notebook_path(self) -> str | None:
        """The notebook this kernel runs for, as Jupyter Server tells kernels (if it does)."""
        for candidate in (os.environ.get("JPY_SESSION_NAME"), self.shell.user_ns.get("__session__")):
            if isinstance(candidate, str) and candidate.endswith(".ipynb"):
                for path in (candidate, os.path.basename(candidate)):
                    if os.path.isfile(path):
                        return os.path.abspath(path)
        return None

    def cmd_export(self, args: Any) -> None:
        from nbpipe import build_package
        from nbpipe.export import ExportError, export_notebook
        from nbpipe.export.kfp_image import check_image, image_note, kfp_export

        suffix = ".kfp.yaml" if args.format == "kfp" else ".nbpipe"
        if args.image and args.format != "kfp":
            raise UsageError("--image is for Kubeflow YAML: add --format kfp.")
        check_image(args.image)
        if args.from_kernel:
            pipe = self._pipeline(args.pipeline)
            if isinstance(pipe, str):
                raise UsageError(f"'{pipe}' is already a package file.")
            output = args.output or f"{pipe.name}{suffix}"
            payload = build_package(pipe)
            source = f"pipeline '{pipe.name}' as defined in this kernel"
        else:
            notebook = args.notebook or self._notebook_path()
            if notebook is None:
                raise UsageError(
                    "Cannot tell which notebook this kernel belongs to; pass --notebook PATH, or "
                    "--from-kernel to package the pipeline defined in this kernel."
                )
            output = args.output or os.path.splitext(notebook)[0] + suffix
            try:
                payload = export_notebook(notebook, pipeline=args.pipeline)
            except ExportError as exc:
                # the exporter's hint names the CLI's --pipeline; this command takes the name first
                choice = re.search(r"--pipeline NAME \(or pipeline='([^']+)'\)", exc.hint or "")
                if args.pipeline is None and choice:
                    raise UsageError(f"{exc.headline}. Name one: %nbpipe export {choice.group(1)}"
                                     f"{' --format kfp' if args.format == 'kfp' else ''}.") from None
                raise
            source = f"{notebook} (saved version; built in a fresh process)"
        from .export_check import quoted, unsaved_edits, unsaved_note

        stale = "" if args.from_kernel else unsaved_note(
            unsaved_edits(payload, self.shell.user_ns, self.magics.cells), os.path.basename(notebook))
        note = ""
        if args.format == "kfp":
            payload, images, chosen = kfp_export(payload, args.image)
            again = " ".join(["%nbpipe export", *([args.pipeline] if args.pipeline else []), "--format kfp",
                              *(["--from-kernel"] if args.from_kernel else []),
                              *([f"--notebook {quoted(args.notebook)}"] if args.notebook else []),
                              *([f"-o {quoted(args.output)}"] if args.output else []), "--image {image}"])
            note = image_note(images, chosen, again)
        with open(output, "wb") as fh:
            fh.write(payload)
        print(f"Wrote {output} ({len(payload):,} bytes) from {source}.")
        if note:
            print(note)
        if args.format == "nbpipe":
            print(f"Run it anywhere with: nbpipe run {output} --param NAME=VALUE")
        if stale:
            print(stale)

    def cmd_pull(self, args: Any) -> None:
        from .step_notes import failed_pull_note as pull_note

        run = self._run(args.run)
        snap = self._wait(run, args.timeout)
        steps = {s["name"]: s for s in snap["steps"]}
        if args.step is not None and args.step not in steps:
            raise UsageError(f"Run {run.id} has no step '{args.step}'; its steps are: {', '.join(steps)}.")
        chosen = [steps[args.step]] if args.step else list(steps.values())
        ns = self.shell.user_ns
        loaded: dict[str, Any] = {}
        notes: list[str] = []
        counts: dict[str, int] = {}
        for s in chosen:
            names = list(s.get("outputs", {})) if s["state"] in STEP_OK else list(s.get("inputs", {}))
            for n in names:
                counts[n] = counts.get(n, 0) + 1
        for s in chosen:
            if s["state"] in STEP_OK:
                values = run.outputs(s["name"])
            elif s["state"] == "failed":
                values = run.inputs(s["name"])
            else:
                continue
            names = {}
            for n, v in values.items():
                var = n
                if n == "output" or counts[n] > 1 or _is_sdk_object(ns.get(n)):
                    var = f"{s['name'].replace('-', '_')}_{n}"
                loaded[var], names[n] = v, var
            if s["state"] == "failed":  # the call names the variables the inputs were loaded as
                func = getattr(ns.get(s["component"]), "func", None)
                notes.append(pull_note(run.id, s["name"], s["component"], s.get("reason") or "", names, func))
        if not loaded and not notes:
            raise UsageError(
                f"Run {run.id} is {snap['state']} and has nothing to pull"
                + (f" from step '{args.step}' ({steps[args.step]['state']})." if args.step else ".")
            )
        self.shell.push(loaded)
        summary = ", ".join(f"{k} ({type(v).__name__})" for k, v in loaded.items())
        print(f"Run {run.id} {snap['state']}. Loaded: {summary or 'nothing'}.")
        for note in notes:
            print(note)


def _is_sdk_object(value: Any) -> bool:
    """Don't overwrite a component or pipeline variable with a pulled value."""
    from nbpipe.component import Component

    return isinstance(value, (Component, Pipeline))
