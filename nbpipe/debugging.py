"""Debug a step of a run in this process: its inputs, the exact function that ran, post-mortem.

``nbpipe.debug(run, step)`` (and ``%nbpipe debug RUN STEP``) loads the step's inputs — values
and artifacts, through the runner's API, so the same works for a run on the embedded runner and
for one in a cluster whose store is S3 — and the function that ran, unpickled from the run's
package (it is the user's own code, so unpickling it here, in the user's kernel, is fine; the
runner never does). Then it calls the function here: a failure is raised again with the user's
frames only, its source lines restored, and ``%debug`` (or ``pdb``) opens on it.

Non-goals: re-running the step on the runner (``Run.rerun`` does), changing the run.
"""

from __future__ import annotations

import os
import re
import signal
import sys
import tempfile
import threading
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .errors import NbpipeError
from .events import STEP_OK

if TYPE_CHECKING:
    from .client import Run

_WAITING = ("pending", "running", "retrying")


@dataclass
class StepCall:
    """A step of a run, ready to call here: ``call()`` runs ``func(**inputs, **outputs)``."""

    run_id: str
    step: str
    component: str
    state: str
    reason: str
    func: Any
    inputs: dict[str, Any]
    outputs: dict[str, Any] = field(default_factory=dict)  # Output[...] artifacts, in a temp folder
    timeout: float | None = None  # the step's timeout: the call here stops after it too

    @property
    def kwargs(self) -> dict[str, Any]:
        return {**self.inputs, **self.outputs}

    def call(self) -> Any:
        __tracebackhide__ = True  # noqa: F841 - tracebacks and ipdb start at the user's function
        if not self.timeout or not hasattr(signal, "setitimer") or threading.current_thread() is not threading.main_thread():
            return self.func(**self.kwargs)
        timed_out = self.state == "failed" and self.reason.startswith("timed out")

        def stop(*_: Any) -> None:
            __tracebackhide__ = True  # noqa: F841
            raise TimeoutError(f"Step '{self.step}' ran past its timeout of {self.timeout:g} s here too"
                               + (" (in the run it was killed)" if timed_out else "")
                               + "; the traceback shows the line it was running (%debug opens there)")

        before = signal.signal(signal.SIGALRM, stop)
        signal.setitimer(signal.ITIMER_REAL, self.timeout)
        try:
            return self.func(**self.kwargs)
        except TimeoutError as exc:
            tb = exc.__traceback__
            while tb is not None and tb.tb_next is not None:  # the traceback ends on the user's line, not in stop()
                if tb.tb_next.tb_frame.f_code is stop.__code__:
                    tb.tb_next = None
                tb = tb.tb_next
            raise
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, before)

    def passed_here(self) -> str:
        """What to say when the call returned here; for a step that failed in the run, what differs there."""
        text = f"Step '{self.step}' ran in this kernel without an exception."
        if self.state != "failed" or self.reason.startswith("timed out"):
            return text
        missing = re.search(r"(?:FileNotFoundError|No such file or directory)[^']*'([^']+)'", self.reason)
        if missing and not os.path.isabs(missing.group(1)):
            return (f"{text} In the run it failed ({self.reason}): a step runs in a working folder of its own, "
                    f"not the notebook's, so the relative path '{missing.group(1)}' is not there. Use an absolute "
                    "path, or pass the file in (a path parameter, or an Input[Dataset] a step makes).")
        return (f"{text} In the run it failed ({self.reason}): what differs is where it ran, in a process and "
                "working folder of its own, with the runner's environment variables and packages.")

    def describe(self) -> str:
        args = ", ".join(f"{k}={type(v).__name__}" for k, v in self.kwargs.items())
        was = f"{self.state}: {self.reason}" if self.reason and self.state == "failed" else self.state
        limit = f", with the step's timeout {self.timeout:g} s" if self.timeout else ""
        return f"Step '{self.step}' of run {self.run_id} ({was}) → {self.component}({args}){limit}"


