"""Errors that say what happened, why, and what to do.

Every error nbpipe raises on purpose is an :class:`NbpipeError` (or a subclass), built
from a one-line *headline*, an optional *detail* and a *hint* naming the fix.
In IPython an nbpipe error renders as one screen (``_render_traceback_``): the user's own frame
(the cell line that led to it) and the message, without nbpipe's internal frames.
Non-goal: wrapping third-party exceptions wholesale; only errors we can explain are ours.
"""

from __future__ import annotations

import linecache
import os
import sys
from typing import Any

_INTERNAL = tuple(os.path.dirname(os.path.abspath(p)) + os.sep for p in (__file__,))
_INTERNAL_PARTS = (f"{os.sep}kernel_magics{os.sep}", f"{os.sep}IPython{os.sep}", f"{os.sep}ipykernel{os.sep}",
                   f"{os.sep}contextlib.py", f"{os.sep}runpy.py", "<frozen ")


class NbpipeError(Exception):
    """Base class: ``headline`` (what happened), ``detail`` (why), ``hint`` (what to do)."""

    def __init__(self, headline: str, detail: str = "", hint: str = "") -> None:
        self.headline = headline
        self.detail = detail
        self.hint = hint
        super().__init__(self.message)

    @property
    def message(self) -> str:
        parts = [self.headline]
        if self.detail:
            parts.append(self.detail)
        if self.hint:
            parts.append(self.hint)
        return " ".join(p if p.endswith((".", "?", "!", ":")) else p + "." for p in parts)

    def _render_traceback_(self) -> list[str]:
        """IPython's hook: the user's own frame and the message, no nbpipe internals."""
        red, cyan, green, reset = "\x1b[0;31m", "\x1b[0;36m", "\x1b[0;32m", "\x1b[0m"
        lines: list[str] = []
        frame = user_frame(self.__traceback__)
        if frame is not None:
            filename, lineno, func = frame
            text = typed(linecache.getline(filename, lineno).strip())
            where = f"{cyan}{cell_label(filename)}, line {lineno}{reset}"
            if func and not func.startswith("<"):
                where += f", in {green}{func}{reset}"
            lines.append(where)
            if text:
                lines.append(f"    {text}")
        lines.append(f"{red}{type(self).__name__}{reset}: {self}")
        return lines


class DefinitionError(NbpipeError, TypeError):
    """A component or pipeline definition is wrong (caught at definition time)."""


class DefinitionAttributeError(DefinitionError, AttributeError):
    """A DefinitionError for a missing attribute (``param.upper``, ``step.ouput``): also an
    AttributeError, so ``hasattr``/``getattr(x, name, default)`` probes keep working."""


DefinitionAttributeError.__name__ = DefinitionAttributeError.__qualname__ = "DefinitionError"  # as the user sees it


class PackageError(NbpipeError, ValueError):
    """A package file is malformed, hostile, too large or of an unknown version."""


class RunnerError(NbpipeError, RuntimeError):
    """The runner cannot be reached or refused a request."""


class StepFailed(NbpipeError, RuntimeError):
    """A step (and so its run) failed; carries the step's traceback."""

    def __init__(self, headline: str, detail: str = "", hint: str = "", traceback: str = "") -> None:
        self.traceback = traceback
        super().__init__(headline, detail, hint)

    def __str__(self) -> str:
        if self.traceback:
            return f"{self.message}\n\n{self.traceback.rstrip()}"
        return self.message


def function_kind_error(func: Any, name: str) -> DefinitionError | None:
    """The refusal of a component function a step cannot call and store the result of (None: fine).

    A step stores what the function returns: a generator, or the coroutine an ``async def`` returns
    un-awaited, cannot be stored (it failed at run time with "cannot pickle 'generator' object")."""
    import inspect

    if inspect.isgeneratorfunction(func) or inspect.isasyncgenfunction(func):
        return DefinitionError(
            f"Component '{name}' is a generator function (it yields)",
            "A step stores what the function returns, and a generator cannot be stored or passed to the next step",
            "Return the items instead (return list(...)), or write them to an Output[Dataset].",
        )
    if inspect.iscoroutinefunction(func):
        return DefinitionError(
            f"Component '{name}' is an async function",
            "A step calls it without an event loop, so it would return an un-awaited coroutine",
            "Make it a plain def and run the async code inside it with asyncio.run(...).",
        )
    return None


def typed(line: str) -> str:
    """A cell line as the user typed it: ``%nbpipe run p``, not IPython's ``get_ipython().run_line_magic(...)``."""
    if line.startswith("get_ipython().run_line_magic(") and line.endswith(")"):
        import ast

        try:
            name, args = ast.literal_eval(line[len("get_ipython().run_line_magic"):])
            return f"%{name} {args}".rstrip()
        except (ValueError, SyntaxError, TypeError):
            pass
    return line


def _internal(filename: str) -> bool:
    if not filename.startswith("<") and not os.path.isabs(filename) and not os.path.exists(filename):
        return True  # a compiled extension's own name for its code (zmq/backend/cython/_zmq.py): no user's file
    path = os.path.abspath(filename) if not filename.startswith("<") else filename
    return path.startswith(_INTERNAL) or any(part in path for part in _INTERNAL_PARTS)


