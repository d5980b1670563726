"""What the run graph's buttons do in the kernel: cancel, rerun, rerun from a step or the failed one.

Re-runs take the pipeline *as the kernel has it now* (the user may have fixed a cell since the
run started): the widget knows how to find it — a name in the user namespace, a callable (the
``%nbpipe run`` of ``%%component`` cells passes one), or, by default, the one pipeline in the
user namespace named like the run's pipeline — and resolves it at click time. When there is none
(the widget was opened on a run from elsewhere), the run's own package runs again.

Non-goals: drawing, following runs (``run_view.py``), packaging (``nbpipe.client`` does, with the
same code path as ``nbpipe.run``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, Union

from ..errors import NbpipeError

if TYPE_CHECKING:
    from ..client import Run

# where the pipeline of a run comes from: a name in the user namespace or a callable giving it
PipelineRef = Union[str, Callable[[], Any], None]

ACTIONS = ("cancel", "rerun", "rerun_from", "rerun_failed", "open")


def _user_ns() -> dict[str, Any] | None:
    try:
        from IPython import get_ipython
    except ImportError:
        return None
    shell = get_ipython()
    return getattr(shell, "user_ns", None)


def current_pipeline(ref: PipelineRef, pipeline_name: str) -> Any:
    """The kernel's current pipeline object for a run of ``pipeline_name`` (None: use the run's package)."""
    from ..pipeline import Pipeline, kernel_pipeline

    if callable(ref):
        return _checked(ref)
    ns = _user_ns()
    if ns is None:
        return None
    if isinstance(ref, str):
        value = ns.get(ref)
        if not isinstance(value, Pipeline):
            kind = type(value).__name__
            what = "is not defined any more" if ref not in ns else f"is now a{'n' * (kind[0] in 'aeiouAEIOU')} {kind}"
            raise NbpipeError(f"'{ref}' {what}, so the re-run cannot use its current definition",
                              hint=f"Re-run the cell that defines pipeline '{ref}'.")
        return value
    found = kernel_pipeline(pipeline_name)
    return found if found is not None else _plain_cells_pipeline(pipeline_name)


def _checked(make: Callable[[], Any]) -> Any:
    """``make()``; the magics' one-line UsageError (a %%component cell to fix) becomes an NbpipeError,
    which the graph shows as its notice (any other error would vanish into the kernel's log)."""
    try:
        return make()
    except Exception as exc:
        if type(exc).__name__ != "UsageError":
            raise
        raise NbpipeError(str(exc)) from None


def _plain_cells_pipeline(pipeline_name: str) -> Any:
    """The pipeline this kernel's plain ``%%component`` cells make, if a run of ``pipeline_name`` is
    theirs: a graph re-connected after a kernel restart (or ``%nbpipe attach``) re-runs the cells as
    the new kernel ran them, not the run's old package."""
    try:
        from IPython import get_ipython
    except ImportError:
        return None
    registry = getattr(getattr(get_ipython(), "magics_manager", None), "registry", {})
    magics = registry.get("NbpipeMagics")
    if magics is None or not (magics.cells or magics.failed) or not pipeline_name:
        return None
    if magics.commands._inferred_name() != pipeline_name:
        return None
    return _checked(lambda: magics.notebook_pipeline(pipeline_name))


def perform(run: Run, action: str, payload: dict[str, Any], ref: PipelineRef) -> tuple[Run | None, str]:
    """Do one graph action on ``run``: the run the widget should show next (None: the same one)
    and a one-line note of what happened, for the widget to show."""
    if action not in ACTIONS:
        raise NbpipeError(f"Unknown run graph action {action!r}", hint=f"Known: {', '.join(ACTIONS)}.")
    if action == "cancel":
        from ..events import RUN_FINAL

        state = run.snapshot().get("state")
        if state in RUN_FINAL:  # as %nbpipe cancel says: an ended run is left as it is
            return None, f"Run {run.id} already {state}; nothing to cancel."
        run.cancel()
        return None, f"Cancelling run {run.id}…"
    if action == "open":
        from ..client import Run as RunCls

        target = str(payload.get("run") or "")
        if not target:
            raise NbpipeError("Which run? The 'open' action needs a run id")
        return RunCls(run.client, target), f"Showing run {target}."
    pipe = current_pipeline(ref, str(run.last_snapshot.get("pipeline") or ""))
    code = f"this kernel's pipeline '{pipe.name}'" if pipe is not None else "the run's own package"
    if action == "rerun":
        new = run.rerun(pipeline=pipe)
        return new, f"Re-running run {run.id} as {new.id}, with {code}.{unrun_edits(payload, pipe)}"
    if action == "rerun_failed":
        new = run.rerun(from_failed=True, pipeline=pipe)
    else:
        step = payload.get("step")
        if not isinstance(step, str) or not step:
            raise NbpipeError("Rerun from which step? The 'rerun_from' action needs a step name")
        new = run.rerun(from_step=step, pipeline=pipe)
    start = (new.last_snapshot.get("labels") or {}).get("rerun_from") or payload.get("step")
    return new, f"Re-running run {run.id} from step '{start}' as {new.id}, with {code}.{unrun_edits(payload, pipe)}"


def unrun_edits(payload: dict[str, Any], pipe: Any) -> str:
    """What the re-run does not include: the notebook cells the front end saw edited since they last
    ran (``payload["edited_cells"]``, 1-based). The kernel's pipeline is the code it ran, not the edit."""
    cells = sorted({c for c in payload.get("edited_cells") or [] if isinstance(c, int) and not isinstance(c, bool) and c > 0})
    if pipe is None or not cells:
        return ""
    which = f"cell {cells[0]} was" if len(cells) == 1 else f"cells {', '.join(map(str, cells))} were"
    return f" Note: {which} edited but not run, so this re-run does not use that edit: run {'it' if len(cells) == 1 else 'them'} first, then re-run."