def pull_note(run_id: str, step: str, component: str, reason: str, names: dict[str, str], func: Any) -> str:
    """What ``%nbpipe pull`` says of a failed step whose inputs it loaded (input → variable in ``names``):
    the call that reproduces it, or ``%nbpipe debug`` when the function also takes its Output files."""
    import inspect

    try:
        params = inspect.signature(func).parameters if func is not None else {}
    except (TypeError, ValueError):
        params = {}
    missing = [n for n, p in params.items() if n not in names and p.default is inspect.Parameter.empty
               and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]
    how = (f"%nbpipe debug {run_id} {step} calls it with them and with its output files ({', '.join(missing)})"
           if missing else f"call {component}.func({', '.join(f'{k}={v}' for k, v in names.items())}) to reproduce it")
    return f"Step '{step}' failed: {reason or 'see its logs'}. Its inputs are loaded; {how}."


def _run(run: Run | str) -> Run:
    if isinstance(run, str):
        from .client import default_client

        client = default_client()
        return client.run(run)
    return run


def _load_function(blob: bytes, serializer: str, python: str, component: str) -> Any:
    have = "%d.%d" % sys.version_info[:2]
    if python and ".".join(python.split(".")[:2]) != have:
        raise NbpipeError(f"Component '{component}' was pickled on Python {python}; this kernel runs Python {have}",
                          hint=f"Debug it in a kernel with Python {'.'.join(python.split('.')[:2])}.")
    if serializer == "dill":
        import dill

        func = dill.loads(blob)
    else:
        import cloudpickle

        func = cloudpickle.loads(blob)
    try:  # the source lines of the user's cells, recorded at capture (tracebacks, %debug)
        from . import sourcemap

        sourcemap.restore(func)
    except ImportError:
        pass
    return func


def load_step(run: Run | str, step: str) -> StepCall:
    """Everything needed to call ``step`` of ``run`` here, as it was called in the run."""
    from .artifacts import ARTIFACT_TYPES, Artifact
    from .package import read_package

    r = _run(run)
    snap = r.snapshot()  # an unknown run or a runner that is down fails here, with the client's message
    steps = {s["name"]: s for s in snap["steps"]}
    if step not in steps:
        raise NbpipeError(f"Run {r.id} has no step '{step}'", f"Its steps are: {', '.join(steps)}.")
    s = steps[step]
    if s["state"] in _WAITING:
        raise NbpipeError(f"Step '{step}' of run {r.id} is {s['state']}; its inputs may not exist yet",
                          hint=f"Wait for the run (run.wait()), then debug it: nbpipe.debug('{r.id}', '{step}').")
    if s["state"] == "skipped":
        raise NbpipeError(f"Step '{step}' of run {r.id} was skipped ({s.get('reason') or 'never ran'}), so it has "
                          "no inputs to debug with", hint="Debug the step that failed before it.")
    pkg = read_package(r.client.artifact(snap["package"]))
    comp = pkg.spec["components"].get(s["component"])
    if comp is None:
        raise NbpipeError(f"Run {r.id}'s package has no component '{s['component']}'")
    blob = pkg.payloads[comp["payload"]["digest"]]
    func = _load_function(blob, comp["payload"].get("serializer", "cloudpickle"), comp.get("python", ""),
                          s["component"])
    r._snapshot = snap
    inputs = r.inputs(step)
    for name, b in (s.get("inputs") or {}).items():  # control flow: Collected, RUN_ID, RUN_STATUS…
        if "collect" in b:
            inputs[name] = _collected(r, steps, b["collect"]["step"], b["collect"]["output"])
        elif "placeholder" in b:
            inputs[name] = _placeholder(b["placeholder"], snap, step)
    specs = {i["name"]: i for i in comp.get("inputs", [])}
    for name, value in list(inputs.items()):  # artifacts typed as the component declares them
        want = ARTIFACT_TYPES.get(specs.get(name, {}).get("artifact_type", ""), None)
        if want is not None and isinstance(value, Artifact) and type(value) is not want:
            inputs[name] = want(name=value.name, path=value.path, uri=value.uri, metadata=value.metadata)
    outputs: dict[str, Any] = {}
    arts = [o for o in comp.get("outputs", []) if o.get("kind") == "artifact"]
    if arts:
        base = tempfile.mkdtemp(prefix=f"nbpipe-debug-{step}-")
        for o in arts:
            cls = ARTIFACT_TYPES.get(o.get("artifact_type", "Artifact"), Artifact)
            d = os.path.join(base, o["name"])
            os.makedirs(d, exist_ok=True)
            outputs[o["name"]] = cls(name=o["name"], path=os.path.join(d, o["name"]))
    template = re.sub(r"(-it\d+)+$", "", step)  # a loop copy has its template's options
    spec_step = next((x for x in pkg.spec.get("steps", []) if x.get("name") in (step, template)), {})
    timeout = (spec_step.get("options") or {}).get("timeout")
    return StepCall(run_id=r.id, step=step, component=s["component"], state=s["state"],
                    reason=s.get("reason") or "", func=func, inputs=inputs, outputs=outputs,
                    timeout=float(timeout) if isinstance(timeout, (int, float)) else None)