def user_frame(tb: Any) -> tuple[str, int, str] | None:
    """(file, line, function) of the innermost frame of the user's code in ``tb``, if any."""
    found = None
    while tb is not None:
        code = tb.tb_frame.f_code
        if not _internal(code.co_filename) and not _stdlib(code.co_filename):
            found = (code.co_filename, tb.tb_lineno, code.co_name)
        tb = tb.tb_next
    return found


def _stdlib(filename: str) -> bool:
    return filename.startswith((sys.prefix, sys.base_prefix)) and "site-packages" not in filename \
        or f"{os.sep}site-packages{os.sep}" in filename


def cell_label(filename: str) -> str:
    """``Cell In[7]`` for a notebook cell (as IPython says it), else the file name."""
    if "IPython" in sys.modules:
        try:
            from IPython import get_ipython

            shell = get_ipython()
            named = shell.compile.format_code_name(filename) if shell is not None else None
            if named:
                return f"{named[0]} {named[1]}"
        except Exception:  # noqa: BLE001 - any trouble: the file name is fine
            pass
    return filename


def did_you_mean(word: str, choices: Any) -> str:
    """`` Did you mean 'train_model'?`` for the closest of ``choices``, or "" when none is close."""
    import difflib

    close = difflib.get_close_matches(word, sorted(choices), n=1, cutoff=0.6)
    return f" Did you mean '{close[0]}'?" if close else ""


def rerun_step_error(run_id: str, step: str, run_steps: Any, pipeline: Any, failed: bool = False,
                     magic: bool = True) -> NbpipeError | None:
    """Why re-running ``run_id`` from ``step`` with ``pipeline`` (the kernel's, now) cannot start, or None.

    A step the run had that the pipeline lost (renamed, its cell deleted) and a misspelled step are told
    apart; either way the message names the pipeline's steps and the closest one, before anything is sent.
    """
    steps = list(getattr(pipeline, "steps", None) or ())
    if not steps or step in steps:
        return None
    name = getattr(pipeline, "name", "")
    hint = did_you_mean(step, steps)
    if step not in run_steps:
        return NbpipeError(f"This kernel's pipeline '{name}' has no step '{step}'.{hint}",
                           f"Its steps: {', '.join(steps)}")
    what = (f"Run {run_id} failed at step '{step}', which is" if failed else f"Step '{step}' of run {run_id} is")
    example = hint[len(" Did you mean '"):-2] if hint else steps[0]
    return NbpipeError(f"{what} not in this kernel's pipeline '{name}' any more (renamed, or its cell deleted?).{hint}",
                       f"Its steps now: {', '.join(steps)}",
                       f"Re-run from one of them (%nbpipe rerun {run_id} --from {example}), or add --same-code to "
                       "re-run the run's own package" if magic else
                       f"Re-run from one of them (run.rerun(from_step='{example}')), or pass same_code=True to "
                       "re-run the run's own package")


def rerun_params_error(run: Any, pipeline: Any, magic: bool = True) -> NbpipeError | None:
    """Why ``run`` cannot be re-run with its parameters by ``pipeline`` (the kernel's, now), or None: a
    parameter the run had that the pipeline lost (renamed or removed since)."""
    params = (getattr(run, "last_snapshot", None) or {}).get("params") or run.snapshot().get("params") or {}
    names = [p["name"] for p in getattr(pipeline, "parameters", None) or ()]
    gone = [k for k in params if k not in names]
    if not gone:
        return None
    name, many = getattr(pipeline, "name", ""), len(gone) > 1
    variable = getattr(getattr(pipeline, "func", None), "__name__", name)  # what %nbpipe run takes: the def's name
    example = " ".join(f"{n}=..." for n in names[:2])
    return NbpipeError(
        f"Run {run.id} ran with parameter{'s' * many} {', '.join(repr(g) for g in gone)}, which this kernel's "
        f"pipeline '{name}' no longer has, and a re-run keeps the run's parameters",
        f"Its parameters now: {', '.join(names) or 'none'}",
        f"Start a new run instead (%nbpipe run {variable} {example}".rstrip() + "), or add --same-code to re-run the "
        "run's own package" if magic else
        "Start a new run instead (nbpipe.run(pipeline, ...)), or pass same_code=True to re-run the run's own package")


def check_rerun_step(run: Any, pipeline: Any, from_step: str | None, from_failed: bool, magic: bool = True) -> None:
    """Raise :func:`rerun_params_error`'s or :func:`rerun_step_error`'s error for re-running ``run`` (a client
    ``Run``) with ``pipeline``."""
    params = rerun_params_error(run, pipeline, magic) if pipeline is not None else None
    if params is not None:
        raise params
    if pipeline is None or not (from_step or from_failed):
        return
    steps = run.snapshot()["steps"]
    step = next((s["name"] for s in steps if s["state"] == "failed"), None) if from_failed else from_step
    error = rerun_step_error(run.id, step, {s["name"] for s in steps}, pipeline, from_failed, magic) if step else None
    if error is not None:
        raise error