def _collected(r: Run, steps: dict[str, Any], name: str, output: str) -> list[Any]:
    """What ``nbpipe.Collected`` gave: the loop copies' outputs in item order (nested loops: lists)."""
    pattern = re.compile(re.escape(name) + r"-it(\d+)")
    copies = sorted((int(m.group(1)), n) for n in steps if (m := pattern.fullmatch(n)))
    items: list[Any] = []
    for _, copy in copies:
        if any(_pattern_of(copy).fullmatch(n) for n in steps):  # an inner loop's template
            if steps[copy]["state"] in STEP_OK:
                items.append(_collected(r, steps, copy, output))
        elif steps[copy]["state"] in STEP_OK:
            items.append(r._load(steps[copy]["outputs"][output]))
    return items


def _pattern_of(name: str) -> re.Pattern[str]:
    return re.compile(re.escape(name) + r"-it\d+")


def _placeholder(which: str, snap: dict[str, Any], step: str) -> Any:
    if which == "run_id":
        return snap["id"]
    if which == "run_name":
        return snap.get("name", "")
    others = {s["name"]: s["state"] for s in snap["steps"] if s["name"] != step}
    failed = [n for n, st in others.items() if st == "failed"]
    state = "cancelled" if snap.get("state") == "cancelled" else "failed" if failed else "succeeded"
    return {"state": state, "run_id": snap["id"], "run_name": snap.get("name", ""), "failed_steps": failed,
            "cancelled": snap.get("state") == "cancelled", "steps": others}


def _can_prompt(shell: Any) -> bool:
    """Can this process ask the user for debugger commands? (a notebook cell: if it allows input)"""
    kernel = getattr(shell, "kernel", None)
    if kernel is not None:
        return bool(getattr(kernel, "_allow_stdin", False))
    return sys.stdin is not None and sys.stdin.isatty()


def _shell() -> Any:
    if "IPython" not in sys.modules:
        return None
    from IPython import get_ipython

    return get_ipython()


def _pdb_once(shell: Any) -> None:
    """Open IPython's post-mortem debugger on this cell's exception (``%pdb`` for one cell)."""
    before = shell.call_pdb

    def restore(*_: Any) -> None:
        shell.call_pdb = before
        shell.events.unregister("post_run_cell", restore)

    shell.call_pdb = True
    shell.events.register("post_run_cell", restore)


def debug(run: Run | str, step: str, *, post_mortem: bool | None = None) -> Any:
    """Call ``step`` of ``run`` here, with the inputs and the function of that run.

    Returns what the function returns. If it raises, the exception propagates showing the user's
    frames only (nbpipe's are hidden) with their source lines, and ``%debug`` opens on the line
    that failed; ``post_mortem`` opens the debugger at once (default: in a notebook cell that
    can take input, and in a terminal).
    """
    __tracebackhide__ = True  # noqa: F841 - IPython and ipdb skip frames that set it
    return call_step(load_step(run, step), post_mortem=post_mortem)


def call_step(call: StepCall, *, post_mortem: bool | None = None) -> Any:
    """Call a loaded step (see :func:`debug`)."""
    __tracebackhide__ = True  # noqa: F841
    shell = _shell()
    if post_mortem if post_mortem is not None else _can_prompt(shell):
        if shell is not None:
            _pdb_once(shell)
        else:
            try:
                return call.call()
            except Exception:
                import pdb

                pdb.post_mortem(sys.exc_info()[2])
                raise
    return call.call()


__all__ = ["StepCall", "call_step", "debug", "load_step"]
